"""Shared fixtures: a NoteSequence/MIDI builder, small corpora, and one tiny trained run dir per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from melody_plugin.runtime.quiet import quiet_third_party

quiet_third_party()

ROOT = Path(__file__).resolve().parents[1]
FOLK = ROOT.parent / "shared" / "data" / "folk"
VENV_BIN = Path(sys.executable).parent

# Optional extras: a test that needs one carries its marker (@pytest.mark.music21...). Without the extra it skips,
# saying what to install; `--extras=required` (.ci/run's second pass) refuses to start when an extra that a selected
# test needs is missing, and fails the run if any test skips, so a test that always skips cannot pass CI.
EXTRAS = {
    "music21": ("music21", 'pip install -e ".[music21]"'),
    "magenta": ("magenta", "pip install --no-deps magenta==2.1.4 tensorflow-probability==0.25.0 tf-keras==2.21.0 "
                           "dm-tree tf-slim==1.1.0"),
    "notation": ("verovio", 'pip install -e ".[notation]"'),
    "studio": ("starlette", 'pip install -e ".[studio]"'),
    # the browser tests also need Chromium and its driver: apt-get install chromium chromium-driver
    "browser": ("selenium", 'pip install -e ".[studio,browser]" and apt-get install chromium chromium-driver'),
}


def extra_installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def pytest_addoption(parser):
    parser.addoption("--extras", choices=("optional", "required"), default="optional",
                     help="required: every optional extra must be installed and no test may skip (CI's extras pass)")


def pytest_configure(config):
    for marker, (module, install) in EXTRAS.items():
        config.addinivalue_line("markers", f"{marker}: needs the {module} extra ({install})")


@pytest.hookimpl(trylast=True)  # after `-m` has deselected: only the extras of the tests that will run count
def pytest_collection_modifyitems(config, items):
    required = config.getoption("--extras") == "required"
    missing = {marker: install for marker, (module, install) in EXTRAS.items() if not extra_installed(module)
               and any(item.get_closest_marker(marker) for item in items)}
    if required and missing:
        raise pytest.UsageError("--extras=required, but not installed: " + "; ".join(
            f"{marker} ({install})" for marker, install in missing.items()))
    for item in items:
        for marker, install in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"needs the {marker} extra: {install}"))


SKIPPED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("--extras") == "required" and SKIPPED and exitstatus == 0:
        print(f"\n--extras=required: {len(SKIPPED)} tests skipped, every test must run here: {SKIPPED[:5]}")
        session.exitstatus = 1


def make_sequence(notes, time_signature=(4, 4), qpm=120.0, key=None, program=0, is_drum=False, instrument=0,
                  filename="test.mid"):
    """A NoteSequence from (pitch, start_quarters, end_quarters) tuples, like note-seq's add_track_to_sequence."""
    from note_seq.protobuf import music_pb2

    ns = music_pb2.NoteSequence()
    ns.ticks_per_quarter = 480
    ns.filename = filename
    ns.tempos.add(time=0.0, qpm=qpm)
    ns.time_signatures.add(time=0.0, numerator=time_signature[0], denominator=time_signature[1])
    if key is not None:
        ns.key_signatures.add(time=0.0, key=key)
    spq = 60.0 / qpm
    for pitch, start, end in notes:
        ns.notes.add(pitch=pitch, start_time=start * spq, end_time=end * spq, velocity=80, program=program,
                     is_drum=is_drum, instrument=instrument)
    ns.total_time = max((n.end_time for n in ns.notes), default=0.0)
    return ns


def pattern_notes(pattern, repeats=1):
    """(pitch, start, end) tuples from a list of (pitch or None for rest, quarters) repeated back to back."""
    notes, t = [], 0.0
    for _ in range(repeats):
        for pitch, quarters in pattern:
            if pitch is not None:
                notes.append((pitch, t, t + quarters))
            t += quarters
    return notes


