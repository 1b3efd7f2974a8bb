"""`build_model(config, vocab_size)`: the Keras model (embeddings -> LSTMs -> logits)."""

from __future__ import annotations

from melody_plugin.runtime.quiet import import_keras
from melody_plugin.model.fast_lstm import training_lstm
from melody_plugin.model.registry import ModelConfig
import numpy as np

from melody_plugin.tokens.form import (
    BEST_KEY_TOLERANCE,
    COUNTDOWN_SIZE,
    FINAL_PITCH_SIZE,
    FINAL_STEPS,
    KEY_PROFILE_SIZE,
    KEY_TONIC_PROFILE_SIZE,
    circulant_index,
    ending_table,
    key_profiles,
    pitch_class_table,
)
from melody_plugin.tokens.vocab import METER_FEATURE_SIZE, PAD

LOOKBACK_INPUTS = ("lookback_1", "lookback_2")  # the ids sounding one and two bars back (config.bar_lookback)


COUNTDOWN_INPUT = "bars_left"  # config.countdown


FINAL_PITCH_INPUT = "final_pitch"  # config.final_pitch


KEY_INPUT = "pitch_classes"  # config.key_head: (batch, time, 12) steps each pitch class has sounded so far


def copy_inputs(config: ModelConfig) -> tuple[str, ...]:
    """The inputs of the copy sources, one per `config.copy_bars` distance ("copy_1", "copy_2"...)."""
    return tuple(f"copy_{k}" for k in config.copy_bars)


GATE_COUNTDOWN = 3  # ModelConfig.gate_countdown's default: the gate sees whether 0, 1, 2 or more bars are left


def copy_gate_features(ops, candidates, bars_left=None, cap: int = GATE_COUNTDOWN):
    """(..., K + K(K-1)/2 [+ cap + 1]) float32: whether each copy source has a token, whether each pair of sources
    agrees (both with a token) and, for a countdown model, a one-hot of min(bars left, cap) (`cap`:
    ModelConfig.gate_countdown): near the end a tune stops replaying the bars it echoed before, and a tune's second
    half may replay its first. `candidates` (..., K) int ids, PAD where no token began."""
    present = ops.not_equal(candidates, PAD)
    k = candidates.shape[-1]
    same = [ops.logical_and(ops.equal(candidates[..., i], candidates[..., j]), present[..., i])
            for i in range(k) for j in range(i + 1, k)]
    parts = [ops.cast(present, "float32")] + [ops.cast(ops.expand_dims(x, -1), "float32") for x in same]
    if bars_left is not None:  # form.countdown_bars, capped
        bars = ops.where(bars_left <= FINAL_STEPS, ops.minimum(bars_left, 1), bars_left - FINAL_STEPS + 1)
        parts.append(ops.one_hot(ops.minimum(bars, cap), cap + 1, dtype="float32"))
    return ops.concatenate(parts, axis=-1)


def final_matches(ops, table, candidates, final):
    """(..., K) float32: whether each copy source's id is on the final pitch class (a final-pitch model's copy gate
    reads it: near the end, replay a note only where it ends the tune as told). `table`: the pitch-class table layer
    (12 -> vocab, `form.pitch_class_table`); none where the final is not told or no source."""
    told = ops.one_hot(ops.minimum(ops.cast(final, "int32"), 12), 13, dtype="float32")[..., :12]
    return ops.take_along_axis(table(told), ops.cast(candidates, "int32"), axis=-1)  # ids on f: 1


def gate_countdown_cap(gate_rows: int, units: int, sources: int, final_pitch: bool = False) -> int:
    """The countdown cap (ModelConfig.gate_countdown) of a countdown model's copy gate whose kernel has `gate_rows`
    rows, read from the last LSTM's `units` and the number of copy `sources` (`copy_gate_features`' sizes, and a
    final-pitch model's `final_matches`)."""
    return gate_rows - units - sources - sources * (sources - 1) // 2 - 1 - (sources if final_pitch else 0)


