"""Third-party noise filters and the one TensorFlow import edge (`import_tensorflow`)."""

from __future__ import annotations

import importlib
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings


def quiet_third_party() -> None:
    # TensorFlow's C++ INFO/WARNING lines (oneDNN notices, CUDA probing); errors still print.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # note-seq imports pydub, which warns about a missing ffmpeg that we never use.
    warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv")
    # pretty_midi warns on every tempo/key event on a track other than 0; we report file problems ourselves.
    warnings.filterwarnings("ignore", message="Tempo, Key or Time signature change events found on non-zero tracks")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="note_seq")
    warnings.filterwarnings("ignore", category=UserWarning, module="librosa")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


# C++ lines TensorFlow prints on start-up before its log level is read; nothing else is dropped.
_TF_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN|cudart_stub\.cc|cpu_feature_guard\.cc"
    r"|To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation_placer\.cc|TF-TRT Warning|cuda_executor\.cc|cuda_dnn\.cc|cuda_blas\.cc|cuda_fft\.cc"
    r"|absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN supports DT_INT32 only on platforms with AVX-512")


@contextlib.contextmanager
def filtered_stderr():
    """Captures fd 2 (C++ writes there directly) and re-emits every line that is not known start-up noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except ValueError:
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _TF_NOISE.search(line):
                    print(line, file=sys.stderr)


def import_tensorflow():
    """`import tensorflow` with its start-up log lines silenced (errors and warnings of ours still show)."""
    quiet_third_party()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with filtered_stderr():
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        tf.config.list_physical_devices()  # device discovery prints its CUDA probing now, while filtered
    return tf


def import_keras():
    """`import keras` (Keras 3 on TensorFlow), TensorFlow first through `import_tensorflow` so its noise is filtered."""
    import_tensorflow()
    import keras

    return keras


def import_note_seq(module: str):
    """`note_seq.<module>` (abc_parser, musicxml_reader, sequences_lib...): the note-seq package costs a second of
    start-up (it imports bokeh and pandas), so only the readers and Magenta's face load it, when they need it."""
    quiet_third_party()
    return importlib.import_module(f"note_seq.{module}")
