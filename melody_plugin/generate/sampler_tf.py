"""The sampling loop compiled as one TensorFlow function (`--sampler=tf` and the SavedModel)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from melody_plugin.generate.sampler import DecodeStart, SampleResult, SamplingError, SamplingOptions, TokenTable, plan
from melody_plugin.model.keras_model import (
    copy_gate_features,
    final_bonus,
    final_matches,
    gate_countdown_cap,
    key_bonus,
    key_head_features,
    key_logits,
    mix_copies,
)
from melody_plugin.runtime.quiet import import_keras, import_tensorflow
from melody_plugin.tokens.form import (
    COPY_STEPS,
    FINAL_OPEN,
    FINAL_STEPS,
    KEY_TONIC_PROFILE_SIZE,
    MAX_COUNTDOWN,
    ONSET_RING_WIDTH,
    OPEN_COUNTDOWN,
    ring_to_roll,
)
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
    # (batch,) bool: a countdown model is fed the open countdown (True) or the bars left to the end (False)
    open_ending: object


class Tables(NamedTuple):
    """The vocabulary's tables (sampler.plan): durations, allowed ids, fillable remainders."""

    durations: object  # (vocab,) int32
    allowed: object  # (vocab,) bool: no specials, no zero durations, within the constraints
    fillable: object  # (max_steps + 1,) bool: fillable[r] if some allowed tokens last exactly r steps
    end_id: object  # int32: the end token, whose log-likelihood after the last token is returned; -1: none


class Knobs(NamedTuple):
    """SamplingOptions as scalar tensors (beam search is not compiled)."""

    temperature: object  # float32; 0 = greedy
    top_k: object  # int32; 0 = off
    top_p: object  # float32; 1 = off
    seed: object  # int64