def mix_copies(ops, logits, gate_logits, candidates, vocab_size: int):
    """log p(y) = log(g_0 softmax(logits)_y + sum_k g_k [y == c_k]): the LSTM's distribution mixed with the copy
    sources by the gate g = softmax(gate_logits) over (LSTM, source 1..K), sources without a token left out.

    logits (..., V), gate_logits (..., K + 1), candidates (..., K) int. Returns (..., V) normalised log-probs."""
    log_gate = _log_gate(ops, gate_logits, _kept(ops, candidates))
    gate = ops.exp(log_gate[..., 1:])
    mass = ops.sum(ops.expand_dims(gate, -1) * ops.one_hot(candidates, vocab_size, dtype="float32"), axis=-2)
    model_part = log_gate[..., :1] + ops.log_softmax(logits, axis=-1)
    return ops.logaddexp(model_part, ops.log(ops.maximum(mass, 1e-30)))


def _kept(ops, candidates):
    """(..., K + 1) bool: the gate's choices that exist, the LSTM always and each source holding a token."""
    present = ops.not_equal(candidates, PAD)
    return ops.concatenate([ops.ones_like(present[..., :1]), present], axis=-1)


def _log_gate(ops, gate_logits, kept):
    """log softmax of the gate over (LSTM, sources 1..K), the choices not `kept` left out."""
    return ops.log_softmax(ops.where(kept, gate_logits, -1e9), axis=-1)


def copy_mixture_targets(ops, logits, gate_logits, candidates, targets):
    """(nll, predictions) of the mixture `mix_copies` describes, without building its (..., V) distribution.

    nll (...) = -log p(target): the LSTM's log-softmax at the target only (sparse cross-entropy) and the copy
    sources that hold the target. predictions (...) int32 = the mixture's argmax (the lowest id among ties), which is
    the LSTM's argmax or one of the sources: every other id has only its LSTM share. Training and evaluation use
    this; the same function as `mix_copies` followed by a sparse cross-entropy, at a fraction of the work.
    """
    kept = _kept(ops, candidates)
    log_gate = _log_gate(ops, gate_logits, kept)
    gate = ops.exp(log_gate[..., 1:])
    model_nll = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    hits = ops.cast(ops.equal(candidates, ops.expand_dims(targets, -1)), "float32")
    copy_mass = ops.sum(gate * hits, axis=-1)
    nll = -ops.logaddexp(log_gate[..., 0] - model_nll, ops.log(ops.maximum(copy_mass, 1e-30)))
    # the argmax: among the LSTM's own argmax and the sources, the highest mixture probability
    best = ops.expand_dims(ops.cast(ops.argmax(logits, axis=-1), candidates.dtype), -1)
    options = ops.concatenate([best, candidates], axis=-1)  # (..., K + 1)
    log_norm = ops.stop_gradient(ops.logsumexp(logits, axis=-1, keepdims=True))
    model_part = log_gate[..., :1] + ops.stop_gradient(ops.take_along_axis(logits, options, axis=-1)) - log_norm
    same = ops.cast(ops.equal(ops.expand_dims(options, -1), ops.expand_dims(candidates, -2)), "float32")
    mass = ops.sum(same * ops.expand_dims(gate, -2), axis=-1)
    value = ops.logaddexp(model_part, ops.log(ops.maximum(mass, 1e-30)))
    value = ops.where(kept, ops.stop_gradient(value), -1e30)
    top = ops.max(value, axis=-1, keepdims=True)
    wide = ops.where(value >= top, options, ops.full_like(options, 2 ** 30))
    return nll, ops.cast(ops.min(wide, axis=-1), "int32")


def key_bonus(ops, profile, steps):
    """form.key_bonus in tensors: (..., 12) the bonus of each pitch class c as the tonic of the shares held so far,
    from a (..., KEY_PROFILE_SIZE) profile: 12 free weights, then the weights of the major and minor fits; from a
    KEY_TONIC_PROFILE_SIZE profile (..., 2, 12): the bonus of any token and the extra bonus of a token that ends the
    melody, each with the tonic of the best-fitting major and minor key."""
    steps = ops.cast(steps, "float32")
    share = steps / ops.maximum(ops.sum(steps, axis=-1, keepdims=True), 1.0)
    # rotation[j, k, c] = 1 where j = c + k (mod 12): the pitch class read at offset k from the candidate tonic c
    rotation = (np.arange(12)[:, None, None] == circulant_index().T[None, :, :]).astype(np.float32)
    pairs = ops.expand_dims(share, -1) * ops.expand_dims(profile[..., :12], -2)  # (..., j, k)
    free = ops.einsum("...jk,jkc->...c", pairs, rotation)
    centred = share - ops.mean(share, axis=-1, keepdims=True)
    raw_spread = ops.sqrt(ops.sum(centred * centred, axis=-1, keepdims=True))
    spread = ops.maximum(raw_spread, 1e-6)
    fits = [ops.matmul(centred, ops.transpose(table)) / spread for table in key_profiles()]  # (..., c) each
    bonus = free + profile[..., 12:13] * fits[0] + profile[..., 13:14] * fits[1]
    if profile.shape[-1] == KEY_PROFILE_SIZE:
        return bonus
    top = ops.max(ops.maximum(fits[0], fits[1]), axis=-1, keepdims=True) - BEST_KEY_TOLERANCE
    flat = ops.cast(raw_spread > 1e-6, "float32")
    best = [ops.cast(fit >= top, "float32") * flat for fit in fits]
    anywhere = bonus + profile[..., 14:15] * best[0] + profile[..., 15:16] * best[1]
    return ops.stack([anywhere, profile[..., 16:17] * best[0] + profile[..., 17:18] * best[1]], axis=-2)


