"""Token ids -> next-token logits: `build_model(config, vocab_size) -> keras.Model`, nothing else.

Embedding (or one-hot) -> stacked LSTM layers with dropout on their inputs and the last one's outputs -> dense
logits over the vocabulary. With the config's `meter_features`, each token's bar position and bar length are
embedded too and added to its embedding. The LSTMs keep Keras' defaults (tanh, sigmoid, no recurrent dropout, not
unrolled) so they stay eligible for the fused cuDNN kernel on a GPU.
"""

from __future__ import annotations

from melody_plugin.registry import ModelConfig
from melody_plugin.vocab import METER_FEATURE_SIZE


def build_model(config: ModelConfig, vocab_size: int):
    """A functional Keras model mapping (batch, time) int ids to (batch, time, vocab_size) float32 logits.

    With `config.meter_features` it takes a dict of three (batch, time) int32 inputs, "ids", "bar_position" and
    "bar_steps" (`vocab.meter_features`), whose embeddings are added to the token's (one-hot inputs: concatenated).
    """
    import keras

    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    inputs = ids
    x = _embedding(keras, vocab_size, config.embedding_size, "embedding")(ids)
    if config.meter_features:
        position = keras.Input(shape=(None,), dtype="int32", name="bar_position")
        bar_steps = keras.Input(shape=(None,), dtype="int32", name="bar_steps")
        inputs = {"ids": ids, "bar_position": position, "bar_steps": bar_steps}
        features = [x, _embedding(keras, METER_FEATURE_SIZE, config.embedding_size, "bar_position_embedding")(position),
                    _embedding(keras, METER_FEATURE_SIZE, config.embedding_size, "bar_steps_embedding")(bar_steps)]
        x = (keras.layers.Add(name="meter_add") if config.embedding_size else
             keras.layers.Concatenate(name="meter_concat"))(features)
    for i, units in enumerate(config.rnn_layer_sizes):
        x = keras.layers.Dropout(config.dropout_rate, name=f"dropout_{i}")(x)
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
    x = keras.layers.Dropout(config.dropout_rate, name="dropout_out")(x)
    # float32 logits even under mixed precision: softmax and the loss need the range
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=config.name)


def _embedding(keras, rows: int, size: int, name: str):
    """A trained embedding of `size`, or with size 0 a one-hot of `rows` (an identity table that is not trained)."""
    if size:
        return keras.layers.Embedding(rows, size, name=name)
    return keras.layers.Embedding(rows, rows, embeddings_initializer="identity", trainable=False, name=name)
