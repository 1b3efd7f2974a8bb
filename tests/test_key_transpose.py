"""A model trained in one key (`transpose_to_key`, as the folk_lookback preset): primers are moved to C major / A minor
and the notes written back in the primer's key; with no primer, the key asked for (`--key`) is the tune's."""

import conftest
import mido
import pytest

from melody_plugin.generate.sampler import SamplingError, scale_key
from melody_plugin.music.melody import Melody, Note

# the 4/4 phrase of the tiny corpus, written in D major, G major and C major (key signatures 2, 7 and 0)
KEYS = (2, 7, 0)


@pytest.fixture(scope="module")
def keyed_run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyed_corpus")
    phrase = conftest.PHRASES[(4, 4)]
    for key in KEYS:
        moved = [(None if p is None else p + key, q) for p, q in phrase]
        for i in range(4):
            conftest.write_midi(folder / f"tune_{key}_{i}.mid", conftest.pattern_notes(moved, repeats=8), key=key)
    return conftest.train_tiny_run(tmp_path_factory, folder, "keyed_run", ",transpose_to_key=true")


@pytest.fixture(scope="module")
def keyed_generator(keyed_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    return MelodyGenerator.from_run_dir(keyed_run_dir)


def moved(notes, semitones: int):
    return [Note(n.pitch if n.is_rest else n.pitch + semitones, n.duration_steps) for n in notes]


@pytest.mark.parametrize("text,expected", [("D:dorian", (2, True)), ("G:major", (7, False)), ("Bb:minor", (10, True)),
                                           ("F#:mixolydian", (6, False)), ("E:phrygian", (4, True)),
                                           ("0,2,4,7,9", None), (None, None), ("", None)])
def test_scale_key_reads_the_tonic_and_a_minor_third(text, expected):
    assert scale_key(text) == expected


def test_scale_key_refuses_an_unknown_mode():
    with pytest.raises(SamplingError, match="unknown mode 'happy'"):
        scale_key("D:happy")


def test_the_vocabulary_is_learnt_in_c_major(keyed_generator):
    # every tune was moved to C (D down 2; G up 5, to the nearer C): the phrase's own pitch classes, C D E F G, and
    # none of the F# and C# that D major and G major tunes hold
    pitches = {int(p) for p in keyed_generator.vocab.pitches() if p >= 0}
    assert pitches == {60, 62, 64, 65, 67} | {72, 74, 76, 77, 79}


@pytest.mark.parametrize("key,semitones", [((2, False), 2), ((7, False), -5), ((9, True), 0), ((4, True), -5)])
def test_with_no_primer_the_tune_is_written_in_the_key_asked_for(keyed_generator, key, semitones):
    """The same seed in C major and in `key`: the same tune moved by the keys' distance (D: up 2; G: down 5, to the
    nearer octave; A minor is C major's relative, 0; E minor is G major's, down 5)."""
    from melody_plugin.generate.sampler import SamplingOptions

    gen = keyed_generator
    options = SamplingOptions(seed=3)
    in_c = gen.generate(gen.empty_primer(key=(0, False)), num_bars=4, sampling=options)[0].melody
    in_key = gen.generate(gen.empty_primer(key=key), num_bars=4, sampling=options)[0].melody
    assert any(not n.is_rest for n in in_c.notes)
    assert list(in_key.notes) == moved(in_c.notes, semitones)


def test_a_primer_in_d_continues_as_the_same_primer_in_c_moved_up(keyed_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = keyed_generator
    spq = gen.vocab.steps_per_quarter
    c_notes = [Note(p, spq) for p in (60, 62, 64, 65, 67, 67, 64, 62)]
    in_c = Melody(tuple(c_notes), spq, (4, 4), 120.0, key=0)
    in_d = Melody(tuple(moved(c_notes, 2)), spq, (4, 4), 120.0, key=2)
    options = SamplingOptions(seed=8)
    out_c, out_d = (gen.generate(p, num_bars=2, sampling=options)[0] for p in (in_c, in_d))
    assert list(out_d.melody.notes[:len(c_notes)]) == list(in_d.notes)  # the primer is kept as it was written
    assert list(out_d.melody.notes) == moved(out_c.melody.notes, 2)


def test_a_model_trained_in_every_key_does_not_read_the_empty_primers_key(tiny_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = tiny_generator
    assert not gen.vocab.transpose_to_key
    outs = [gen.generate(gen.empty_primer(key=key), num_bars=2, sampling=SamplingOptions(seed=4))[0].melody.notes
            for key in ((0, False), (2, False))]
    assert outs[0] == outs[1]


def sounding_pitches(path):
    """The note-on pitches of a MIDI file, in order, read with mido."""
    return [m.note for track in mido.MidiFile(path).tracks for m in track if m.type == "note_on" and m.velocity > 0]


def test_melody_generate_key_sets_the_key_of_a_tune_from_nothing(keyed_run_dir, tmp_path):
    outs = {}
    for key in ("C:major", "D:major"):
        conftest.run_cli("melody_generate", f"--run_dir={keyed_run_dir}", f"--key={key}", "--num_bars=4", "--seed=5",
                         f"--output_dir={tmp_path / key}", check=True)
        outs[key] = sounding_pitches(tmp_path / key / "melody_001.mid")
    assert outs["C:major"] and outs["D:major"] == [p + 2 for p in outs["C:major"]]


# Krumhansl-Kessler profiles, typed here from Krumhansl (1990) so the key is worked out apart from music/key.py
KK_MAJOR = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
KK_MINOR = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]


def best_of(notes, keys):
    """The (tonic, minor) of `keys` whose rotated profile correlates best (numpy's corrcoef) with the notes'
    duration-weighted pitch classes."""
    import numpy as np

    weights = np.zeros(12)
    for n in notes:
        if not n.is_rest:
            weights[n.pitch % 12] += n.duration_steps
    def r(key):
        return np.corrcoef(np.roll(KK_MINOR if key[1] else KK_MAJOR, key[0]), weights)[0, 1]
    return max(keys, key=r)


@pytest.mark.parametrize("key,expected", [((0, False), ((0, False), (9, True))), ((4, True), ((7, False), (4, True))),
                                          ((2, False), ((2, False), (11, True))), ((3, True), ((6, False), (3, True)))])
def test_relative_keys_share_the_key_signature(key, expected):
    from melody_plugin.music.key import relative_keys

    assert relative_keys(*key) == expected


def test_find_key_among_given_keys_picks_the_best_of_them_only():
    from melody_plugin.music.key import find_key

    notes = [Note(p, d) for p, d in ((64, 8), (67, 4), (71, 4), (64, 8), (66, 2), (67, 2))]  # E minor's triad
    assert (find_key(notes).tonic, find_key(notes).minor) == (4, True)
    for keys in (((0, False), (9, True)), ((2, False), (11, True)), ((7, False),)):
        found = find_key(notes, keys)
        assert (found.tonic, found.minor) == best_of(notes, keys)


def test_a_tune_from_nothing_is_labelled_with_the_key_signature_asked_for(keyed_generator):
    """Its key is the one asked for or that key's relative major / minor, whichever the notes fit (worked out here
    with numpy): never a key with another signature."""
    from melody_plugin.generate.sampler import SamplingOptions

    gen = keyed_generator
    # D major shares its two sharps with B minor; E minor its one sharp with G major
    for key, family in (((2, False), ((2, False), (11, True))), ((4, True), ((7, False), (4, True)))):
        for out in gen.generate(gen.empty_primer(key=key), num_bars=4, num_outputs=4, sampling=SamplingOptions(seed=2)):
            assert (out.melody.key, out.melody.minor) == best_of(out.melody.notes, family)


def test_generate_in_mode_puts_the_outputs_in_the_mode_asked_for_first(keyed_generator):
    from melody_plugin.generate.sampler import SamplingOptions

    gen = keyed_generator
    c_major_or_a_minor = ((0, False), (9, True))  # no sharps or flats
    for key in ((9, True), (0, False)):
        primer = gen.empty_primer(key=key)
        outs, in_mode = gen.generate_in_mode(primer, num_bars=4, num_outputs=6, sampling=SamplingOptions(seed=1),
                                             rounds=4)
        modes = [best_of(o.melody.notes, c_major_or_a_minor)[1] for o in outs]
        assert len(outs) == 6 and in_mode == sum(m == key[1] for m in modes)
        assert modes == [key[1]] * in_mode + [not key[1]] * (6 - in_mode)
        again, _ = gen.generate_in_mode(primer, num_bars=4, num_outputs=6, sampling=SamplingOptions(seed=1), rounds=4)
        assert [o.melody.notes for o in again] == [o.melody.notes for o in outs]  # the same seed, the same tunes


def test_an_out_of_vocabulary_primer_note_is_named_as_the_primer_has_it(keyed_generator):
    """A D major primer is moved down 2 to C; its C#5 (73) becomes B4, which the C major vocabulary lacks: the change
    names C#5, the primer's note."""
    gen = keyed_generator
    spq = gen.vocab.steps_per_quarter
    primer = Melody(tuple(Note(p, spq) for p in (62, 64, 66, 73)), spq, (4, 4), 120.0, key=2)
    changes = gen.generate(primer, num_bars=1)[0].oov_changes
    assert [c.original for c in changes] == [(73, spq)]
    # a replacement is named in D too: the corpus's C major pitches (C D E F G, two octaves) moved up 2
    in_d = {p + 2 for p in (60, 62, 64, 65, 67, 72, 74, 76, 77, 79)}
    assert all(r[0] in in_d for c in changes for r in c.replacement)


@pytest.mark.parametrize("key", ["D", ""])
def test_melody_generate_key_needs_a_mode(keyed_run_dir, tmp_path, key):
    result = conftest.run_cli("melody_generate", f"--run_dir={keyed_run_dir}", f"--key={key}", "--num_bars=2",
                              f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "TONIC:MODE" in result.stderr
    assert not list(tmp_path.iterdir())


def write_primer_with_signature(path, pitches, key_name):
    """A 4/4 primer of quarter notes written with mido alone, with a key_signature meta message."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    track.append(mido.MetaMessage("key_signature", key=key_name))
    for p in pitches:
        track.append(mido.Message("note_on", note=p, velocity=80, time=0))
        track.append(mido.Message("note_off", note=p, velocity=0, time=480))
    mid.tracks.append(track)
    mid.save(path)
    return path


def test_a_key_signature_the_notes_contradict_gives_way_to_the_notes_key(keyed_generator, tmp_path):
    """A C major scale under E major's four sharps (5 of its 8 notes outside E major): the primer's key is the one
    its notes fit (worked out here with numpy over the 24 keys), with a warning naming the file; a primer that fits
    its signature keeps it."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    path = write_primer_with_signature(tmp_path / "wrong_sig.mid", pitches, "E")
    primer, warnings = keyed_generator.load_primer(path)
    all_keys = [(t, m) for t in range(12) for m in (False, True)]
    assert (primer.key, primer.minor) == best_of(primer.notes, all_keys)
    assert any(str(path) in w and "outside the key signature's E major" in w for w in warnings)
    fitting = write_primer_with_signature(tmp_path / "d.mid", [62, 64, 66, 67, 69, 71, 73, 74], "D")
    primer, warnings = keyed_generator.load_primer(fitting)
    assert (primer.key, primer.minor) == (2, False) and not any("key signature" in w for w in warnings)


@pytest.mark.parametrize("key,expected", [("E:minor", (4, True)), ("d:dorian", (2, True)), (None, (0, False)),
                                          ((7, False), (7, False))])
def test_empty_primer_reads_a_key_pair_or_text(keyed_generator, key, expected):
    primer = keyed_generator.empty_primer(key=key)
    assert (primer.key, primer.minor) == expected


@pytest.mark.parametrize("key", [(12, True), (-1, False), (4, "yes"), "E", (True, False), (4,)])
def test_empty_primer_refuses_a_key_it_cannot_read(keyed_generator, key):
    from melody_plugin.generate.generator import PrimerError

    with pytest.raises(PrimerError, match="key must be"):
        keyed_generator.empty_primer(key=key)


def test_melody_generate_names_the_flag_of_a_bad_key_and_warns_of_a_primer_outside_it(keyed_run_dir, tmp_path):
    result = conftest.run_cli("melody_generate", f"--run_dir={keyed_run_dir}", "--key=H:major",
                              f"--output_dir={tmp_path / 'bad'}")
    assert result.returncode != 0 and "--key='H:major': not a note name" in result.stderr
    # a Bb major primer continued in E minor: Bb C D Eb F Bb C D, of which Bb, Eb, F and Bb (4 of 8 quarters) are
    # outside E minor's E F# G A B C D
    primer = write_primer_with_signature(tmp_path / "bb.mid", [70, 72, 74, 75, 77, 70, 72, 74], "Bb")
    result = conftest.run_cli("melody_generate", f"--run_dir={keyed_run_dir}", f"--primer_midi={primer}",
                              "--key=E:minor", "--num_bars=1", f"--output_dir={tmp_path / 'out'}", check=True)
    assert "50% of the primer's note time is outside --key=E:minor" in result.stderr
