"""Generator bundles (.mag): a model's config, vocabulary and weights in note-seq's `GeneratorBundle`."""

from __future__ import annotations

import json

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate.generator import MelodyGenerator, ModelLoadError
from melody_plugin.model.registry import ModelConfig
from melody_plugin.runtime.quiet import quiet_third_party
from melody_plugin.tokens.vocab import Vocabulary


def _bundle_proto(bundle):
    """A GeneratorBundle from a proto or a .mag path."""
    quiet_third_party()
    from note_seq.protobuf import generator_pb2

    if isinstance(bundle, generator_pb2.GeneratorBundle):
        return bundle
    from melody_plugin.runtime.guarded import read_guarded_bytes

    try:
        return generator_pb2.GeneratorBundle.FromString(read_guarded_bytes(bundle, max_bytes=1 << 30))
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{bundle}: not a generator bundle ({type(e).__name__})") from None


def _bundle_meta(bundle) -> dict:
    try:
        meta = json.loads(bundle.metagraph_file.decode())
        if meta.get("format") != "melody_plugin/1":
            raise ValueError("not a melody_plugin bundle")
        return meta
    except Exception as e:
        raise ModelLoadError(f"bundle {bundle.generator_details.id!r}: not a melody_plugin generator bundle "
                             f"({type(e).__name__}: {e})") from None


def _bundle_to_generator(bundle) -> MelodyGenerator:
    from melody_plugin.model import numpy_model

    meta = _bundle_meta(bundle)
    source = f"bundle {bundle.generator_details.id}"
    try:
        weights, wmeta = numpy_model.bytes_to_weights(bundle.checkpoint_file[0])
        config, vocab = ModelConfig.from_json(meta["config"]), Vocabulary.from_json(meta["vocab"], source)
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{source}: unreadable weights or vocabulary ({type(e).__name__}: {e})") from None
    return MelodyGenerator(config, vocab, weights, source, wmeta.get("step"))
