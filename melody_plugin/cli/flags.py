"""Flags shared by several commands, and the wrapper that turns our errors into one line and an exit code.

Nothing heavy is imported here: `--help` of every command stays fast.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import select
import signal
import threading

from absl import (
    app,
    flags,  # noqa: E402
)
from absl import logging as absl_logging

from melody_plugin.errors import MelodyPluginError

FLAGS = flags.FLAGS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
STOP_GRACE_S = 5.0  # after Ctrl-C or SIGTERM, the longest a command runs on, wherever the signal lands
MAX_BARS = 512  # --num_bars: a long tune is a few hundred bars; more is a typo that would run for minutes
SEED_MAX = 2**32 - 1  # numpy's legacy seeding (Keras's set_random_seed uses it) refuses larger seeds


def _at_least(low):
    return (lambda v: v >= low), f">= {low}"


# What each numeric flag may be, by name, for every command that defines it. Checked before a command does any
# work: a bad value is one line and exit 2, not a traceback from deep inside numpy or TensorFlow. None (a flag
# left unset) is always allowed; floats must also be finite.
LIMITS = {
    # melody_generate
    "num_outputs": _at_least(1),
    "num_bars": ((lambda v: 1 <= v <= MAX_BARS), f"in [1, {MAX_BARS}]"),
    "temperature": ((lambda v: v >= 0), ">= 0 (0 = greedy)"),
    "top_k": ((lambda v: v >= 0), ">= 0 (0 = off)"),
    "top_p": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "beam_size": _at_least(1),
    "branch_factor": _at_least(1),
    "steps_per_iteration": _at_least(1),
    "repetition": ((lambda v: -100 <= v <= 100), "in [-100, 100] (0 = off)"),
    "repetition_bars": _at_least(1),
    "seed": ((lambda v: 0 <= v <= SEED_MAX), f"in [0, {SEED_MAX}]"),
    # MIDI stores a tempo as 1..16777215 microseconds per quarter: 3.6 qpm to 60 million; a usable range
    "qpm": ((lambda v: 4 <= v <= 1000), "in [4, 1000]"),
    "steps_per_quarter": _at_least(1),
    "track": ((lambda v: v == "all" or v >= 0), ">= 0 or all"),
    "program": ((lambda v: 0 <= v <= 127), "in [0, 127]"),
    # melody_train (and melody_create_dataset's eval_ratio, workers)
    "num_training_steps": _at_least(1),
    "max_minutes": ((lambda v: 0 < v < math.inf), "> 0 and finite"),
    "max_cpu_minutes": ((lambda v: 0 < v < math.inf), "> 0 and finite"),
    "eval_ratio": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    "summary_frequency": _at_least(1),
    "save_checkpoint_steps": _at_least(1),
    "num_checkpoints": _at_least(1),
    "eval_timeout": ((lambda v: v > 0), "> 0"),
    "num_cpu_devices": _at_least(0),
    "intra_op_threads": _at_least(0),
    "inter_op_threads": _at_least(0),
    "workers": _at_least(1),
}


# flags that name a folder a command writes or reads: a file (or a broken link) there, or above it, is refused
# before any work, naming the flag, rather than failing late with the system's "File exists"
FOLDER_FLAGS = ("output_dir", "run_dir", "saved_model_dir")


def _in_the_way(path: Path) -> str | None:
    """What stops `path` being (or lying in) a folder: a file or a broken link at it or above it; None."""
    for place in (path, *path.parents):
        if place.is_symlink() and not place.exists():
            return f"{place} is a broken link"
        if place.exists():
            return None if place.is_dir() else f"{place} is a file, not a folder"
    return None


def folder_problem(name: str, value) -> str | None:
    """Why --name=value cannot be a folder (something that is not a folder is at it or above it), or None."""
    reason = _in_the_way(Path(value).expanduser()) if value else None
    return reason and f"--{name}={value}: {reason}"


def file_problem(name: str, value) -> str | None:
    """Why --name=value cannot be a file to write (a folder or a broken link there, a file above it), or None."""
    path = Path(value).expanduser()
    if path.is_symlink() and not path.exists():
        reason = f"{path} is a broken link"
    elif path.is_dir():
        reason = f"{path} is a folder, not a file"
    else:
        reason = _in_the_way(path.parent)
    return reason and f"--{name}={value}: {reason}"


def check_limits(values: dict) -> str | None:
    """The first flag in `values` ({name: value}) outside its LIMITS, as a one-line message; None if all fit."""
    for name, value in values.items():
        if value is None or name not in LIMITS:
            continue
        ok, allowed = LIMITS[name]
        if not (ok(value) and (not isinstance(value, float) or math.isfinite(value))):
            return f"--{name} must be {allowed}, got {value}"
    return None


def define(kind: str, name: str, *args, **kwargs) -> None:
    """flags.DEFINE_<kind>, skipped when the flag exists (several commands imported in one process share it)."""
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name, *args, **kwargs)


def define_input():
    define("string", "input", None, "MIDI/MusicXML/ABC folder (searched recursively), glob, single file, "
           "NoteSequence TFRecord, or a melody_create_dataset folder. Omitted: the example corpus "
           "shipped with the package.")
    define("enum", "music_reader", None, ["auto", "note_seq", "music21"],
           "Who reads ABC and MusicXML: auto (music21 when the extra is installed, note-seq for what it cannot "
           "read; note-seq alone without it), note_seq or music21. Default: $MELODY_PLUGIN_READER, else auto.")


def define_run_dir(required: bool = False):
    define("string", "run_dir", None, "Run directory: config, vocabulary, checkpoints and logs live here."
           + ("" if required else " Omitted: the small folk model shipped with the package."))
    if required:
        flags.mark_flag_as_required("run_dir")


def define_checkpoint():
    define("enum", "checkpoint", "best", ["best", "latest"],
           "Which checkpoint of --run_dir: best (lowest eval bits/note during training; the latest when the run "
           "kept none) or latest.")


class TrackParser(flags.ArgumentParser):
    """--track: an instrument index or "all"."""

    def parse(self, argument):
        if isinstance(argument, int) or argument is None:
            return argument
        text = str(argument).strip().lower()
        if text == "all":
            return "all"
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an instrument index or 'all', got {argument!r}") from None

    def flag_type(self):
        return "int or 'all'"


def define_extraction():
    define("enum", "polyphony_policy", None, ["highest", "lowest", "reject"],
           "How overlapping notes become one melody line: highest (skyline), lowest, or reject. "
           "Default: the config's (highest).")
    if "track" not in FLAGS:
        flags.DEFINE(TrackParser(), "track", None,
                     "Instrument index of the melody track, or 'all' for one melody per pitched track (training "
                     "folders, as Magenta does). Default: the melody track by name (soprano, melody, vocal, lead...), "
                     "else the highest monophonic line that is not a bass line; the choice is always reported.")
    define("integer", "program", None, "MIDI program of the melody track, instead of --track.")


def define_progress():
    define("boolean", "progress", None, "Progress bars; default: on when the terminal is interactive.")


def fail(program: str, message: str, code: int = EXIT_USER_ERROR):
    """One line on stderr, then exit (never a traceback for a user's mistake)."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _stop_now(program: str, message: str, stderr_fd: int = 2, tidy: bool = True, prefix: str = ""):
    """One line, then exit 130 without the interpreter's teardown (TensorFlow's can take seconds, or crash, after
    an interrupt). Nothing is lost: every file is written atomically. `tidy` (the main thread) first unlinks the
    semaphores of a finished worker pool, or multiprocessing's resource tracker prints a warning about them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(stderr_fd, f"{program}: {prefix}{message}\n".encode())
    mp_util = sys.modules.get("multiprocessing.util")
    if tidy and mp_util is not None:
        try:
            mp_util._run_finalizers(0)  # what atexit would run first; a stuck one is cut off by the watchdog
        except Exception:
            pass
    os._exit(EXIT_INTERRUPTED)


def stop_on_signals(program: str) -> None:
    """Ctrl-C and SIGTERM stop the command within STOP_GRACE_S seconds, whatever it is doing.

    The first signal raises KeyboardInterrupt in the main thread: training saves a checkpoint, and the command
    prints one line and exits 130. But Python runs that handler only between two bytecodes of the main thread, and
    library code can swallow the KeyboardInterrupt (a Cython module that TensorFlow's import loads writes it off
    as "unraisable"). So a watchdog thread hears of the signal too, through the wakeup fd that the C-level handler
    writes at once, and ends the process if it still runs STOP_GRACE_S seconds later; a second signal ends it at
    once. Ending anywhere is safe: files are written atomically, and a checkpoint is complete or not listed.
    """

    if threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    stderr_fd = os.dup(2)  # TensorFlow's import points fd 2 elsewhere for a while; the last word must show
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    stops = (signal.SIGINT, signal.SIGTERM)
    for sig in stops:
        signal.signal(sig, raise_interrupt)

    def watchdog():
        first = None
        while True:
            wait = None if first is None else max(0.0, first + STOP_GRACE_S - time.monotonic())
            if not select.select([read_fd], [], [], wait)[0]:
                _stop_now(program, f"interrupted; forced to stop after {STOP_GRACE_S:g} s (no file is left "
                                   "half-written; training keeps its last complete checkpoint)", stderr_fd,
                          tidy=False)
            if not any(byte in stops for byte in os.read(read_fd, 512)):
                continue  # another signal with a Python handler (SIGALRM of a reading time limit)
            if first is None:
                first = time.monotonic()
            elif time.monotonic() - first > 0.5:  # a second Ctrl-C, not one signal seen by several processes
                _stop_now(program, "interrupted twice; stopped at once", stderr_fd, tidy=False)

    threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()


def guarded(program: str, main):
    """Wraps an absl `main`: our errors become one line and exit status 2, Ctrl-C exits 130."""

    def wrapped(argv):
        if len(argv) > 1:
            fail(program, f"unexpected arguments {argv[1:]}; flags are written --name=value")


        absl_logging.set_verbosity(absl_logging.WARNING)  # TensorFlow's INFO lines go through absl too
        if "music_reader" in FLAGS and FLAGS.music_reader:  # read by io/files.py, in the worker processes too
            os.environ["MELODY_PLUGIN_READER"] = FLAGS.music_reader
        problem = check_limits({name: FLAGS[name].value for name in LIMITS if name in FLAGS}) or next(
            filter(None, (folder_problem(name, FLAGS[name].value) for name in FOLDER_FLAGS if name in FLAGS)), None)
        if problem:
            fail(program, problem)
        if "track" in FLAGS and FLAGS.track is not None and FLAGS.program is not None:
            fail(program, "give --track or --program, not both (each picks the melody track)")

        try:
            return main(argv)
        except MelodyPluginError as e:
            if e.exit_code == EXIT_INTERRUPTED:  # an orderly stop, not a mistake: "interrupted at step N; ..."
                _stop_now(program, str(e))
            fail(program, str(e), e.exit_code)
        except KeyboardInterrupt:
            _stop_now(program, "interrupted")
        except OSError as e:  # disk full, permission denied while writing outputs
            fail(program, f"{getattr(e, 'filename', '') or ''}: {e.strerror or e}".lstrip(": "), 1)

    return wrapped


def run(program: str, main, module_name: str) -> None:
    """app.run for a console script, with its flags listed by --help (absl only lists the main module's)."""
    stop_on_signals(program)
    try:
        _run(program, main, module_name)
    except KeyboardInterrupt:  # while absl starts up, before `guarded` runs
        _stop_now(program, "interrupted")


def _run(program: str, main, module_name: str) -> None:
    for name in (module_name, __name__):
        for flag in FLAGS.get_flags_for_module(name):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        # absl exits 1 after --help; a help request is not an error
        print(f"{(sys.modules[module_name].__doc__ or program).strip()}\n")
        print(f"usage: {program} [--flag=value ...]   (--helpfull lists every flag)\n")
        print(FLAGS.main_module_help())
        sys.exit(0)
    if "--helpfull" in sys.argv[1:]:  # every flag, absl's and TensorFlow's included
        print(f"{(sys.modules[module_name].__doc__ or program).strip()}\n")
        print(FLAGS.get_help())
        sys.exit(0)
    try:  # a value absl cannot parse (--seed=abc, an unknown enum) is a mistake like any other: one line, exit 2
        FLAGS(sys.argv, known_only=False)
    except flags.Error as e:
        fail(program, str(e).replace("flag --", "--"))
    app.run(guarded(program, main))
