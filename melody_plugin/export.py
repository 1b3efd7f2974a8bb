"""Thin re-export: the old module path melody_plugin.export, kept so old imports keep working.

The code lives in melody_plugin.generate.export.
"""

from melody_plugin.generate.export import (  # noqa: F401
    MAX_SERVING_STEPS,
    STEPS_MESSAGE,
    ExportError,
    _serving_module,
    export_saved_model,
)