def keras_step_fn(model, durations=None, copy_bars=()):
    """(ids (batch,), [(h, c), ...], positions, bar_steps, bars_left) -> (logits (batch, vocab), new state) through
    the model's own layers. positions and bar_steps (batch,) are used by a model with meter features
    (`step.meter_features`), clamped to its tables, and ignored otherwise; bars_left (batch,) by a model with a
    countdown (`step.countdown`). A model with bar lookback (`step.bar_lookback`) or copy sources (`copy_bars`, the
    config's) or a key head needs the vocabulary's `durations()`; its state ends with the roll buffer
    (`vocab.roll_lookback`), then the onset roll (`form.ring_to_roll`), then the steps each pitch class has sounded
    (batch, 12) float32 (`form.pitch_class_steps`), then with a final-pitch input the class the melody ends on
    (batch, 1) int32 (`form.final_pitch_features`)."""
    keras = import_keras()
    ops = keras.ops

    names = {layer.name for layer in model.layers}
    embedding = model.get_layer("embedding")
    meter = "bar_position_embedding" in names
    if meter:
        position_embedding = model.get_layer("bar_position_embedding")
        bar_steps_embedding = model.get_layer("bar_steps_embedding")
        combine = model.get_layer("meter_add" if "meter_add" in names else "meter_concat")
    lookback = "lookback_1_embedding" in names
    countdown = "bars_left_embedding" in names
    final_pitch = model.get_layer("final_pitch_embedding") if "final_pitch_embedding" in names else None
    copy_gate = model.get_layer("copy_gate") if "copy_gate" in names else None
    key_head = model.get_layer("key_head") if "key_head" in names else None
    final_head = model.get_layer("final_head") if "final_head" in names else None
    if key_head is not None or final_head is not None:
        pitch_class_table = model.get_layer("pitch_class_table")
        key_tables = {name: model.get_layer(name) for name in ("pitch_class_table", "ending_table") if name in names}
    if lookback or copy_gate is not None or key_head is not None:
        if durations is None:
            raise ValueError("this model reads the lengths of the tokens fed: pass the vocabulary's durations()")
        durations_t = keras.ops.convert_to_tensor(durations, dtype="int32")
    if lookback:
        lookback_embeddings = [model.get_layer(f"lookback_{k}_embedding") for k in (1, 2)]
    if countdown:
        countdown_embedding = model.get_layer("bars_left_embedding")
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    dense = model.get_layer("logits")
    if copy_gate is not None:
        gate_cap = gate_countdown_cap(copy_gate.kernel.shape[0], dense.kernel.shape[0], len(copy_bars),
                                      final_pitch is not None)

    def roll_step(roll, ids, bar_steps):
        """vocab.roll_lookback in tensors: the roll moved on by the fed ids, and the ids one and two bars back."""
        source = keras.ops.arange(LOOKBACK_STEPS)[None, :] + keras.ops.take(durations_t, ids)[:, None]
        shifted = keras.ops.take_along_axis(roll, keras.ops.minimum(source, LOOKBACK_STEPS - 1), axis=1)
        roll = keras.ops.where(source < LOOKBACK_STEPS, shifted, keras.ops.cast(ids, "int32")[:, None])
        bar = keras.ops.clip(bar_steps, 1, METER_FEATURE_SIZE - 1)
        back = [keras.ops.take_along_axis(roll, (LOOKBACK_STEPS - k * bar)[:, None], axis=1)[:, 0] for k in (1, 2)]
        return roll, back

    def onset_step(roll, ids, bar_steps):
        """The onset roll (`form.ring_to_roll` of the numpy ring) moved on by the fed ids, and the copy sources
        (`form.ring_candidates`)."""
        fed = keras.ops.take(durations_t, ids)[:, None]
        source = keras.ops.arange(COPY_STEPS)[None, :] + fed
        shifted = keras.ops.take_along_axis(roll, keras.ops.minimum(source, COPY_STEPS - 1), axis=1)
        fresh = keras.ops.where((source == COPY_STEPS) & (fed > 0), keras.ops.cast(ids, "int32")[:, None], PAD)
        roll = keras.ops.where(source < COPY_STEPS, shifted, fresh)
        bar = keras.ops.clip(bar_steps, 1, METER_FEATURE_SIZE - 1)
        back = [keras.ops.take_along_axis(roll, (COPY_STEPS - k * bar)[:, None], axis=1)[:, 0] for k in copy_bars]
        return roll, keras.ops.stack(back, axis=1)

    def step(ids, states, positions=None, bar_steps=None, bars_left=None):
        x = embedding(ids)
        extra = []
        if meter:
            top = METER_FEATURE_SIZE - 1
            features = [x, position_embedding(keras.ops.minimum(positions, top)),
                        bar_steps_embedding(keras.ops.minimum(bar_steps, top))]
            if lookback:
                roll, back = roll_step(states[len(lstms)], ids, bar_steps)
                features += [table(ids_back) for table, ids_back in zip(lookback_embeddings, back)]
                extra.append(roll)
            if countdown:
                features.append(countdown_embedding(bars_left))
            if final_pitch is not None:  # the last state: the class the melody ends on (batch, 1)
                features.append(final_pitch(states[-1][:, 0]))
            x = combine(features)
        new_states = []
        for layer, (h, c) in zip(lstms, states[:len(lstms)]):
            x, (h, c) = layer.cell(x, [h, c], training=False)
            new_states.append((h, c))
        logits = dense(x)
        rolls = iter(states[len(lstms) + lookback:])
        if copy_gate is not None:
            onsets, candidates = onset_step(next(rolls), ids, bar_steps)
            extra.append(onsets)
        if key_head is not None or final_head is not None:  # a countdown model's heads also read how near the end is
            top = METER_FEATURE_SIZE - 1
            head_in = (ops.concatenate([x, key_head_features(ops, bars_left, ops.minimum(bar_steps, top))], axis=-1)
                       if countdown else x)
        if key_head is not None:  # the table's kernel (12, vocab): each id's pitch class one-hot, fed by its length
            fed = ops.cast(ops.take(durations_t, ids), "float32")[:, None]
            held = next(rolls) + ops.transpose(ops.take(pitch_class_table.kernel, ids, axis=1)) * fed
            extra.append(held)
            logits = logits + key_logits(ops, key_tables, key_bonus(ops, key_head(head_in), held), bars_left,
                                         key_head.units == KEY_TONIC_PROFILE_SIZE)
        if final_head is not None:  # keras_model._apply's final-pitch head
            logits = logits + key_logits(ops, key_tables, final_bonus(ops, final_head(head_in), states[-1][:, 0]),
                                         bars_left)
        if copy_gate is not None:
            gate_features = copy_gate_features(ops, candidates, bars_left if countdown else None, gate_cap)
            if final_pitch is not None:
                matches = final_matches(ops, pitch_class_table, candidates, states[-1][:, 0])
                gate_features = ops.concatenate([gate_features, matches], axis=-1)
            gate_logits = copy_gate(ops.concatenate([x, gate_features], axis=-1))
            logits = mix_copies(ops, logits, gate_logits, candidates, logits.shape[-1])
        if final_pitch is not None:
            extra.append(states[-1])
        return logits, new_states + extra

    if copy_gate is not None and copy_gate.units != len(copy_bars) + 1:
        raise ValueError(f"this model copies from {copy_gate.units - 1} earlier bars: pass the config's copy_bars")
    step.units = [layer.units for layer in lstms]
    step.meter_features = meter
    step.bar_lookback = lookback
    step.countdown = countdown
    step.copy_bars = tuple(copy_bars) if copy_gate is not None else ()
    step.key_head = key_head is not None
    step.final_pitch = final_pitch is not None
    return step


def initial_states(tf, step_fn, batch):
    """The state before the start token: zero LSTM states and, with bar lookback, a roll of PAD."""

    states = [(tf.zeros([batch, u]), tf.zeros([batch, u])) for u in step_fn.units]
    if step_fn.bar_lookback:
        states.append(tf.fill([batch, LOOKBACK_STEPS], tf.constant(PAD, tf.int32)))
    if step_fn.copy_bars:
        states.append(tf.fill([batch, COPY_STEPS], tf.constant(PAD, tf.int32)))
    if step_fn.key_head:
        states.append(tf.zeros([batch, 12]))
    if step_fn.final_pitch:  # not told how the melody ends
        states.append(tf.fill([batch, 1], tf.constant(FINAL_OPEN, tf.int32)))
    return states