def bar_tunes(folder, tunes: int, seed: int, pitch_sets) -> Path:
    """`folder` (made here) of 4/4 tunes of 4 random bars of quarter notes played twice (bar 5 repeats bar 1...):
    tune i keeps to pitch_sets[i % len(pitch_sets)] and ends on its first pitch held a half note."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(tunes):
        pitches = pitch_sets[i % len(pitch_sets)]
        bars = [[(int(p), 1) for p in rng.choice(pitches, 4)] for _ in range(4)]
        bars[3] = bars[3][:2] + [(pitches[0], 2)]
        notes = pattern_notes([n for bar in bars + bars for n in bar])
        write_midi(folder / f"tune_{i:02d}.mid", notes, time_signature=(4, 4), key=0)
    return folder


def write_midi(path, notes, **kwargs) -> Path:
    from melody_plugin.io import midi as midi_io

    ns = make_sequence(notes, filename=str(path), **kwargs)
    midi_io.note_sequence_to_midi_file(ns, path)
    return Path(path)


def write_mido_file(path, notes, tempos=(), time_signatures=((0, 4, 4),), ticks_per_quarter=480, end_tick=None,
                    track_names=None) -> Path:
    """A MIDI file written with mido alone (not our writer), in ticks, as other tools write them.

    notes: (pitch, start_tick, end_tick) or (track, pitch, start_tick, end_tick); tempos: (tick, qpm);
    time_signatures: (tick, numerator, denominator); end_tick: where every track's end-of-track goes (default: the
    last event). Tempo and meter events go in the first track.
    """
    import mido

    notes = [n if len(n) == 4 else (0, *n) for n in notes]
    num_tracks = max(t for t, *_ in notes) + 1
    mid = mido.MidiFile(ticks_per_beat=ticks_per_quarter)
    for index in range(num_tracks):
        events = []
        if track_names:
            events.append((0, 0, mido.MetaMessage("track_name", name=track_names[index])))
        if index == 0:
            events += [(tick, 1, mido.MetaMessage("time_signature", numerator=num, denominator=den))
                       for tick, num, den in time_signatures]
            events += [(tick, 1, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm))) for tick, qpm in tempos]
        for track, pitch, start, end in notes:
            if track == index:
                events.append((start, 3, mido.Message("note_on", channel=index, note=pitch, velocity=80)))
                events.append((end, 2, mido.Message("note_off", channel=index, note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))
        track, tick = mido.MidiTrack(), 0
        for at, _, msg in events:
            track.append(msg.copy(time=at - tick))
            tick = at
        end = tick if end_tick is None else end_tick
        track.append(mido.MetaMessage("end_of_track", time=max(end - tick, 0)))
        mid.tracks.append(track)
    mid.save(path)
    return Path(path)



def write_quarters_file(path, notes, bars: int = 1) -> Path:
    """4/4 at 120 qpm from (pitch or None for a rest, quarters), written by mido (`write_mido_file`) at 480 ticks per
    quarter; every track ends after `bars` bars."""
    ticks, t = [], 0
    for pitch, quarters in notes:
        if pitch is not None:
            ticks.append((pitch, t, t + int(quarters * 480)))
        t += int(quarters * 480)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_mido_file(path, ticks, tempos=((0, 120),), end_tick=bars * 4 * 480)


def midi_ticks(path):
    """(ticks per quarter, [(pitch, on_tick, off_tick)], {meta type: [ticks]}, end-of-track ticks) read with mido."""
    import mido

    mid = mido.MidiFile(path)
    notes, meta, ends = [], {}, []
    for track in mid.tracks:
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[msg.note] = tick
            elif msg.type in ("note_on", "note_off") and msg.note in sounding:
                notes.append((msg.note, sounding.pop(msg.note), tick))
            elif msg.is_meta:
                meta.setdefault(msg.type, []).append((tick, msg))
        ends.append(tick)
    return mid.ticks_per_beat, sorted(notes, key=lambda n: n[1]), meta, ends


def assert_same_split(folder, tfrecord, work_dir, config, expected_eval: int, total: int) -> None:
    """melody_create_dataset's split of a MIDI folder and of a TFRecord of the same tunes: the same counts, the
    same token sequences on each side."""
    from melody_plugin.tokens import corpus
    from melody_plugin.tokens import records as dataset

    reading = corpus.Reading(eval_ratio=0.1, progress=False)
    by_folder = corpus.create_dataset(folder, work_dir / "a", config, reading)
    by_record = corpus.create_dataset(tfrecord, work_dir / "b", config, reading)
    assert 0 < expected_eval < total
    for report in (by_folder, by_record):
        assert (report["melodies_train"], report["melodies_eval"]) == (total - expected_eval, expected_eval)
    for name in ("train.tfrecord", "eval.tfrecord"):
        a = sorted(s.tolist() for s in dataset.read_ids(work_dir / "a" / name))
        b = sorted(s.tolist() for s in dataset.read_ids(work_dir / "b" / name))
        assert a == b


def run_cli(name, *args, timeout=300, env=None, check=False):
    """Runs a console script of this venv; returns the CompletedProcess (text)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    cmd = [str(VENV_BIN / name), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# A tiny corpus that a tiny model can learn: the same two-bar phrase in three meters.
PHRASES = {
    (4, 4): [(60, 1), (62, 1), (64, 1), (65, 1), (67, 2), (None, 1), (64, 1)],
    (3, 4): [(67, 1), (65, 0.5), (64, 0.5), (62, 1), (60, 2), (None, 1)],
    (6, 8): [(62, 1.5), (64, 0.5), (66, 0.5), (67, 0.5), (69, 1.5), (None, 1.5)],
}


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_corpus")
    for (num, den), phrase in PHRASES.items():
        for i in range(4):
            write_midi(folder / f"tune_{num}_{den}_{i}.mid", pattern_notes(phrase, repeats=8),
                       time_signature=(num, den), key=0)
    return folder


TINY_HPARAMS = "rnn_layer_sizes=[48],embedding_size=16,batch_size=32,window_size=8,learning_rate=0.01,dropout_rate=0.0"


def train_tiny_run(tmp_path_factory, corpus, name: str, extra_hparams: str = "") -> Path:
    """A tiny char_lstm trained 300 steps on `corpus` into a fresh run dir."""
    from melody_plugin.model import registry
    from melody_plugin.train.loop import train_and_evaluate
    from melody_plugin.train.options import TrainOptions

    run_dir = tmp_path_factory.mktemp(name)
    config = registry.with_hparams(registry.get_config("char_lstm"), TINY_HPARAMS + extra_hparams)
    result = train_and_evaluate(config, run_dir, corpus, TrainOptions(
        num_training_steps=300, eval_ratio=0.0, summary_frequency=100, save_checkpoint_steps=300, progress=False,
        log=lambda *a: None, write_curve=False))
    assert result.step == 300
    return run_dir


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_corpus) -> Path:
    """One tiny model trained once per session on the tiny corpus (shared by every generation test)."""
    return train_tiny_run(tmp_path_factory, tiny_corpus, "tiny_run")


