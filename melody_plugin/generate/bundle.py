"""Generator bundles (.mag): a model's config, vocabulary and weights in note-seq's `GeneratorBundle`, both ways.

The only reader and writer of bundles: `MelodyGenerator.save_bundle`/`from_bundle` and Magenta's generator contract
(`interop/sequence_generator.py`) both come here. Weights travel as numpy bytes, so a bundle loads without TensorFlow.
"""

from __future__ import annotations

import json

from melody_plugin.errors import MelodyPluginError, ModelLoadError  # noqa: F401 (ModelLoadError: its old home)
from melody_plugin.io import protos
from melody_plugin.model.numpy_model import bytes_to_weights, weights_to_bytes
from melody_plugin.model.registry import ModelConfig
from melody_plugin.runtime.guarded import read_guarded_bytes
from melody_plugin.tokens.vocab import Vocabulary

FORMAT = "melody_plugin/1"  # the metagraph's "format": what tells our bundles from Magenta's own
MAX_BUNDLE_BYTES = 1 << 30


def model_to_bundle_bytes(config: ModelConfig, vocab: Vocabulary, weights: dict, step=None,
                          description: str = "") -> bytes:
    """A model as a note-seq GeneratorBundle: id = config name, config+vocab JSON, numpy weights."""
    bundle = protos.generator_pb2().GeneratorBundle()
    bundle.generator_details.id = config.name
    bundle.generator_details.description = config.description or config.name
    # no path in the bundle: it travels to other machines, and a path says where the model was trained
    bundle.bundle_details.description = description or f"melody_plugin {config.name} (step {step})"
    bundle.checkpoint_file.append(weights_to_bytes(weights, {"step": step}))
    bundle.metagraph_file = json.dumps({"format": FORMAT, "config": config.to_json(),
                                        "vocab": vocab.to_json()}).encode()
    return bundle.SerializeToString()


def _unpack(bundle, source: str) -> tuple[ModelConfig, Vocabulary, dict, object]:
    """(config, vocab, weights, step) of a parsed bundle; ValueError, KeyError... when it is not one of ours."""
    meta = json.loads(bundle.metagraph_file.decode())
    if meta.get("format") != FORMAT:
        raise ValueError("not a melody_plugin bundle")
    weights, wmeta = bytes_to_weights(bundle.checkpoint_file[0])
    config, vocab = ModelConfig.from_json(meta["config"]), Vocabulary.from_json(meta["vocab"], source)
    return config, vocab, weights, wmeta.get("step")


def read_bundle_file(path) -> tuple[ModelConfig, Vocabulary, dict, object]:
    """(config, vocab, weights, step) of a .mag file. Raises ModelLoadError naming the file and the reason."""
    data = read_guarded_bytes(path, max_bytes=MAX_BUNDLE_BYTES)
    try:
        return _unpack(protos.generator_pb2().GeneratorBundle.FromString(data), str(path))
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path}: not a melody_plugin generator bundle ({type(e).__name__}: {e})") from None


def bundle_proto(bundle):
    """A GeneratorBundle from a proto (as Magenta passes it) or a .mag path."""
    generator_pb2 = protos.generator_pb2()
    if isinstance(bundle, generator_pb2.GeneratorBundle):
        return bundle
    try:
        return generator_pb2.GeneratorBundle.FromString(read_guarded_bytes(bundle, max_bytes=MAX_BUNDLE_BYTES))
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{bundle}: not a generator bundle ({type(e).__name__})") from None


def bundle_meta(bundle) -> dict:
    """The config and vocabulary JSON of a bundle proto; ModelLoadError for another system's bundle."""
    try:
        meta = json.loads(bundle.metagraph_file.decode())
        if meta.get("format") != FORMAT:
            raise ValueError("not a melody_plugin bundle")
        return meta
    except Exception as e:
        raise ModelLoadError(f"bundle {bundle.generator_details.id!r}: not a melody_plugin generator bundle "
                             f"({type(e).__name__}: {e})") from None


def bundle_to_model(bundle) -> tuple[ModelConfig, Vocabulary, dict, object, str]:
    """(config, vocab, weights, step, source) of a bundle proto."""
    bundle_meta(bundle)  # another system's bundle is refused with its own message first
    source = f"bundle {bundle.generator_details.id}"
    try:
        return (*_unpack(bundle, source), source)
    except MelodyPluginError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{source}: unreadable weights or vocabulary ({type(e).__name__}: {e})") from None