def countdown_input(tf, remaining, bar, open_ending):
    """form.bars_left in tensors (steps left in the last bar, bars left before), or the open countdown where
    `open_ending`."""
    bar = tf.clip_by_value(bar, 1, METER_FEATURE_SIZE - 1)
    remaining = tf.maximum(remaining, 0)
    bars = tf.minimum((remaining + bar - 1) // bar, MAX_COUNTDOWN)
    left = tf.where(remaining <= bar, remaining, FINAL_STEPS + bars - 1)
    return tf.where(open_ending, OPEN_COUNTDOWN, left)


def compiled_sampler(tf, step_fn):
    """A tf.function(start: Start, tables: Tables, knobs: Knobs) returning {"ids": (batch, max_tokens) int32
    padded with -1, "log_likelihoods": (batch, max_tokens), "end_log_likelihood": (batch,) the end token's after
    the last token (NaN without one, or with an open ending)}. `start.positions` and `start.steps_per_bar` are fed
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
            logits, new_states = step_fn(feed, states, pos, bar, countdown_input(tf, rem, bar, start.open_ending))
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
        # ending where the melody must end (sampler.sample does the same): the end token's log-likelihood there
        logits, _ = step_fn(feed, states, pos, bar, countdown_input(tf, rem, bar, start.open_ending))
        end_ll = tf.gather(tf.nn.log_softmax(logits), tf.maximum(tables.end_id, 0), axis=1)
        no_end = start.open_ending | (tables.end_id < 0)
        end_ll = tf.where(no_end, tf.constant(float("nan"), tf.float32), end_ll)
        return {"ids": ids, "log_likelihoods": lls, "end_log_likelihood": end_ll}

    return sample


def check_options(options: SamplingOptions) -> None:
    """Refuses what the compiled loop does not do (beam search, the repetition prior), naming the way out."""
    if options.beam_size > 1 or options.branch_factor > 1 or options.steps_per_iteration > 1:
        raise SamplingError("beam search runs in the numpy sampler; drop --sampler=tf")
    if options.repetition:
        raise SamplingError("the repetition prior runs in the numpy sampler; drop --sampler=tf")


def sample_batch(compiled, start: DecodeStart, tokens: TokenTable, options: SamplingOptions,
                 lstm_layers: int) -> SampleResult:
    """A batch sampled by `compiled` (`compiled_sampler`) from a numpy `DecodeStart` (the primer state of
    `lstm_layers` LSTMs, then the rolls): the compiled twin of `sampler.sample` without beams."""
    check_options(options)
    tf = import_tensorflow()
    base, fillable, target, unfilled = plan(tokens.durations, start.remaining_steps, tokens.allowed)
    rows = len(start.last_ids)
    states = [(tf.constant(start.state[i]), tf.constant(start.state[i + 1])) for i in range(0, 2 * lstm_layers, 2)]
    # the rolls of ids int32; the key head's pitch-class steps float32, as the numpy state holds them
    # the numpy onset ring (form.onset_ring) is an onset roll here (form.ring_to_roll)
    extras = [ring_to_roll(extra) if np.shape(extra)[1] == ONSET_RING_WIDTH else extra
              for extra in start.state[2 * lstm_layers:]]
    states += [tf.constant(extra, tf.float32 if np.asarray(extra).dtype.kind == "f" else tf.int32) for extra in extras]
    tf_start = Start(
        states, tf.constant(start.last_ids, tf.int32), tf.constant(target, tf.int32),
        tf.constant(start.bar_positions if start.metered else np.zeros(rows), tf.int32),
        tf.constant(np.full(rows, start.steps_per_bar if start.metered else 1), tf.int32),
        tf.constant(np.full(rows, options.ending != "tune")))
    tables = Tables(tf.constant(tokens.durations, tf.int32), tf.constant(base), tf.constant(fillable),
                    tf.constant(-1 if start.end_id is None else int(start.end_id), tf.int32))
    knobs = Knobs(tf.constant(float(options.temperature)), tf.constant(int(options.top_k)),
                  tf.constant(float(options.top_p)), tf.constant(int(options.seed), tf.int64))
    out = compiled(tf_start, tables, knobs)
    ids, lls, end_lls = out["ids"].numpy(), out["log_likelihoods"].numpy(), out["end_log_likelihood"].numpy()
    keep = ids >= 0
    return SampleResult([row[k].tolist() for row, k in zip(ids, keep)],
                        [row[k].astype(float).tolist() for row, k in zip(lls, keep)],
                        [int(u) for u in unfilled], [None if np.isnan(e) else float(e) for e in end_lls])
