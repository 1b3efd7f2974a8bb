"""Token ids -> next-token logits: `build_model(config, vocab_size) -> keras.Model`, nothing else.

Embedding (or one-hot) -> stacked LSTM layers with dropout on their inputs and the last one's outputs -> dense
logits over the vocabulary. The LSTMs keep Keras' defaults (tanh, sigmoid, no recurrent dropout, not unrolled)
so they stay eligible for the fused cuDNN kernel on a GPU.
"""

from __future__ import annotations

from melody_plugin.registry import ModelConfig


def build_model(config: ModelConfig, vocab_size: int):
    """A functional Keras model mapping (batch, time) int ids to (batch, time, vocab_size) float32 logits."""
    import keras

    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    if config.embedding_size:
        x = keras.layers.Embedding(vocab_size, config.embedding_size, name="embedding")(ids)
    else:  # one-hot inputs, as in the tutorial: an identity embedding that is not trained
        x = keras.layers.Embedding(vocab_size, vocab_size, embeddings_initializer="identity", trainable=False,
                                   name="embedding")(ids)
    for i, units in enumerate(config.rnn_layer_sizes):
        x = keras.layers.Dropout(config.dropout_rate, name=f"dropout_{i}")(x)
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(x)
    x = keras.layers.Dropout(config.dropout_rate, name="dropout_out")(x)
    # float32 logits even under mixed precision: softmax and the loss need the range
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(ids, logits, name=config.name)