def key_logits(ops, layers: dict, bonus, bars_left, paired: bool = True):
    """The key head's (..., vocab) bonus from `key_bonus`: each id gets its pitch class's; with key_tonic (`paired`:
    a (..., 2, 12) bonus), the ids that end the melody where `bars_left` (the countdown) says so get the ending bonus
    too (`form.ending_table`). The final-pitch head's bonus (`final_bonus`) is paired too."""
    table = layers["pitch_class_table"]
    if not paired:
        return table(bonus)
    rows = ops.where(bars_left <= FINAL_STEPS, bars_left, 0)
    ends = layers["ending_table"](ops.one_hot(rows, FINAL_STEPS + 1, dtype="float32"))
    return table(bonus[..., 0, :]) + table(bonus[..., 1, :]) * ends


def final_bonus(ops, out, final):
    """The final-pitch head's (..., 2, 12) bonus of each pitch class j (as `key_bonus` with key_tonic gives it, for
    `key_logits`): from its (..., 13) output, first the weight of j's scale degree above the final pitch class f,
    out[(j - f) mod 12], for any token; then out[12] where j is f, for a token that ends the melody. None where the
    final is not told (FINAL_NONE, FINAL_OPEN)."""
    final = ops.expand_dims(ops.cast(final, "int32"), -1)
    classes = ops.arange(12, dtype="int32")
    degrees = ops.mod(classes - final, 12)
    told = ops.cast(final < 12, "float32")
    anywhere = ops.take_along_axis(out[..., :12], degrees, axis=-1) * told
    ending = out[..., 12:13] * ops.cast(ops.equal(classes, final), "float32")
    return ops.stack([anywhere, ending], axis=-2)


def key_head_features(ops, bars_left, bar_steps):
    """form.key_head_features in tensors: (..., 5) float32 of the bars left and whether at most half a bar is."""
    bars = ops.where(bars_left <= FINAL_STEPS, ops.minimum(bars_left, 1), bars_left - FINAL_STEPS + 1)
    near = ops.logical_and(bars_left <= FINAL_STEPS, 2 * bars_left <= ops.minimum(bar_steps, FINAL_STEPS))
    return ops.concatenate([ops.one_hot(ops.minimum(bars, 3), 4, dtype="float32"),
                            ops.expand_dims(ops.cast(near, "float32"), -1)], axis=-1)


