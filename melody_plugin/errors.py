"""The base error of melody_plugin. Each module defines its own subclasses next to the code that raises them.

Every message names the file (when there is one) and the reason, so a CLI can print it as one line.
"""

from __future__ import annotations


class MelodyPluginError(Exception):
    """Base class of every error this package raises on purpose (bad input, bad config, bad run dir).

    `exit_code` is what a command exits with when the error reaches it: 2 for bad input (the default).
    """

    exit_code = 2


class Interrupted(MelodyPluginError):
    """Ctrl-C or SIGTERM ended the work; what was finished is saved. Commands exit 130."""

    exit_code = 130


class InputFileError(MelodyPluginError):
    """A music file could not be read: missing, unreadable, hostile, or not music."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(MelodyPluginError):
    """An unknown config name, an unknown hparam or a bad value."""


class RunDirError(MelodyPluginError):
    """A run directory that is missing, incompatible, or in use by another training."""


class ModelLoadError(MelodyPluginError):
    """A run dir or bundle without usable weights."""
