"""Keep third-party noise out of the user's terminal without hiding real errors.

Call `quiet_third_party()` before importing note-seq or TensorFlow.
"""

from __future__ import annotations

import logging
import os
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
