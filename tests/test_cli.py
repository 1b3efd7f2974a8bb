"""The console scripts as a user runs them: outputs, exit codes, one-line errors, no tracebacks."""

import json
import os
import subprocess
import sys
import wave

import pytest
from conftest import FOLK, make_sequence, run_cli, write_midi

from melody_plugin.generate.generator import EXAMPLE_PRIMER


def umask() -> int:
    """This process's umask, read here (set and restored)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def primer_meter(path) -> str:
    """The first time signature of a MIDI file, read with mido (not with the package)."""
    import mido

    msg = next(m for track in mido.MidiFile(path).tracks for m in track if m.type == "time_signature")
    return f"{msg.numerator}/{msg.denominator}"


def midi_events(path):
    import mido

    types = {msg.type for track in mido.MidiFile(path).tracks for msg in track}
    return types


def test_generate_with_embedded_model_writes_midi_png_and_wav(tmp_path):
    proc = run_cli("melody_generate", f"--primer_midi={EXAMPLE_PRIMER}", "--num_outputs=2", "--num_bars=4",
                   f"--output_dir={tmp_path}", "--render=png,wav", "--seed=7", check=True)
    assert "wrote 2 melodies of 8 bars (6/8)" in proc.stdout
    step = json.loads((tmp_path / "seed_cont_001.json").read_text())["model_step"]
    assert isinstance(step, int) and f"model at step {step})" in proc.stdout  # which checkpoint wrote them
    mid = tmp_path / "seed_cont_001.mid"
    assert {"set_tempo", "time_signature", "key_signature", "note_on"} <= midi_events(mid)
    png = (tmp_path / "seed_cont_001.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with wave.open(str(tmp_path / "seed_cont_001.wav")) as w:
        seconds = w.getnframes() / w.getframerate()
    sidecar = json.loads((tmp_path / "seed_cont_001.json").read_text())
    assert sidecar["total_bars"] == 8 and sidecar["seed"] == 7
    assert seconds == pytest.approx(8 * 3 * 0.5, abs=1.0)  # 8 bars of 6/8 at 120 qpm, plus release tail
    assert sidecar["primer_midi"] == str(EXAMPLE_PRIMER)
    meter = primer_meter(EXAMPLE_PRIMER)
    assert meter != "4/4"  # the flag's default: the sidecar must say what the primer's meter was
    assert sidecar["flags"]["time_signature"] == meter and sidecar["time_signature"] == list(map(int, meter.split("/")))
    assert all("log_likelihood" in n for n in sidecar["notes"])
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_same_seed_same_bytes_and_no_overwrite(tmp_path):
    args = [f"--primer_midi={EXAMPLE_PRIMER}", "--num_bars=2", f"--output_dir={tmp_path}", "--seed=3"]
    run_cli("melody_generate", *args, check=True)
    run_cli("melody_generate", *args, check=True)
    first, second = tmp_path / "seed_cont_001.mid", tmp_path / "seed_cont_002.mid"
    assert first.read_bytes() == second.read_bytes()
    run_cli("melody_generate", *args, "--overwrite", "--seed=4", check=True)
    assert not (tmp_path / "seed_cont_003.mid").exists()
    assert first.read_bytes() != second.read_bytes()


def test_inline_primer_and_key_constraint(tmp_path):
    run_cli("melody_generate", "--primer_melody=D4:0.5 E4:0.5 F#4:1 A4:1 R:1", "--time_signature=3/4",
            "--key=D:major", "--num_bars=4", f"--output_dir={tmp_path}", "--seed=1", "--continuation_only", check=True)
    sidecar = json.loads((tmp_path / "melody_001.json").read_text())
    assert sidecar["time_signature"] == [3, 4]
    assert all(n["pitch"] is None or n["pitch"] % 12 in {2, 4, 6, 7, 9, 11, 1} for n in sidecar["notes"])


def test_repetition_flag_repeats_the_primers_bars(tmp_path):
    # two bars of 3/4 by hand: D E F# A rest | G F# E D-
    primer = "D4:0.5 E4:0.5 F#4:1 A4:1 G4:0.5 F#4:0.5 E4:1 D4:1"
    run_cli("melody_generate", f"--primer_melody={primer}", "--time_signature=3/4", "--num_bars=4",
            "--repetition=40", f"--output_dir={tmp_path}", "--seed=1", "--continuation_only", check=True)
    sidecar = json.loads((tmp_path / "melody_001.json").read_text())
    assert sidecar["flags"]["repetition"] == 40 and sidecar["flags"]["repetition_bars"] == 2
    pitches = [n["pitch"] for n in sidecar["notes"]]
    assert pitches == [62, 64, 66, 69, 67, 66, 64, 62] * 2
    # 2 primer bars + 4 new ones = 6 bars: looking 6 bars back from any new note passes the primer's start
    out = run_cli("melody_generate", f"--primer_melody={primer}", "--time_signature=3/4", "--num_bars=4",
                  "--repetition=40", "--repetition_bars=6", f"--output_dir={tmp_path}", "--overwrite", check=True)
    assert "warning: --repetition does nothing here: --repetition_bars=6" in out.stderr
    assert "(6 bars in all)" in out.stderr


def bad_primers(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    text = tmp_path / "text.mid"
    text.write_text("not a midi file at all\n")
    drums = write_midi(tmp_path / "drums.mid", [(36, 0, 1)], is_drum=True, instrument=9)
    notes_less = tmp_path / "nonotes.mid"
    from melody_plugin.io import midi as midi_io

    ns = make_sequence([])
    midi_io.note_sequence_to_midi_file(ns, notes_less)
    fifo = tmp_path / "fifo.mid"
    os.mkfifo(fifo)
    return [
        (tmp_path / "missing.mid", "no such file"), (empty, "empty file"), (text, "not a MIDI file"),
        (drums, "only drum notes"), (notes_less, "no notes"), (tmp_path, "is a directory"),
        (fifo, "not a regular file"),
    ]


def test_bad_primer_exits_2_with_one_line_naming_the_file(tmp_path):
    for path, reason in bad_primers(tmp_path):
        proc = run_cli("melody_generate", f"--primer_midi={path}", f"--output_dir={tmp_path / 'out'}", timeout=60)
        assert proc.returncode == 2, (path, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(path) in lines[0] and reason in lines[0], lines[0]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_flags_are_one_line_errors(tmp_path):
    proc = run_cli("melody_generate", "--pitch_range=90:10", f"--output_dir={tmp_path}")
    assert proc.returncode == 2 and "pitch range must be LOW:HIGH" in proc.stderr
    proc = run_cli("melody_generate", "--key=H:major", f"--output_dir={tmp_path}")
    assert proc.returncode == 2 and "not a note name" in proc.stderr
    proc = run_cli("melody_generate", "--time_signature=6-8", f"--output_dir={tmp_path}")
    assert proc.returncode == 2 and "time signature must look like 6/8, got '6-8'" in proc.stderr
    proc = run_cli("melody_generate", "--run_dir=/nonexistent/run")
    assert proc.returncode == 2 and "/nonexistent/run: no such run directory" in proc.stderr
    proc = run_cli("melody_train", "--run_dir", str(tmp_path / "r"), "--hparams=units=3")
    assert proc.returncode == 2 and "unknown name(s) units" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("melody_train", "--run_dir", str(tmp_path / "r"), "--hparams=steps_per_quarter=0")
    assert proc.returncode == 2 and "steps_per_quarter must divide 48 or be a multiple of 4, got 0" in proc.stderr
    proc = run_cli("melody_generate", "--track=0", "--program=54", f"--output_dir={tmp_path}")
    assert proc.returncode == 2 and "give --track or --program, not both" in proc.stderr


BAD_NUMBERS = [
    ("seed", -1), ("seed", 2**32), ("num_outputs", 0), ("num_bars", 0), ("num_bars", -3), ("num_bars", 513),
    ("temperature", -0.5),
    ("temperature", float("nan")), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5), ("beam_size", 0),
    ("branch_factor", 0), ("steps_per_iteration", 0), ("qpm", 0.0), ("qpm", float("inf")), ("track", -1),
    ("program", 128), ("num_training_steps", 0), ("eval_ratio", -0.1), ("eval_ratio", 1.0),
    ("summary_frequency", 0), ("save_checkpoint_steps", 0), ("num_checkpoints", 0), ("eval_timeout", 0.0),
    ("num_cpu_devices", -1), ("intra_op_threads", -1), ("inter_op_threads", -2), ("workers", 0),
    ("repetition", float("inf")), ("repetition", -101.0), ("repetition_bars", 0), ("qpm", 3.0), ("qpm", 1e9),
    ("steps_per_quarter", 0), ("steps_per_quarter", -4),
]


@pytest.mark.parametrize("name,value", BAD_NUMBERS)
def test_out_of_range_number_is_one_line_naming_the_flag(name, value):
    from melody_plugin.cli import flags as common

    message = common.check_limits({name: value})
    assert message is not None and message.startswith(f"--{name} must be ") and f"got {value}" in message
    assert "\n" not in message


def test_every_numeric_flag_has_limits_and_its_default_and_edges_pass():
    from absl import flags

    import melody_plugin.cli.melody_create_dataset  # noqa: F401
    import melody_plugin.cli.melody_generate  # noqa: F401
    import melody_plugin.cli.melody_train  # noqa: F401
    from melody_plugin.cli import flags as common

    ours = {flag.name for module, defined in flags.FLAGS.flags_by_module_dict().items()
            if module.startswith("melody_plugin") for flag in defined}  # not absl's or Magenta's own flags
    numeric = {name for name in ours if flags.FLAGS[name].flag_type() in ("int", "float")}
    # validated by the config's own checks (registry), with the config's message
    assert numeric - {"steps_per_quarter", "min_token_count"} <= set(common.LIMITS)
    assert common.check_limits({name: flags.FLAGS[name].default for name in numeric}) is None
    edges = {"seed": 0, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "eval_ratio": 0.0, "program": 127,
             "num_bars": 512}
    assert common.check_limits(edges) is None
    assert common.check_limits({"seed": 2**32 - 1}) is None


def test_bad_numbers_exit_2_with_one_line_before_any_work(tmp_path):
    for command, flag in (("melody_generate", "--seed=-1"), ("melody_train", "--summary_frequency=0")):
        proc = run_cli(command, flag, f"--run_dir={tmp_path / 'run'}", f"--output_dir={tmp_path / 'out'}"
                       if command == "melody_generate" else f"--input={tmp_path}", timeout=60)
        name, value = flag.split("=")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"{command}: error: {name} must be ") and lines[0].endswith(f"got {value}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
    proc = run_cli("melody_generate", "--seed=abc", timeout=60)  # absl cannot parse it: the same one line, exit 2
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "melody_generate: error: --seed=abc: invalid literal for int() with base 10: 'abc'"]


def test_help_imports_neither_tensorflow_nor_note_seq():
    code = ("import sys, melody_plugin.cli.melody_generate, melody_plugin.cli.melody_train, "
            "melody_plugin.cli.melody_evaluate, melody_plugin.cli.melody_create_dataset, "
            "melody_plugin.cli.melody_export;"
            "print([m for m in ('tensorflow', 'keras', 'note_seq') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in ("melody_generate", "melody_train", "melody_evaluate", "melody_create_dataset", "melody_export"):
        proc = run_cli(name, "--help")
        assert proc.returncode == 0 and "--" in proc.stdout
    full = run_cli("melody_generate", "--helpfull")  # what --help points to: every flag, the command's among them
    assert full.returncode == 0 and "--ending" in full.stdout and "--num_bars" in full.stdout, full.stderr


def test_create_dataset_train_resume_evaluate_export(tmp_path, tiny_corpus):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in sorted(tiny_corpus.iterdir()):
        (corpus / f.name).write_bytes(f.read_bytes())
    (corpus / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x10\x00")
    proc = run_cli("melody_create_dataset", f"--input={corpus}", f"--output_dir={tmp_path / 'ds'}",
                   "--eval_ratio=0.25", "--hparams=min_notes=2", check=True)
    assert "files read: 13, used: 12, skipped: 1" in proc.stdout
    assert "broken.mid: truncated" in proc.stdout
    # the folder now holds a dataset: made again only when asked, and a user's own vocab.json is never replaced
    vocab = (tmp_path / "ds" / "vocab.json").read_bytes()
    again = run_cli("melody_create_dataset", f"--input={corpus}", f"--output_dir={tmp_path / 'ds'}")
    assert again.returncode == 2 and again.stderr.strip().endswith(
        f"{tmp_path / 'ds'}: already holds train.tfrecord, eval.tfrecord, vocab.json, stats.json; pass --overwrite "
        "to replace them, or name another --output_dir")
    assert (tmp_path / "ds" / "vocab.json").read_bytes() == vocab
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vocab.json").write_text("my own notes")
    refused = run_cli("melody_create_dataset", f"--input={corpus}", f"--output_dir={mine}")
    assert refused.returncode == 2 and "already holds vocab.json; pass --overwrite to replace it" in refused.stderr
    assert (mine / "vocab.json").read_text() == "my own notes"
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("keep me")
    for flag in ("--output_dir", "--run_dir"):  # a file where a folder is named: refused, naming the flag
        command = "melody_create_dataset" if flag == "--output_dir" else "melody_train"
        for value, reason in ((a_file, f"{a_file} is a file, not a folder"),
                              (a_file / "sub", f"{a_file} is a file, not a folder")):
            proc = run_cli(command, f"--input={corpus}", f"{flag}={value}")
            assert proc.returncode == 2 and proc.stderr.strip().endswith(f"{flag}={value}: {reason}"), proc.stderr
    assert a_file.read_text() == "keep me"
    run_dir = tmp_path / "run"
    hp = "--hparams=rnn_layer_sizes=[32],embedding_size=8,batch_size=16"
    proc = run_cli("melody_train", f"--input={tmp_path / 'ds'}", f"--run_dir={run_dir}", hp,
                   "--num_training_steps=40", "--summary_frequency=20", "--save_checkpoint_steps=20", check=True)
    assert "step 40/40" in proc.stdout and "tokens/s" in proc.stdout
    proc = run_cli("melody_train", f"--run_dir={run_dir}", hp, "--num_training_steps=60", "--summary_frequency=20",
                   check=True)
    assert "resumed from ckpt-40 at step 40" in proc.stdout and "step 60/60" in proc.stdout
    assert (run_dir / "training_curve.png").is_file()
    proc = run_cli("melody_train", f"--run_dir={run_dir}", hp, "--num_training_steps=60", check=True)
    assert "done: the run is already at step 60 (--num_training_steps=60); raise --num_training_steps" in proc.stdout
    proc = run_cli("melody_evaluate", f"--run_dir={run_dir}", f"--input={corpus}", check=True)
    line = proc.stdout.strip().splitlines()[-1]
    scores = json.loads(line)
    assert set(scores) >= {"bits_per_note", "bits_per_token", "perplexity", "accuracy", "notes", "tokens",
                           "oov_tokens", "files", "skipped", "pitch_bits_per_note"}
    assert scores["files"] == 12 and scores["skipped"] == 1 and scores["notes"] > 0
    saved = tmp_path / "saved"
    run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={saved}", check=True)
    check = ("import numpy as np; from melody_plugin.runtime.quiet import import_tensorflow; tf = import_tensorflow();"
             "from melody_plugin.model.rundir import RunDir; from melody_plugin.model import build_model;"
             f"r = RunDir({str(run_dir)!r}); c = r.load_config(); v = r.load_vocab();"
             "m = build_model(c, len(v));"
             "tf.train.Checkpoint(model=m).restore(tf.train.latest_checkpoint(str(r.checkpoint_dir))).expect_partial();"
             f"s = tf.saved_model.load({str(saved)!r}); ids = tf.constant([[1, 4, 5, 6, 7, 8]], tf.int32);"
             "a = m(ids, training=False).numpy(); b = s.signatures['logits'](ids=ids)['logits'].numpy();"
             "o = s.signatures['serving_default'](ids=ids, steps=tf.constant([48], tf.int32),"
             " temperature=tf.constant(1.0),"
             " top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(1, tf.int64));"
             "t = o['ids'].numpy()[0]; t = t[t >= 0]; d = v.durations();"
             "print(float(np.abs(a - b).max()), int(d[t].sum()) == 48, int(t.min()) >= 3)")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 1e-5 and out[-1] == "True"
    assert (saved / "assets.extra" / "vocab.json").is_file()
    proc = run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={saved}")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert oct(saved.stat().st_mode & 0o777) == oct(0o777 & ~umask())  # as mkdir makes it: a server can read it
    songs = tmp_path / "songs"  # --overwrite replaces a SavedModel, never a folder of the user's
    songs.mkdir()
    (songs / "song.txt").write_text("my song")
    proc = run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={songs}", "--overwrite")
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        f"{songs}: not a SavedModel (no saved_model.pb in it); --overwrite replaces only a SavedModel: name another "
        "--saved_model_dir")
    assert (songs / "song.txt").read_text() == "my song"
    run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={saved}", "--overwrite", check=True)
    assert (saved / "saved_model.pb").is_file()
    (saved / "MY_NOTES.txt").write_text("notes")  # a file of the user's beside an export: --overwrite keeps off
    proc = run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={saved}", "--overwrite")
    assert proc.returncode == 2 and "holds MY_NOTES.txt beside the SavedModel" in proc.stderr
    assert (saved / "MY_NOTES.txt").read_text() == "notes"
    (saved / "MY_NOTES.txt").unlink()
    link = tmp_path / "current"  # a link to the export: written through, the link kept
    link.symlink_to(saved)
    run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={link}", "--overwrite", check=True)
    assert link.is_symlink() and os.readlink(link) == str(saved) and (saved / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing hidden left
    empty = tmp_path / "empty"
    empty.mkdir()
    run_cli("melody_export", f"--run_dir={run_dir}", f"--saved_model_dir={empty}", check=True)  # nothing to lose
    assert (empty / "saved_model.pb").is_file()


def test_bundle_cli_round_trip(tmp_path, tiny_run_dir):
    bundle = tmp_path / "model.mag"
    run_cli("melody_generate", f"--run_dir={tiny_run_dir}", "--save_generator_bundle", f"--bundle_file={bundle}",
            check=True)
    written = bundle.read_bytes()
    mine = tmp_path / "precious.txt"
    mine.write_text("precious")
    proc = run_cli("melody_generate", f"--run_dir={tiny_run_dir}", "--save_generator_bundle", f"--bundle_file={mine}")
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        f"--bundle_file={mine}: already exists; pass --overwrite to replace it, or name another file")
    assert mine.read_text() == "precious"
    run_cli("melody_generate", f"--run_dir={tiny_run_dir}", "--save_generator_bundle", f"--bundle_file={bundle}",
            "--overwrite", check=True)
    assert bundle.read_bytes() == written  # the same model, the same bytes
    folder, link = tmp_path / "a_folder", tmp_path / "dangling.mag"
    folder.mkdir()
    link.symlink_to(tmp_path / "nowhere" / "x.mag")
    for value, reason in ((folder, f"{folder} is a folder, not a file"),
                          (mine / "x.mag", f"{mine} is a file, not a folder"), (link, f"{link} is a broken link")):
        proc = run_cli("melody_generate", f"--run_dir={tiny_run_dir}", "--save_generator_bundle",
                       f"--bundle_file={value}", "--overwrite")
        assert proc.returncode == 2 and proc.stderr.strip().endswith(f"--bundle_file={value}: {reason}"), proc.stderr
    assert not (tmp_path / "nowhere").exists() and mine.read_text() == "precious"
    a = run_cli("melody_generate", f"--run_dir={tiny_run_dir}", "--num_bars=4", "--seed=9",
                f"--output_dir={tmp_path / 'a'}", check=True)
    b = run_cli("melody_generate", f"--bundle_file={bundle}", "--num_bars=4", "--seed=9",
                f"--output_dir={tmp_path / 'b'}", check=True)
    assert a.returncode == b.returncode == 0
    assert (tmp_path / "a" / "melody_001.mid").read_bytes() == (tmp_path / "b" / "melody_001.mid").read_bytes()


@pytest.mark.skipif(not FOLK.is_dir(), reason="needs ../shared/data/folk")
def test_create_dataset_on_part_of_the_folk_collection(tmp_path):
    proc = run_cli("melody_create_dataset", f"--input={FOLK}/oneills1850_0001-0050_*.mid",
                   f"--output_dir={tmp_path / 'ds'}", check=True)
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["files_read"] >= 40 and stats["melodies_train"] > 30
    assert stats["coverage_train"] > 0.99
    assert "vocabulary:" in proc.stdout


def test_a_folder_flag_names_what_is_in_the_way(tmp_path):
    from melody_plugin.cli import flags as common

    a_file, link = tmp_path / "notes.txt", tmp_path / "gone"
    a_file.write_text("x")
    link.symlink_to(tmp_path / "nowhere")
    assert common.folder_problem("output_dir", str(tmp_path / "new" / "deeper")) is None  # made when written
    assert common.folder_problem("output_dir", str(tmp_path)) is None
    assert common.folder_problem("output_dir", "") is None
    assert common.folder_problem("output_dir", str(a_file)) == (
        f"--output_dir={a_file}: {a_file} is a file, not a folder")
    assert common.folder_problem("run_dir", str(a_file / "sub")) == (
        f"--run_dir={a_file / 'sub'}: {a_file} is a file, not a folder")
    assert common.folder_problem("output_dir", str(link)) == f"--output_dir={link}: {link} is a broken link"
    proc = run_cli("melody_generate", f"--output_dir={link}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"melody_generate: error: --output_dir={link}: {link} is a broken link"


def test_a_training_that_fails_on_its_input_leaves_no_run_dir_behind(tmp_path):
    empty = tmp_path / "no_tunes"
    empty.mkdir()
    (empty / "notes.txt").write_text("not music")
    run_dir = tmp_path / "runs" / "a" / "mine"
    proc = run_cli("melody_train", f"--input={empty}", f"--run_dir={run_dir}", "--num_training_steps=5")
    assert proc.returncode == 2 and str(empty) in proc.stderr
    assert not (tmp_path / "runs").exists()  # made for this run with its parents, and nothing but its lock written
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    proc = run_cli("melody_train", f"--input={empty}", f"--run_dir={kept}", "--num_training_steps=5")
    assert proc.returncode == 2 and (kept / "mine.txt").read_text() == "mine"  # a folder that was there stays
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]  # as it was: the lock file went too


def test_training_refuses_a_folder_of_other_things_as_its_run_dir(tmp_path, tiny_corpus):
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "training_curve.png").write_bytes(b"my own plot")
    (mine / "notes.txt").write_text("notes")
    proc = run_cli("melody_train", f"--input={tiny_corpus}", f"--run_dir={mine}", "--num_training_steps=5")
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        f"{mine}: not a run dir (no config.json) and it holds notes.txt, training_curve.png; training would write "
        "over them: name a new or empty --run_dir")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "training_curve.png"]
    assert (mine / "training_curve.png").read_bytes() == b"my own plot"
