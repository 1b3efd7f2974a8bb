"""melody_plugin: train small LSTMs on your melodies and continue a melody, MIDI in and MIDI out.

The flow, one module per step: midi_io (files <-> NoteSequence) -> melody (NoteSequence <-> Melody) -> vocab
(Melody <-> ids) -> dataset (ids <-> TFRecord, tf.data windows) -> model -> train -> sampler -> generator
(primer -> NoteSequences), with pipelines (Magenta-style transforms), registry (configs), render and outputs.

Names are imported on first use, so `import melody_plugin` (and every command's --help) stays fast.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "MelodyPluginError": "melody_plugin.errors",
    "InputFileError": "melody_plugin.errors",
    "read_music_file": "melody_plugin.midi_io",
    "list_music_files": "melody_plugin.midi_io",
    "note_sequence_to_midi_file": "melody_plugin.midi_io",
    "Melody": "melody_plugin.melody",
    "Note": "melody_plugin.melody",
    "REST": "melody_plugin.melody",
    "melodies_from_note_sequence": "melody_plugin.melody",
    "melody_from_note_sequence": "melody_plugin.melody",
    "melody_to_note_sequence": "melody_plugin.melody",
    "melody_from_text": "melody_plugin.melody",
    "Vocabulary": "melody_plugin.vocab",
    "make_dataset": "melody_plugin.dataset",
    "Batching": "melody_plugin.dataset",
    "ModelConfig": "melody_plugin.registry",
    "register_config": "melody_plugin.registry",
    "get_config": "melody_plugin.registry",
    "list_configs": "melody_plugin.registry",
    "with_hparams": "melody_plugin.registry",
    "build_model": "melody_plugin.model",
    "train_and_evaluate": "melody_plugin.train",
    "TrainOptions": "melody_plugin.train",
    "sample": "melody_plugin.sampler",
    "SamplingOptions": "melody_plugin.sampler",
    "Constraints": "melody_plugin.sampler",
    "MelodyGenerator": "melody_plugin.generator",
    "MelodySequenceGenerator": "melody_plugin.pipelines",
    "get_generator_map": "melody_plugin.pipelines",
    "create_dataset": "melody_plugin.corpus",
    "Reading": "melody_plugin.corpus",
    "get_pipeline": "melody_plugin.pipelines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in ("pipelines", "corpus", "registry", "generator", "sampler", "vocab", "melody", "midi_io", "dataset",
                "train"):
        return importlib.import_module(f"melody_plugin.{name}")
    raise AttributeError(f"module 'melody_plugin' has no attribute {name!r}")