def build_model(config: ModelConfig, vocab_size: int, carry_state: bool = False, mixture_parts: bool = False,
                pitches=None, durations=None):
    """A functional Keras model mapping (batch, time) int ids to (batch, time, vocab_size) float32 logits.

    `config.countdown` adds a "bars_left" input (`form.countdown_features`), embedded like the meter features;
    `config.key_head` adds a "pitch_classes" input (batch, time, 12) (`form.pitch_class_steps`) and a key head: a
    profile learned from the LSTM's output (and, with a countdown, how near the end is: `key_head_features`)
    scores each pitch class as the tonic of the pitch classes held so far (`key_bonus`), and each pitched id's
    logit gets its pitch class's score (through a fixed table of the vocabulary's `pitches`,
    `form.pitch_class_table`; zeros when not given, for weights that are loaded after);
    `config.copy_bars` adds one "copy_K" input per distance (`form.copy_features`) and a copy gate: the output is
    then the mixture's log-probabilities (`mix_copies`), which serve as logits everywhere (their softmax is the
    mixture).

    With `config.meter_features` it takes a dict of three (batch, time) int32 inputs, "ids", "bar_position" and
    "bar_steps" (`vocab.meter_features`), whose embeddings are added to the token's (one-hot inputs: concatenated);
    `config.bar_lookback` adds "lookback_1" and "lookback_2" (`vocab.lookback_features`), embedded the same way.

    With `carry_state`, returns (model, carry_model): the same layers and weights, and a second model for training
    with the state carried between windows: `carry_model([inputs, states])` takes the LSTM states entering the
    window, [h_0, c_0, h_1, c_1, ...] each (batch, units), and returns [logits, states after the window].
    """
    keras = import_keras()

    layers = _layers(keras, config, vocab_size, pitches, durations)
    layers["parts"] = mixture_parts and bool(config.copy_bars)
    inputs = _inputs(keras, config)
    model = keras.Model(inputs, _apply(layers, inputs, None)[0], name=config.name)
    if not carry_state:
        return model
    carry_inputs = _inputs(keras, config)
    states = [keras.Input(shape=(units,), name=f"lstm_{i}_{part}")
              for i, units in enumerate(config.rnn_layer_sizes) for part in ("h", "c")]
    logits, final = _apply(layers, carry_inputs, states)
    return model, keras.Model([carry_inputs, states], [logits, final], name=f"{config.name}_carry")


def _inputs(keras, config: ModelConfig):
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    if not config.meter_features:
        return ids
    names = (("bar_position", "bar_steps") + (LOOKBACK_INPUTS if config.bar_lookback else ())
             + ((COUNTDOWN_INPUT,) if config.countdown else ()) + ((FINAL_PITCH_INPUT,) if config.final_pitch else ())
             + copy_inputs(config))
    inputs = {"ids": ids, **{name: keras.Input(shape=(None,), dtype="int32", name=name) for name in names}}
    if config.key_head:
        inputs[KEY_INPUT] = keras.Input(shape=(None, 12), dtype="int32", name=KEY_INPUT)
    return inputs


def _layers(keras, config: ModelConfig, vocab_size: int, pitches=None, durations=None) -> dict:
    size = config.embedding_size
    layers = {"embedding": _embedding(keras, vocab_size, size, "embedding")}
    if config.meter_features:
        layers["bar_position"] = _embedding(keras, METER_FEATURE_SIZE, size, "bar_position_embedding")
        layers["bar_steps"] = _embedding(keras, METER_FEATURE_SIZE, size, "bar_steps_embedding")
        if config.bar_lookback:
            for name in LOOKBACK_INPUTS:
                layers[name] = _embedding(keras, vocab_size, size, f"{name}_embedding")
        if config.countdown:
            layers[COUNTDOWN_INPUT] = _embedding(keras, COUNTDOWN_SIZE, size, f"{COUNTDOWN_INPUT}_embedding")
        if config.final_pitch:
            layers[FINAL_PITCH_INPUT] = _embedding(keras, FINAL_PITCH_SIZE, size, f"{FINAL_PITCH_INPUT}_embedding")
        layers["meter"] = keras.layers.Add(name="meter_add") if size else keras.layers.Concatenate(name="meter_concat")
    # return_state: the carry model reads the final states; the plain model leaves them unused. Keras' LSTM, with
    # fewer small ops when training on a CPU (fast_lstm)
    layers["rnn"] = [(keras.layers.Dropout(config.dropout_rate, name=f"dropout_{i}"),
                      training_lstm(units, name=f"lstm_{i}"))
                     for i, units in enumerate(config.rnn_layer_sizes)]
    layers["dropout_out"] = keras.layers.Dropout(config.dropout_rate, name="dropout_out")
    # float32 logits even under mixed precision: softmax and the loss need the range
    layers["logits"] = keras.layers.Dense(vocab_size, dtype="float32", name="logits")
    if config.key_head:  # starts at zero: the model begins as the one without it
        size = KEY_TONIC_PROFILE_SIZE if config.key_tonic else KEY_PROFILE_SIZE
        layers["key_head"] = keras.layers.Dense(size, dtype="float32", kernel_initializer="zeros",
                                                name="key_head")
    if config.final_pitch:  # the weights of the scale degrees above the final, and of ending on it; from zero too
        layers["final_head"] = keras.layers.Dense(13, dtype="float32", kernel_initializer="zeros", name="final_head")
    if config.key_head or config.final_pitch:
        table = np.zeros((vocab_size, 12), np.float32) if pitches is None else pitch_class_table(pitches)
        layers["pitch_class_table"] = keras.layers.Dense(
            vocab_size, use_bias=False, trainable=False, dtype="float32",
            kernel_initializer=keras.initializers.Constant(table.T), name="pitch_class_table")
    if config.key_tonic or config.final_pitch:  # which ids end the melody at each countdown value of the last bar
        table = np.zeros((FINAL_STEPS + 1, vocab_size), np.float32) if durations is None else ending_table(durations)
        layers["ending_table"] = keras.layers.Dense(
            vocab_size, use_bias=False, trainable=False, dtype="float32",
            kernel_initializer=keras.initializers.Constant(table), name="ending_table")
    if config.copy_bars:
        layers["copy_gate"] = keras.layers.Dense(len(config.copy_bars) + 1, dtype="float32", name="copy_gate")
        layers["copy_names"] = copy_inputs(config)
        layers["gate_countdown"] = config.gate_countdown
        layers["vocab_size"] = vocab_size
    return layers


