"""Nothing is lost: SIGKILL and Ctrl-C during training, full disks and unwritable folders while writing outputs."""

import errno
import os
import signal
import subprocess
import time

import pytest

from conftest import TINY_HPARAMS, VENV_BIN, run_cli
from melody_plugin import atomic
from melody_plugin.rundir import RunDir


def start_training(run_dir, corpus, steps=100000, save_every=5):
    return subprocess.Popen(
        [str(VENV_BIN / "melody_train"), f"--input={corpus}", f"--run_dir={run_dir}", f"--hparams={TINY_HPARAMS}",
         f"--num_training_steps={steps}", f"--save_checkpoint_steps={save_every}", "--summary_frequency=5",
         "--eval_ratio=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"))


def wait_for_checkpoint(run_dir, proc, at_least=1, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        step = RunDir(run_dir).latest_checkpoint_step()
        if step is not None and step >= at_least:
            return step
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


def test_sigkill_during_training_leaves_a_run_dir_that_resumes(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, tiny_corpus)
    wait_for_checkpoint(run_dir, proc, at_least=20)
    time.sleep(0.137)  # somewhere in the middle of steps and saves
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    last = RunDir(run_dir).latest_checkpoint_step()
    assert last is not None and last >= 20
    result = run_cli("melody_train", f"--run_dir={run_dir}", f"--hparams={TINY_HPARAMS}",
                     f"--num_training_steps={last + 10}", "--summary_frequency=5", check=True)
    assert f"resumed from ckpt-{last} at step {last}" in result.stdout  # lock released, checkpoint complete
    assert f"done: step {last + 10}" in result.stdout


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, tiny_corpus, save_every=1000)
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").is_file() and time.time() < deadline:  # training is under way
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "checkpoint saved" in err and "Traceback" not in err
    step = int(err.split("interrupted at step ")[1].split(";")[0])
    assert RunDir(run_dir).latest_checkpoint_step() == step


def test_full_disk_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.mid"
    target.write_bytes(b"old, complete content")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_bytes(target, b"new content that never lands")
    assert target.read_bytes() == b"old, complete content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mid"]  # no temporary file left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_dir_is_a_one_line_error(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    proc = run_cli("melody_generate", "--num_bars=1", f"--output_dir={out}")
    assert proc.returncode != 0 and "Permission denied" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_output_path_that_is_a_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    proc = run_cli("melody_generate", "--num_bars=1", f"--output_dir={blocker / 'sub'}")
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
