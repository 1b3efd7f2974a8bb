"""Thin re-export: the old module path melody_plugin.protos, kept so old imports keep working.

The code lives in melody_plugin.io.protos.
"""

from melody_plugin.io.protos import _load, _loaded, generator_pb2, music_pb2  # noqa: F401