def _apply(layers: dict, inputs, states):
    """(logits, final states) of the layers on `inputs`, from `states` ([h, c] per layer) or zeros (None)."""
    if isinstance(inputs, dict):
        features = ("bar_position", "bar_steps") + tuple(
            name for name in LOOKBACK_INPUTS + (COUNTDOWN_INPUT, FINAL_PITCH_INPUT) if name in inputs)
        x = layers["meter"]([layers["embedding"](inputs["ids"])] + [layers[name](inputs[name]) for name in features])
    else:
        x = layers["embedding"](inputs)
    final = []
    for i, (dropout, lstm) in enumerate(layers["rnn"]):
        initial = None if states is None else states[2 * i:2 * i + 2]
        x, h, c = lstm(dropout(x), initial_state=initial)
        final += [h, c]
    x = layers["dropout_out"](x)
    logits = layers["logits"](x)
    ops = import_keras().ops
    if "key_head" in layers or "final_head" in layers:  # a countdown model's heads also read how near the end is
        head_in = ops.cast(x, "float32")
        if COUNTDOWN_INPUT in inputs:
            head_in = ops.concatenate([head_in, key_head_features(ops, inputs[COUNTDOWN_INPUT], inputs["bar_steps"])],
                                      axis=-1)
    if "key_head" in layers:
        profile = layers["key_head"](head_in)
        logits = logits + key_logits(ops, layers, key_bonus(ops, profile, inputs[KEY_INPUT]),
                                     inputs.get(COUNTDOWN_INPUT), profile.shape[-1] == KEY_TONIC_PROFILE_SIZE)
    if "final_head" in layers:  # a final-pitch model has a countdown
        bonus = final_bonus(ops, layers["final_head"](head_in), inputs[FINAL_PITCH_INPUT])
        logits = logits + key_logits(ops, layers, bonus, inputs[COUNTDOWN_INPUT])
    if "copy_gate" not in layers:
        return logits, final
    candidates = ops.stack([inputs[name] for name in layers["copy_names"]], axis=-1)
    gate_features = copy_gate_features(ops, candidates, inputs.get(COUNTDOWN_INPUT), layers["gate_countdown"])
    if FINAL_PITCH_INPUT in inputs:
        matches = final_matches(ops, layers["pitch_class_table"], candidates, inputs[FINAL_PITCH_INPUT])
        gate_features = ops.concatenate([gate_features, matches], axis=-1)
    gate_logits = layers["copy_gate"](ops.concatenate([ops.cast(x, "float32"), gate_features], axis=-1))
    if layers["parts"]:
        return [logits, gate_logits], final
    return mix_copies(ops, logits, gate_logits, candidates, layers["vocab_size"]), final


def _embedding(keras, rows: int, size: int, name: str):
    """A trained embedding of `size`, or with size 0 a one-hot of `rows` (an identity table that is not trained)."""
    if size:
        return keras.layers.Embedding(rows, size, name=name)
    return keras.layers.Embedding(rows, rows, embeddings_initializer="identity", trainable=False, name=name)
