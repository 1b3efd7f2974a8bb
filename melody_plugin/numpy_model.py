"""Thin re-export: the old module path melody_plugin.numpy_model, kept so old imports keep working.

The code lives in melody_plugin.model.numpy_model.
"""

from melody_plugin.model.numpy_model import (  # noqa: F401
    EMBEDDINGS,
    LN2,
    NumpyLSTM,
    _sigmoid,
    weights_to_keras_model,
    load_weights,
    log_softmax,
    save_weights,
    bytes_to_weights,
    keras_to_weights,
    weights_to_bytes,
)
