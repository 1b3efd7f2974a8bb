"""The sampling loop compiled as one TensorFlow function (`--sampler=tf` and the SavedModel)."""

from __future__ import annotations

from typing import NamedTuple

from melody_plugin.runtime.quiet import import_keras
from melody_plugin.tokens.vocab import LOOKBACK_STEPS, METER_FEATURE_SIZE, PAD


# The compiled loop's inputs, grouped. NamedTuples rather than frozen dataclasses: tf.function flattens them
# into their tensors (tf.nest knows namedtuples, not dataclasses), so one trace serves every call.
class Start(NamedTuple):
    """Where each row's decoding begins (sampler.DecodeStart's tensors)."""

    # [(h, c), ...] per LSTM layer, each (batch, units), then with bar lookback the roll (batch, LOOKBACK_STEPS)
    # int32: the state after the primer but its last token
    states: list
    last_ids: object  # (batch,) int32: the token to feed first
    remaining: object  # (batch,) int32: steps to fill, already planned (sampler.plan's target)
    positions: object  # (batch,) int32: where the token after `last_ids` begins in its bar (meter features)
    steps_per_bar: object  # (batch,) int32: the bar length (meter features)


class Tables(NamedTuple):
    """The vocabulary's tables (sampler.plan): durations, allowed ids, fillable remainders."""

    durations: object  # (vocab,) int32
    allowed: object  # (vocab,) bool: no specials, no zero durations, within the constraints
    fillable: object  # (max_steps + 1,) bool: fillable[r] if some allowed tokens last exactly r steps


class Knobs(NamedTuple):
    """SamplingOptions as scalar tensors (beam search is not compiled)."""

    temperature: object  # float32; 0 = greedy
    top_k: object  # int32; 0 = off
    top_p: object  # float32; 1 = off
    seed: object  # int64


def keras_step_fn(model, durations=None):
    """(ids (batch,), [(h, c), ...], positions, bar_steps) -> (logits (batch, vocab), new state) through the model's
    own layers. positions and bar_steps (batch,) are used by a model with meter features (`step.meter_features`),
    clamped to its tables, and ignored otherwise. A model with bar lookback (`step.bar_lookback`) needs the
    vocabulary's `durations()`; its state ends with the roll buffer (`vocab.roll_lookback`)."""
    keras = import_keras()


    names = {layer.name for layer in model.layers}
    embedding = model.get_layer("embedding")
    meter = "bar_position_embedding" in names
    if meter:
        position_embedding = model.get_layer("bar_position_embedding")
        bar_steps_embedding = model.get_layer("bar_steps_embedding")
        combine = model.get_layer("meter_add" if "meter_add" in names else "meter_concat")
    lookback = "lookback_1_embedding" in names
    if lookback:
        if durations is None:
            raise ValueError("this model has bar lookback: pass the vocabulary's durations()")
        lookback_embeddings = [model.get_layer(f"lookback_{k}_embedding") for k in (1, 2)]
        durations_t = keras.ops.convert_to_tensor(durations, dtype="int32")
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    dense = model.get_layer("logits")

    def roll_step(roll, ids, bar_steps):
        """vocab.roll_lookback in tensors: the roll moved on by the fed ids, and the ids one and two bars back."""
        source = keras.ops.arange(LOOKBACK_STEPS)[None, :] + keras.ops.take(durations_t, ids)[:, None]
        shifted = keras.ops.take_along_axis(roll, keras.ops.minimum(source, LOOKBACK_STEPS - 1), axis=1)
        roll = keras.ops.where(source < LOOKBACK_STEPS, shifted, keras.ops.cast(ids, "int32")[:, None])
        bar = keras.ops.clip(bar_steps, 1, METER_FEATURE_SIZE - 1)
        back = [keras.ops.take_along_axis(roll, (LOOKBACK_STEPS - k * bar)[:, None], axis=1)[:, 0] for k in (1, 2)]
        return roll, back

    def step(ids, states, positions=None, bar_steps=None):
        x = embedding(ids)
        if meter:
            top = METER_FEATURE_SIZE - 1
            features = [x, position_embedding(keras.ops.minimum(positions, top)),
                        bar_steps_embedding(keras.ops.minimum(bar_steps, top))]
            if lookback:
                roll, back = roll_step(states[-1], ids, bar_steps)
                features += [table(ids_back) for table, ids_back in zip(lookback_embeddings, back)]
            x = combine(features)
        new_states = []
        for layer, (h, c) in zip(lstms, states[:len(lstms)]):
            x, (h, c) = layer.cell(x, [h, c], training=False)
            new_states.append((h, c))
        if lookback:
            new_states.append(roll)
        return dense(x), new_states

    step.units = [layer.units for layer in lstms]
    step.meter_features = meter
    step.bar_lookback = lookback
    return step


