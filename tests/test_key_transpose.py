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
