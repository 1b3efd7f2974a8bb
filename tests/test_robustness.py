"""Nothing is lost: SIGKILL and Ctrl-C during training, full disks and unwritable folders while writing outputs."""

import errno
import os
import signal
import subprocess
import time

import pytest
from conftest import TINY_HPARAMS, VENV_BIN, run_cli

from melody_plugin.model.rundir import RunDir
from melody_plugin.runtime import atomic


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


# A short run, and 15 moments in it to signal at: (a line the run prints, or None for its start; seconds after).
# Together they cover interpreter start, TensorFlow's import, the worker pool reading the files, model building,
# tracing, compiled steps, evaluation, checkpoints being written, the last checkpoint, the curve PNG and the exit.
# Each run costs a TensorFlow import (about 9 s of CPU in all), so there are 15: about 70 s on 2 idle cores.
SHORT_RUN = ["--num_training_steps=150", "--save_checkpoint_steps=10", "--summary_frequency=10", "--eval_ratio=0.25"]
MOMENTS = [(None, 0.05), (None, 0.5), (None, 1.5), (None, 3.0), (None, 6.0),
           ("read ", 0.0), ("read ", 0.3), ("read ", 0.8),
           ("step 10/", 0.0), ("step 10/", 0.05), ("step 60/", 0.0), ("step 100/", 0.02),
           ("step 150/", 0.0), ("step 150/", 0.15), ("step 150/", 0.8)]
# SIGINT to the process, SIGTERM to it, and SIGINT to its whole process group as a terminal's Ctrl-C sends it
# (the worker pool reading the files gets it too)
KINDS = [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)]
PARALLEL = 4  # runs at once: 20 in a row would take minutes
STOP_TIMEOUT_S = 20  # a hang detector, not a speed target: the commands stop within flags.STOP_GRACE_S


class _ShortRun:
    """One melody_train run in its own process, with its output lines timed as they come."""

    def __init__(self, index, run_dir, corpus):
        import threading

        self.index, self.run_dir = index, run_dir
        self.line_pattern, self.offset_s = MOMENTS[index]
        self.sig, self.group = KINDS[index % len(KINDS)]
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "melody_train"), f"--input={corpus}", f"--run_dir={run_dir}",
             f"--hparams={TINY_HPARAMS}", *SHORT_RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"),
            start_new_session=True)  # its own group (only a group kind signals all of it), and its own CPU share
        self.started, self.sent = time.monotonic(), None
        self.lines, self.errors = [], []
        self.readers = [threading.Thread(target=self._read, args=(stream, store), daemon=True)
                        for stream, store in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, store):
        for line in stream:
            store.append((time.monotonic(), line))

    def moment(self):
        """When to signal: None until the line it waits for has been printed."""
        if self.line_pattern is None:
            return self.started + self.offset_s
        printed = [t for t, line in list(self.lines) if line.startswith(self.line_pattern)]
        return printed[0] + self.offset_s if printed else None

    def finish(self):
        self.proc.wait()
        for reader in self.readers:
            reader.join()
        return self.proc.returncode, "".join(line for _, line in self.lines), "".join(line for _, line in self.errors)


