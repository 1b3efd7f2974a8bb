"""Magenta detection, and look-alike classes (Pipeline, Counter) where it is not installed."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import warnings

from melody_plugin.io import protos
from melody_plugin.errors import MelodyPluginError
from melody_plugin.runtime.quiet import import_note_seq, import_tensorflow, quiet_third_party

MAGENTA_IMPORT_ERROR = ""


_magenta_pipeline = _magenta_statistics = _magenta_sequence_generator = None


def _magenta_installed() -> bool:
    try:
        return importlib.util.find_spec("magenta") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["magenta"] = None, to hide it
        return False


if _magenta_installed():
    try:  # Magenta's own base classes, so the units pass its isinstance and type checks
        import_tensorflow()  # first, so its start-up lines are filtered
        with warnings.catch_warnings():  # Magenta's imports pull in TensorFlow Probability's distutils warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from magenta.models.shared import sequence_generator as _magenta_sequence_generator
            from magenta.pipelines import pipeline as _magenta_pipeline
            from magenta.pipelines import statistics as _magenta_statistics
    except Exception as e:  # a half-installed Magenta must not break the plugin
        MAGENTA_IMPORT_ERROR = f"{type(e).__name__}: {e}"
        _magenta_pipeline = _magenta_statistics = _magenta_sequence_generator = None


MAGENTA = _magenta_pipeline is not None


class _Counter:
    """Magenta's `statistics.Counter`: a named count that merges with others of its name."""

    def __init__(self, name: str, start_value: int = 0):
        self.name, self.count = name, start_value

    def increment(self, inc: int = 1) -> None:
        self.count += inc

    def merge_from(self, other) -> None:
        if not isinstance(other, _Counter) or other.name != self.name:
            raise MelodyPluginError(f"cannot merge {other!r} into counter {self.name!r}")
        self.count += other.count

    def copy(self):
        return copy.copy(self)

    def __str__(self):
        return f"{self.name}: {self.count}"


def _merge_statistics(stats_list) -> list:
    """Magenta's `statistics.merge_statistics`: one statistic per name (the first of each is merged into)."""
    by_name = {}
    for stat in stats_list:
        if stat.name in by_name:
            by_name[stat.name].merge_from(stat)
        else:
            by_name[stat.name] = stat
    return list(by_name.values())


class _PipelineKey:
    """`pipeline[key]`: one output of a pipeline whose output type is a dict."""

    def __init__(self, unit, key):
        if not isinstance(unit.output_type, dict) or key not in unit.output_type:
            raise KeyError(f"{unit.name} has no output {key!r} (output type {unit.output_type})")
        self.unit, self.key, self.output_type = unit, key, unit.output_type[key]


class _Pipeline:
    """Magenta's `pipeline.Pipeline` interface: typed `transform`, and `get_stats()` of the last call."""

    def __init__(self, input_type, output_type, name=None):
        for label, sig in (("input_type", input_type), ("output_type", output_type)):
            classes = sig.values() if isinstance(sig, dict) else [sig]
            if not all(inspect.isclass(c) for c in classes):
                raise MelodyPluginError(f"{label} {sig} must be a class or a dict of classes")
        self._name = name or type(self).__name__
        self._input_type, self._output_type = input_type, output_type
        self._stats = []

    def __getitem__(self, key):
        return _PipelineKey(self, key)

    input_type = property(lambda self: self._input_type)
    output_type = property(lambda self: self._output_type)
    name = property(lambda self: self._name)

    @property
    def output_type_as_dict(self) -> dict:
        return self._output_type if isinstance(self._output_type, dict) else {"dataset": self._output_type}

    def transform(self, input_object):
        raise NotImplementedError

    def _set_stats(self, stats) -> None:
        copies = []
        for stat in stats:
            stat = stat.copy()
            stat.name = f"{self._name}_{stat.name}"
            copies.append(stat)
        self._stats = copies

    def get_stats(self) -> list:
        return list(self._stats)


if MAGENTA:
    Pipeline = _magenta_pipeline.Pipeline
    Counter = _magenta_statistics.Counter
    merge_statistics = _magenta_statistics.merge_statistics
else:
    Pipeline, Counter, merge_statistics = _Pipeline, _Counter, _merge_statistics


def statistics_dict(stats) -> dict:
    """Statistics as plain values: a counter's count; a histogram's non-empty buckets."""
    out = {}
    for stat in sorted(stats, key=lambda s: s.name):
        if hasattr(stat, "count"):
            out[stat.name] = stat.count
        elif hasattr(stat, "counters"):
            out[stat.name] = {str(k): v for k, v in stat.counters.items() if v}
    return out


def _note_sequence_type():
    quiet_third_party()
    music_pb2 = protos.music_pb2()

    return music_pb2.NoteSequence


def _note_seq_melody_type():
    quiet_third_party()
    melodies_lib = import_note_seq("melodies_lib")

    return melodies_lib.Melody


_GeneratorBase = _magenta_sequence_generator.BaseSequenceGenerator if MAGENTA else object


_ErrorBases = ((MelodyPluginError, _magenta_sequence_generator.SequenceGeneratorError) if MAGENTA
               else (MelodyPluginError,))
