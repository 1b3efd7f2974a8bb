"""Thin re-export: the old module path melody_plugin.generator, kept so old imports keep working.

The code lives in melody_plugin.generate.generator.
"""

from melody_plugin.generate.generator import (  # noqa: F401
    DEFAULT_MODEL_DIR,
    EXAMPLE_PRIMER,
    Generation,
    MelodyGenerator,
    ModelLoadError,
    PrimerError,
    _continued,
)
from melody_plugin.model.checkpoint import load_run_weights as _load_run_weights  # noqa: F401


def __getattr__(name):
    """Magenta's generator names, as this module served them: imported on first use (interop imports Magenta)."""
    if name in ("MelodySequenceGenerator", "get_generator_map", "SequenceGeneratorError"):
        from melody_plugin.interop import sequence_generator

        return getattr(sequence_generator, name)
    raise AttributeError(f"module 'melody_plugin.generator' has no attribute {name!r}")
