"""Flags shared by several commands, and the wrapper that turns our errors into one line and an exit code.

Nothing heavy is imported here: `--help` of every command stays fast.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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