def initial_states(tf, step_fn, batch):
    """The state before the start token: zero LSTM states and, with bar lookback, a roll of PAD."""

    states = [(tf.zeros([batch, u]), tf.zeros([batch, u])) for u in step_fn.units]
    if step_fn.bar_lookback:
        states.append(tf.fill([batch, LOOKBACK_STEPS], tf.constant(PAD, tf.int32)))
    return states


def compiled_sampler(tf, step_fn):
    """A tf.function(start: Start, tables: Tables, knobs: Knobs) returning {"ids": (batch, max_tokens) int32
    padded with -1, "log_likelihoods": (batch, max_tokens)}. `start.positions` and `start.steps_per_bar` are fed
    to a model with meter features and ignored otherwise."""
    neg = tf.constant(-1e9, tf.float32)

    def choose(logits, valid, knobs, t):
        masked = tf.where(valid, logits, neg)
        vocab = tf.shape(masked)[1]
        scaled = masked / tf.maximum(knobs.temperature, 1e-6)
        k = tf.where(knobs.top_k > 0, tf.minimum(knobs.top_k, vocab), vocab)
        kth = tf.math.top_k(scaled, k).values[:, -1:]
        scaled = tf.where(scaled >= kth, scaled, neg)
        probs = tf.nn.softmax(scaled)
        sorted_probs = tf.math.top_k(probs, vocab).values
        before = tf.cumsum(sorted_probs, axis=1, exclusive=True)
        kept = tf.where(before < knobs.top_p, sorted_probs, tf.ones_like(sorted_probs) * 2.0)
        threshold = tf.reduce_min(kept, axis=1, keepdims=True)  # the smallest probability inside the nucleus
        scaled = tf.where(probs >= threshold, scaled, neg)
        sampled = tf.random.stateless_categorical(scaled, 1, seed=tf.stack([knobs.seed, tf.cast(t, tf.int64)]),
                                                  dtype=tf.int32)[:, 0]
        greedy = tf.argmax(masked, axis=1, output_type=tf.int32)
        return tf.where(knobs.temperature > 0, sampled, greedy), tf.nn.log_softmax(masked)

    @tf.function(reduce_retracing=True)
    def sample(start, tables, knobs):
        durations = tables.durations
        max_tokens = tf.reduce_max(start.remaining)
        ids_out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        ll_out = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        t = tf.constant(0)
        states, feed, rem, pos = start.states, start.last_ids, start.remaining, start.positions
        bar = tf.maximum(start.steps_per_bar, 1)
        while t < max_tokens and tf.reduce_any(rem > 0):  # autograph: one compiled while loop
            logits, new_states = step_fn(feed, states, pos, bar)
            left = rem[:, None] - durations[None, :]
            valid = tables.allowed[None, :] & (left >= 0) & tf.gather(tables.fillable, tf.maximum(left, 0))
            active = rem > 0
            valid = valid | ~active[:, None]  # finished rows draw a dummy token that is thrown away
            choice, logp = choose(logits, valid, knobs, t)
            ll = tf.gather(logp, choice, axis=1, batch_dims=1)
            ids_out = ids_out.write(t, tf.where(active, choice, -1))
            ll_out = ll_out.write(t, tf.where(active, ll, 0.0))
            rem = rem - tf.where(active, tf.gather(durations, choice), 0)
            # finished rows keep their old state (LSTM states and the lookback roll alike)
            keep_new = active[:, None]
            states = tf.nest.map_structure(lambda new, old, keep=keep_new: tf.where(keep, new, old), new_states, states)
            feed = tf.where(active, choice, feed)
            pos = tf.where(active, tf.math.floormod(pos + tf.gather(durations, choice), bar), pos)
            t += 1
        # nothing to fill (steps 0, or fewer than the shortest token): an empty stack has no shape, so build one
        batch = tf.shape(start.last_ids)[0]
        ids = tf.cond(t > 0, lambda: tf.transpose(ids_out.stack()), lambda: tf.zeros([batch, 0], tf.int32))
        lls = tf.cond(t > 0, lambda: tf.transpose(ll_out.stack()), lambda: tf.zeros([batch, 0], tf.float32))
        return {"ids": ids, "log_likelihoods": lls}

    return sample
