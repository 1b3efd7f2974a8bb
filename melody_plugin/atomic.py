"""Thin re-export: the old module path melody_plugin.atomic, kept so old imports keep working.

The code lives in melody_plugin.runtime.atomic.
"""

from melody_plugin.runtime.atomic import _umask, atomic_path, write_bytes, write_json, write_text  # noqa: F401