@pytest.fixture(scope="session")
def tiny_generator(tiny_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    return MelodyGenerator.from_run_dir(tiny_run_dir)


# Primers in four meters (text primers; the last bar of some unfinished) for models with extra inputs
BAR_EXACT_PRIMERS = [((4, 4), "C4:1 D4:1 E4:2 G4:1.5"), ((3, 4), "R:2 G4:1 C5:3 E4:0.5"), ((6, 8), "C4:1.5 E4:0.5"),
                     ((7, 8), "C4:1 D4:0.5 E4:1 R:1")]


def assert_bar_exact_generation(generator, backend: str, meter, primer_text: str, num_bars: int = 3) -> None:
    """3 outputs continue the primer unchanged and end exactly `num_bars` bars after its last complete bar
    (counted from the primer's own grid steps and bar length)."""
    from melody_plugin.generate.sampler import SamplingOptions

    primer = generator.primer_from_text(primer_text, time_signature=meter)
    complete = primer.total_steps // primer.steps_per_bar
    outs = generator.generate(primer, num_bars=num_bars, num_outputs=3,
                              sampling=SamplingOptions(seed=3, backend=backend))
    for out in outs:
        assert out.melody.total_steps == (complete + num_bars) * primer.steps_per_bar
        assert out.melody.notes[:len(primer.notes)] == primer.notes


def assert_samplers_agree_greedily(generator, primer_text: str, meter, num_bars: int) -> None:
    """The numpy and the compiled TensorFlow samplers pick the same ids greedily, with the same likelihoods."""
    from melody_plugin.generate.sampler import SamplingOptions

    primer = generator.primer_from_text(primer_text, time_signature=meter)
    greedy = [generator.generate(primer, num_bars=num_bars, sampling=SamplingOptions(temperature=0.0, backend=b))[0]
              for b in ("numpy", "tf")]
    assert greedy[0].continuation_ids == greedy[1].continuation_ids
    assert greedy[1].log_likelihoods == pytest.approx(greedy[0].log_likelihoods, abs=1e-3)


def evaluate_waltz_by_hand(generator, tmp_path):
    """melody_evaluate's scores of 4 bars of a 3/4 waltz written as MIDI, the tune's ids ([START] + its notes), and
    by hand where each next note begins in the 36-step bar and how long each id lasts."""
    import numpy as np

    from melody_plugin.evaluate import scoring as evaluate
    from melody_plugin.music.extract import note_sequence_to_melody
    from melody_plugin.tokens.vocab import START

    phrase = [(60, 1), (62, 0.5), (64, 0.5), (65, 1)]  # a 3/4 bar: 12 + 6 + 6 + 12 steps
    (tmp_path / "in").mkdir()
    write_midi(tmp_path / "in" / "waltz.mid", pattern_notes(phrase, repeats=4), time_signature=(3, 4), key=0)
    scores = evaluate.evaluate_input(generator, tmp_path / "in")
    melody = note_sequence_to_melody(make_sequence(pattern_notes(phrase, repeats=4), time_signature=(3, 4)))
    ids = [START] + generator.vocab.encode(melody, map_oov=False)
    positions = np.array([0] + [12, 18, 24, 0] * 4)
    steps = np.array([0] + [12, 6, 6, 12] * 4)  # each note's own length, <unk> ones too
    return scores, ids, positions, steps


def assert_old_run_dir_generates_the_same(tiny_run_dir, tiny_generator, tmp_path, field: str):
    """A copy of the tiny run dir whose config.json lacks `field` (written before it existed) loads with the field
    off and generates what the tiny model does."""
    import json
    import shutil

    from melody_plugin.generate.generator import MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions

    old = tmp_path / "old_run"
    shutil.copytree(tiny_run_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config[field]
    (old / "config.json").write_text(json.dumps(config))
    gen = MelodyGenerator.from_run_dir(old)
    assert not getattr(gen.config, field) and not getattr(gen.model, field)
    a, b = (g.generate(None, num_bars=2, num_outputs=2, sampling=SamplingOptions(seed=9))
            for g in (gen, tiny_generator))
    assert [o.continuation_ids for o in a] == [o.continuation_ids for o in b]
