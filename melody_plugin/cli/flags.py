"""Flags shared by several commands, and the wrapper that turns our errors into one line and an exit code.

Nothing heavy is imported here: `--help` of every command stays fast.
"""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
SEED_MAX = 2**32 - 1  # numpy's legacy seeding (Keras's set_random_seed uses it) refuses larger seeds


def _at_least(low):
    return (lambda v: v >= low), f">= {low}"


# What each numeric flag may be, by name, for every command that defines it. Checked before a command does any
# work: a bad value is one line and exit 2, not a traceback from deep inside numpy or TensorFlow. None (a flag
# left unset) is always allowed; floats must also be finite.
LIMITS = {
    # melody_generate
    "num_outputs": _at_least(1),
    "num_bars": _at_least(1),
    "temperature": ((lambda v: v >= 0), ">= 0 (0 = greedy)"),
    "top_k": ((lambda v: v >= 0), ">= 0 (0 = off)"),
    "top_p": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "beam_size": _at_least(1),
    "branch_factor": _at_least(1),
    "steps_per_iteration": _at_least(1),
    "seed": ((lambda v: 0 <= v <= SEED_MAX), f"in [0, {SEED_MAX}]"),
    "qpm": ((lambda v: v > 0), "> 0"),
    "track": _at_least(0),
    "program": ((lambda v: 0 <= v <= 127), "in [0, 127]"),
    # melody_train (and melody_create_dataset's eval_ratio, workers)
    "num_training_steps": _at_least(1),
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


def define_run_dir(required: bool = False):
    define("string", "run_dir", None, "Run directory: config, vocabulary, checkpoints and logs live here."
                        + ("" if required else " Omitted: the small folk model shipped with the package."))
    if required:
        flags.mark_flag_as_required("run_dir")


def define_extraction():
    define("enum", "polyphony_policy", None, ["highest", "lowest", "reject"],
                      "How overlapping notes become one melody line: highest (skyline), lowest, or reject. "
                      "Default: the config's (highest).")
    define("integer", "track", None, "Instrument index of the melody track (default: the one with most notes).")
    define("integer", "program", None, "MIDI program of the melody track, instead of --track.")


def define_progress():
    define("boolean", "progress", None, "Progress bars; default: on when the terminal is interactive.")


def fail(program: str, message: str, code: int = EXIT_USER_ERROR):
    """One line on stderr, then exit (never a traceback for a user's mistake)."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(code)


def guarded(program: str, main):
    """Wraps an absl `main`: our errors become one line and exit status 2, Ctrl-C exits 130."""

    def wrapped(argv):
        if len(argv) > 1:
            fail(program, f"unexpected arguments {argv[1:]}; flags are written --name=value")
        from absl import logging as absl_logging

        from melody_plugin.errors import MelodyPluginError

        absl_logging.set_verbosity(absl_logging.WARNING)  # TensorFlow's INFO lines go through absl too
        problem = check_limits({name: FLAGS[name].value for name in LIMITS if name in FLAGS})
        if problem:
            fail(program, problem)

        try:
            return main(argv)
        except MelodyPluginError as e:
            interrupted = type(e).__name__ == "TrainingInterrupted"
            fail(program, str(e), EXIT_INTERRUPTED if interrupted else EXIT_USER_ERROR)
        except KeyboardInterrupt:
            fail(program, "interrupted", EXIT_INTERRUPTED)
        except OSError as e:  # disk full, permission denied while writing outputs
            fail(program, f"{getattr(e, 'filename', '') or ''}: {e.strerror or e}".lstrip(": "), 1)

    return wrapped


def run(program: str, main, module_name: str) -> None:
    """app.run for a console script, with its flags listed by --help (absl only lists the main module's)."""
    from absl import app

    for name in (module_name, __name__):
        for flag in FLAGS.get_flags_for_module(name):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        # absl exits 1 after --help; a help request is not an error
        print(f"{(sys.modules[module_name].__doc__ or program).strip()}\n")
        print(f"usage: {program} [--flag=value ...]   (--helpfull lists every flag)\n")
        print(FLAGS.main_module_help())
        sys.exit(0)
    app.run(guarded(program, main))
