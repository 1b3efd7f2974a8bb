"""Thin re-export: the old module path melody_plugin.rundir, kept so old imports keep working.

The code lives in melody_plugin.model.rundir.
"""

from melody_plugin.model.rundir import RunDir  # noqa: F401
