"""note-seq's proto modules without the note-seq package, and a generation path that never imports it."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, make_sequence, pattern_notes

# note-seq's package __init__ imports these (notebook helpers, audio); generation needs none of them
HEAVY = ("note_seq", "bokeh", "pandas")


def run_python(code: str, *args) -> dict:
    """Runs `code` in a fresh interpreter (this venv, the repository first on the path); returns its last
    stdout line as JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_music_pb2_loads_without_the_package_and_its_classes_are_note_seqs():
    out = run_python(
        "import json, sys\n"
        "from melody_plugin.io import protos\n"
        "ours = protos.music_pb2().NoteSequence\n"
        "bundle = protos.generator_pb2().GeneratorBundle\n"
        "heavy = [m for m in sys.argv[1:] if m in sys.modules]\n"
        "from note_seq.protobuf import generator_pb2, music_pb2\n"
        "print(json.dumps({'heavy': heavy, 'same': ours is music_pb2.NoteSequence and "
        "bundle is generator_pb2.GeneratorBundle, 'after': protos.music_pb2() is music_pb2}))", *HEAVY)
    assert out == {"heavy": [], "same": True, "after": True}


def test_music_pb2_is_note_seqs_own_module_once_note_seq_is_imported():
    from note_seq.protobuf import music_pb2

    from melody_plugin.io import protos

    assert protos.music_pb2() is music_pb2
    ns = protos.music_pb2().NoteSequence()
    ns.notes.add(pitch=60, end_time=1.0)
    assert music_pb2.NoteSequence.FromString(ns.SerializeToString()) == ns


GENERATE = (
    "import json, runpy, sys\n"
    "flags, heavy = sys.argv[1].split(), sys.argv[2:]\n"
    "sys.argv = ['melody_generate', *flags]\n"
    "try:\n"
    "    runpy.run_module('melody_plugin.cli.melody_generate', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    assert not e.code, e.code\n"
    "print(json.dumps([m for m in heavy if m in sys.modules]))")


@pytest.mark.parametrize("with_primer", [False, True], ids=["no_primer", "midi_primer_with_meter_change_and_wav"])
def test_melody_generate_never_imports_the_note_seq_package(tmp_path, with_primer):
    from melody_plugin.io import midi as midi_io

    flags = f"--num_bars=2 --num_outputs=2 --seed=1 --output_dir={tmp_path / 'out'}"
    if with_primer:  # reading MIDI, splitting at a meter change, writing MIDI and WAV
        ns = make_sequence(pattern_notes([(60, 1), (62, 1), (64, 2)], 3))
        ns.time_signatures.add(time=4.0, numerator=3, denominator=4)
        ns.total_time = 7.0
        midi_io.note_sequence_to_midi_file(ns, tmp_path / "primer.mid")
        flags += f" --primer_midi={tmp_path / 'primer.mid'} --render=wav"
    assert run_python(GENERATE, flags, *HEAVY) == []
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len([n for n in written if n.endswith(".mid")]) == 2
    assert with_primer == any(n.endswith(".wav") for n in written)
