"""Melody <-> ids: exact inverse (hypothesis), out-of-vocabulary policy, JSON, cut-off, key normalisation."""

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from melody_plugin.music.melody import REST, Melody, Note
from melody_plugin.tokens.vocab import NUM_SPECIAL, START, UNK, Vocabulary, VocabularyError, key_shift

notes_st = st.lists(st.builds(Note, st.one_of(st.just(REST), st.integers(0, 127)), st.integers(1, 96)),
                    min_size=1, max_size=60)
meters = st.sampled_from([(4, 4), (3, 4), (6, 8), (2, 4), (9, 8), (5, 4), (7, 8)])


@settings(max_examples=200, deadline=None)
@given(notes=notes_st, meter=meters)
def test_encode_decode_are_exact_inverses_in_vocabulary(notes, meter):
    m = Melody(tuple(notes), 12, meter, 100.0, 3, True)
    vocab = Vocabulary.build([m])
    ids = vocab.encode(m)
    assert all(i >= NUM_SPECIAL for i in ids)
    assert vocab.decode(ids, meter, 100.0, 3, True) == m
    assert vocab.decode([START] + ids, meter, 100.0, 3, True) == m


@settings(max_examples=50, deadline=None)
@given(notes=notes_st)
def test_json_round_trip(tmp_path_factory, notes):
    m = Melody(tuple(notes))
    vocab = Vocabulary.build([m], transpose_to_key=True, augment_transpositions=(-2, 2))
    path = tmp_path_factory.mktemp("v") / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert loaded.encode(m) == vocab.encode(m)
    assert json.loads(path.read_text())["augment_transpositions"] == [-2, 2]


def test_frequency_cutoff_drops_rare_tokens():
    common = Melody((Note(60, 12),) * 3 + (Note(62, 6),))
    vocab = Vocabulary.build([common], min_token_count=2)
    assert vocab.tokens == ((60, 12),)
    assert len(vocab) == NUM_SPECIAL + 1


def test_oov_rest_is_split_into_known_rests():
    vocab = Vocabulary.build([Melody((Note(60, 12), Note(REST, 12), Note(REST, 6)))])
    ids, changes = vocab.encode_with_report(Melody((Note(REST, 30),)))
    assert vocab.decode(ids).notes == (Note(REST, 12), Note(REST, 12), Note(REST, 6))
    assert changes[0].how == "rest split"


def test_oov_note_keeps_onset_with_shorter_duration_and_rest():
    vocab = Vocabulary.build([Melody((Note(60, 6), Note(REST, 6)))])
    ids, changes = vocab.encode_with_report(Melody((Note(60, 12),)))
    assert vocab.decode(ids).notes == (Note(60, 6), Note(REST, 6))
    assert "shortened" in changes[0].describe()


def test_oov_pitch_is_shifted_by_octaves():
    vocab = Vocabulary.build([Melody((Note(60, 12),))])
    ids, changes = vocab.encode_with_report(Melody((Note(84, 12),)))
    assert vocab.decode(ids).notes == (Note(60, 12),)
    assert changes[0].how == "octave shift"
    assert changes[0].describe() == "note 1 (C6/12 steps) -> C4/12 (moved down 2 octaves)"  # counted from 1


def test_unmappable_note_becomes_unknown_and_is_reported():
    vocab = Vocabulary.build([Melody((Note(60, 12),))])
    ids, changes = vocab.encode_with_report(Melody((Note(61, 5),)))
    assert ids == [UNK] and changes[0].how == "unknown"
    assert vocab.encode(Melody((Note(61, 5),)), map_oov=False) == [UNK]
    with pytest.raises(VocabularyError):
        vocab.decode(ids)
    assert vocab.decode(ids, strict=False).notes == ()


def test_key_shift_goes_to_c_major_or_a_minor():
    assert key_shift(Melody((), key=2)) == -2
    assert key_shift(Melody((), key=7)) == 5
    assert key_shift(Melody((), key=4, minor=True)) == 5  # E minor -> A minor


