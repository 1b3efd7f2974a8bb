"""melody_plugin: train small LSTMs on your melodies and continue a melody, MIDI in and MIDI out.

The package's folders are the steps of the flow: io (files <-> NoteSequence) -> music (NoteSequence <-> Melody)
-> tokens (Melody <-> ids <-> TFRecords and batches) -> model (configs, Keras and numpy models) -> train /
generate / evaluate -> interop (Magenta's pipelines and generator contract) -> cli; runtime holds what every step
leans on. Names are imported on first use, so `import melody_plugin` (and every command's --help) stays fast.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "MelodyPluginError": "melody_plugin.errors",
    "InputFileError": "melody_plugin.errors",
    "read_music_file": "melody_plugin.io.files",
    "list_music_files": "melody_plugin.io.inputs",
    "note_sequence_to_midi_file": "melody_plugin.io.midi",
    "Melody": "melody_plugin.music.melody",
    "Note": "melody_plugin.music.melody",
    "REST": "melody_plugin.music.melody",
    "text_to_melody": "melody_plugin.music.melody",
    "note_sequence_to_melodies": "melody_plugin.music.extract",
    "note_sequence_to_melody": "melody_plugin.music.extract",
    "melody_to_note_sequence": "melody_plugin.music.extract",
    "Vocabulary": "melody_plugin.tokens.vocab",
    "make_dataset": "melody_plugin.tokens.batches",
    "Batching": "melody_plugin.tokens.batches",
    "create_dataset": "melody_plugin.tokens.corpus",
    "Reading": "melody_plugin.tokens.corpus",
    "ModelConfig": "melody_plugin.model.registry",
    "register_config": "melody_plugin.model.registry",
    "get_config": "melody_plugin.model.registry",
    "list_configs": "melody_plugin.model.registry",
    "with_hparams": "melody_plugin.model.registry",
    "build_model": "melody_plugin.model.keras_model",
    "train_and_evaluate": "melody_plugin.train.loop",
    "TrainOptions": "melody_plugin.train.options",
    "sample": "melody_plugin.generate.sampler",
    "SamplingOptions": "melody_plugin.generate.sampler",
    "Constraints": "melody_plugin.generate.sampler",
    "MelodyGenerator": "melody_plugin.generate.generator",
    "MelodySequenceGenerator": "melody_plugin.interop.sequence_generator",
    "get_generator_map": "melody_plugin.interop.sequence_generator",
    "get_pipeline": "melody_plugin.interop.graph",
    # the names before converters were named a_to_b, kept for one release
    "melodies_from_note_sequence": "melody_plugin.music.extract",
    "melody_from_note_sequence": "melody_plugin.music.extract",
    "melody_from_text": "melody_plugin.music.melody",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in ("pipelines", "corpus", "generator", "train", "model", "evaluate", "io", "music", "tokens", "generate",
                "interop", "runtime"):
        return importlib.import_module(f"melody_plugin.{name}")
    raise AttributeError(f"module 'melody_plugin' has no attribute {name!r}")
