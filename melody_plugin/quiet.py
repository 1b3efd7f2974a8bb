"""Thin re-export: the old module path melody_plugin.quiet, kept so old imports keep working.

The code lives in melody_plugin.runtime.quiet.
"""

from melody_plugin.runtime.quiet import _TF_NOISE, filtered_stderr, import_tensorflow, quiet_third_party  # noqa: F401