def test_a_signal_at_any_moment_stops_training_and_leaves_a_resumable_run_dir(tmp_path, tiny_corpus):
    from melody_plugin.model.keras_model import build_model
    from melody_plugin.runtime.quiet import import_tensorflow

    pending, running, outcomes = list(range(len(MOMENTS))), [], []
    while pending or running:
        if pending and len(running) < PARALLEL:
            i = pending.pop(0)
            running.append(_ShortRun(i, tmp_path / f"run_{i}", tiny_corpus))
            continue
        time.sleep(0.01)
        for run in list(running):
            now, when = time.monotonic(), run.moment()
            if run.sent is None and (when is not None and now >= when or run.proc.poll() is not None):
                if run.proc.poll() is None:
                    os.killpg(run.proc.pid, run.sig) if run.group else run.proc.send_signal(run.sig)
                run.sent = now
            if run.sent is None or (run.proc.poll() is None and now - run.sent < STOP_TIMEOUT_S):
                continue
            running.remove(run)
            if run.proc.poll() is None:
                run.proc.kill()
                raise AssertionError(f"run {run.index} ({run.sig.name}) still running {STOP_TIMEOUT_S} s after the "
                                     f"signal:\n{run.finish()[2]}")
            outcomes.append((run, *run.finish()))

    finished = 0
    for run, code, _, err in outcomes:
        where = f"run {run.index}, {run.sig.name} at {MOMENTS[run.index]}: exit {code}\n{err}"
        if code not in (0, 130) and not run.run_dir.exists() and "/melody_plugin/" not in err:
            continue  # the signal came while Python itself started, before any of our code ran: nothing to keep
        done = [t for t, line in run.lines if line.startswith("done: step 150")]
        if done:  # it finished; a signal in the interpreter's teardown meets default handlers
            finished += 1
            assert code in (0, 130, -run.sig) and "Traceback" not in err, where
            # ... but it must have finished before the signal, not gone on as if none came (1 s for delivery)
            assert done[0] < run.sent + 1.0, f"{where}\nthe signal was ignored: it finished afterwards"
            continue
        assert code == 130 and "Traceback" not in err, where
        last = err.strip().splitlines()[-1]
        assert last.startswith("melody_train: ") and "interrupted" in last, where  # one line says so
    assert finished < len(outcomes) / 2  # most signals came during the run

    # every run dir is free (its lock released) and its newest listed checkpoint is complete and restores
    tf = import_tensorflow()
    for run, code, _, err in outcomes:
        run_dir = RunDir(run.run_dir)
        if not run_dir.checkpoint_dir.is_dir() or run_dir.latest_checkpoint_step() is None:
            continue
        with run_dir.lock():
            pass
        model = build_model(run_dir.load_config(), len(run_dir.load_vocab()))
        status = tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(str(run_dir.checkpoint_dir)))
        status.expect_partial().assert_existing_objects_matched()
        if code == 130 and "checkpoint saved" in err:
            step = int(err.split("interrupted at step ")[1].split(";")[0])
            assert run_dir.latest_checkpoint_step() == step, f"run {run.index}"


def test_a_signal_while_tensorflow_works_is_held_until_a_safe_point():
    """Inside `deferred()` the handler only remembers the signal (an exception raised where TensorFlow's C++ code
    calls back into Python can crash the process); the stop comes as KeyboardInterrupt when the section ends."""
    from melody_plugin.runtime import signals as train

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with train._STOP:
            with train._STOP.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler has run by now: Python runs it between two bytecodes
                reached.append("the section went on")
                assert train._STOP.requested
    assert reached == ["the section went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    with pytest.raises(KeyboardInterrupt):  # outside deferred(), the signal raises where it lands
        with train._STOP:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("not reached")
    assert reached == ["the section went on"]


SWALLOWING_COMMAND = """
from melody_plugin.cli import flags
def main(argv):
    import time
    ready = False
    while True:
        try:  # "ready" is said inside the try, so a signal right after it is swallowed too, however busy the machine
            if not ready:
                ready = print("ready", flush=True) or True
            time.sleep(10)
        except KeyboardInterrupt:
            pass  # what a library may do with Ctrl-C
flags.run("demo", main, "__main__")
"""


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM, signal.SIGINT]])
def test_a_command_whose_code_swallows_the_interrupt_is_stopped_anyway(tmp_path, signals):
    import sys

    script = tmp_path / "demo.py"
    script.write_text(SWALLOWING_COMMAND)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == "ready\n"
    for i, sig in enumerate(signals):
        time.sleep(0.7 * i)  # a second Ctrl-C a moment later
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 130
    expected = "interrupted; forced to stop" if len(signals) == 1 else "interrupted twice; stopped at once"
    assert err.strip().splitlines() == [err.strip()] and err.startswith("demo: ") and expected in err


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
