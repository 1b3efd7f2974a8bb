"""Melody <-> ids: exact inverse (hypothesis), out-of-vocabulary policy, JSON, cut-off, key normalisation."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from melody_plugin.melody import REST, Melody, Note
from melody_plugin.vocab import NUM_SPECIAL, START, UNK, Vocabulary, VocabularyError, key_shift

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
    assert "C6/12 steps) -> C4/12" in changes[0].describe()


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