def test_malformed_vocab_file_is_a_clear_error(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("{not json")
    with pytest.raises(VocabularyError, match="vocab.json: unreadable"):
        Vocabulary.load(path)
    path.write_text(json.dumps({"format_version": 1}))
    with pytest.raises(VocabularyError, match="malformed"):
        Vocabulary.load(path)


# --- exact decompositions before approximations (issue 12, item 6)

D4 = 62
SMALL = Vocabulary(((REST, 3), (D4, 4), (D4, 6)), 4)


def _mapped(vocab, note):
    ids, changes = vocab.encode_with_report(Melody((note,), vocab.steps_per_quarter))
    return [("<unk>", 0) if i == UNK else vocab.id_to_token(i) for i in ids], changes


def test_oov_duration_becomes_note_plus_rest_when_that_is_exact():
    tokens, changes = _mapped(SMALL, Note(D4, 7))
    assert tokens == [(D4, 4), (REST, 3)]  # 4 + 3 = 7 steps, onset and pitch kept
    assert changes[0].how == "shortened, rest added"
    assert "D4/7 steps) -> D4/4 + R/3" in changes[0].describe()


def test_oov_duration_becomes_tied_notes_when_no_rest_fits():
    tokens, changes = _mapped(SMALL, Note(D4, 8))  # 8 - 6 = 2 and 8 - 4 = 4: no rests of 2 or 4 steps
    assert tokens == [(D4, 4), (D4, 4)]
    assert changes[0].how == "tied notes"
    tokens, changes = _mapped(SMALL, Note(D4, 11))  # 11 = 4 + 4 + 3
    assert tokens == [(D4, 4), (D4, 4), (REST, 3)]
    assert changes[0].how == "tied notes, rest added"


def test_oov_duration_is_approximated_only_when_nothing_is_exact():
    tokens, changes = _mapped(SMALL, Note(D4, 5))  # 5 is no sum of 4, 6 (D4) then 3 (rests)
    assert tokens == [(D4, 4)] and changes[0].how == "nearest duration"
    tokens, changes = _mapped(Vocabulary(((REST, 3), (D4, 7), (D4 + 12, 4)), 4), Note(D4 + 12, 7))
    assert tokens == [(D4 + 12, 4), (REST, 3)]  # exact beats the octave shift to D4/7


def _exact_decomposition_exists(vocab, pitch, steps):
    """Brute force, independent of vocab.py: same-pitch tokens, then rests, adding up to `steps`."""
    note_lengths = [d for p, d in vocab.tokens if p == pitch]
    rest_lengths = [d for p, d in vocab.tokens if p == REST]
    after_notes = {0}
    frontier = {0}
    while frontier:
        frontier = {s + d for s in frontier for d in note_lengths if s + d <= steps} - after_notes
        after_notes |= frontier
    after_rests = set(after_notes - {0})
    frontier = set(after_rests)
    while frontier:
        frontier = {s + d for s in frontier for d in rest_lengths if s + d <= steps} - after_rests
        after_rests |= frontier
    return steps in after_rests


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.tuples(st.sampled_from([REST, 60, 72]), st.integers(1, 12)), min_size=1, max_size=6,
                        unique=True),
       steps=st.integers(1, 30))
def test_oov_note_is_mapped_exactly_whenever_an_exact_split_exists(lengths, steps):
    assume((60, steps) not in lengths)
    vocab = Vocabulary(tuple(sorted(lengths)), 4)
    tokens, changes = _mapped(vocab, Note(60, steps))
    if _exact_decomposition_exists(vocab, 60, steps):
        assert sum(d for _, d in tokens) == steps
        rests = [p == REST for p, _ in tokens]
        assert tokens[0][0] == 60 and rests == sorted(rests)  # C4 first, rests only after its notes
        assert {p for p, _ in tokens} <= {60, REST}
    else:
        assert changes[0].how in ("octave shift", "nearest duration", "unknown")
