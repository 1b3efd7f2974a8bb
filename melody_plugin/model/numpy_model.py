"""The LSTM in numpy for generation without TensorFlow, and weights <-> Keras, bytes and files."""

from __future__ import annotations

import functools
import io
import json
import math

import numpy as np

from melody_plugin.model.keras_model import GATE_COUNTDOWN, build_model, gate_countdown_cap
from melody_plugin.runtime.atomic import write_bytes
from melody_plugin.tokens.form import (
    COUNTDOWN_SIZE,
    FINAL_OPEN,
    FINAL_PITCH_SIZE,
    FINAL_STEPS,
    countdown_bars,
    ending_rows,
    key_bonus,
    key_head_features,
    onset_ring,
    ring_candidates,
    ring_onsets,
)
from melody_plugin.tokens.vocab import LOOKBACK_STEPS, PAD, roll_lookback

EMBEDDINGS = ("embedding", "bar_position_embedding", "bar_steps_embedding", "lookback_1_embedding",
              "lookback_2_embedding", "bars_left_embedding", "final_pitch_embedding")


DENSE = ("logits", "copy_gate", "key_head", "final_head")  # kernel and bias each


TABLES = ("pitch_class_table", "ending_table")  # a kernel, fixed (not trained)


def keras_to_weights(model) -> dict[str, np.ndarray]:
    """The arrays of a `keras_model.build_model` network, by name (float32)."""
    weights = {}
    lstm_index = 0
    for layer in model.layers:
        arrays = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
        if layer.name in EMBEDDINGS:
            weights[layer.name] = arrays[0]
        elif layer.name.startswith("lstm_"):
            kernel, recurrent, bias = arrays
            weights[f"lstm_{lstm_index}/kernel"] = kernel
            weights[f"lstm_{lstm_index}/recurrent_kernel"] = recurrent
            weights[f"lstm_{lstm_index}/bias"] = bias
            lstm_index += 1
        elif layer.name in DENSE:
            weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"] = arrays
        elif layer.name in TABLES:
            weights[f"{layer.name}/kernel"] = arrays[0]
    return weights


def weights_to_keras_model(config, weights: dict[str, np.ndarray]):
    """A `keras_model.build_model` network carrying `weights` (numpy -> Keras, the inverse of `keras_to_weights`).

    Keras is imported (by `build_model`) only here, when asked: generating and scoring never pay TensorFlow's import.
    """

    model = build_model(config, weights["logits/bias"].shape[0])
    lstm_index = 0
    for layer in model.layers:
        if layer.name in EMBEDDINGS:
            layer.set_weights([weights[layer.name]])
        elif layer.name.startswith("lstm_"):
            layer.set_weights([weights[f"lstm_{lstm_index}/{name}"] for name in ("kernel", "recurrent_kernel", "bias")])
            lstm_index += 1
        elif layer.name in DENSE:
            layer.set_weights([weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"]])
        elif layer.name in TABLES:
            layer.set_weights([weights[f"{layer.name}/kernel"]])
    return model


def weights_to_bytes(weights: dict[str, np.ndarray], meta: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    arrays = dict(weights)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def bytes_to_weights(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode()) if "__meta__" in arrays else {}
    return arrays, meta


def save_weights(weights, path, meta: dict | None = None) -> None:
    write_bytes(path, weights_to_bytes(weights, meta))


def load_weights(path) -> tuple[dict[str, np.ndarray], dict]:
    with open(path, "rb") as f:
        return bytes_to_weights(f.read())


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # no overflow warnings, same values


def gate_features(candidates: np.ndarray, bars_left=None, cap: int = GATE_COUNTDOWN) -> np.ndarray:
    """keras_model.copy_gate_features in numpy: (rows, K) ids [and (rows,) bars left, the countdown `cap`] ->
    (rows, features) float32."""
    present = candidates != PAD
    first, second = _pairs(candidates.shape[1])
    same = (candidates[:, first] == candidates[:, second]) & present[:, first]
    parts = [present, same]
    if bars_left is not None:
        parts.append(_gate_countdown_table(cap)[np.asarray(bars_left, dtype=np.int64)])
    return np.concatenate(parts, axis=1).astype(np.float32)


@functools.cache
def _gate_countdown_table(cap: int) -> np.ndarray:
    """(COUNTDOWN_SIZE, cap + 1) bool: row v is the one-hot of min(bars left, cap) of countdown value v (one lookup a
    step)."""
    bars = np.minimum(countdown_bars(np.arange(COUNTDOWN_SIZE)), cap)
    table = bars[:, None] == np.arange(cap + 1)
    table.flags.writeable = False
    return table


@functools.cache
def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j), i < j, of k copy sources, in the Keras model's order."""
    return np.triu_indices(k, 1)


class NumpyLSTM:
    """The inference half of `build_model`: embedding -> LSTMs -> logits, one step or whole sequences."""

    def __init__(self, weights: dict[str, np.ndarray], durations: np.ndarray | None = None,
                 copy_bars: tuple = ()):
        """`durations`: the vocabulary's `durations()`, needed by a model with bar lookback or copy sources (they
        move the rolls); `copy_bars`: the config's copy distances (a model with a copy gate needs them)."""
        self.embedding = weights["embedding"]
        self.meter_features = "bar_position_embedding" in weights
        self.bar_lookback = "lookback_1_embedding" in weights
        self.countdown = "bars_left_embedding" in weights
        self.copy_bars = tuple(copy_bars) if "copy_gate/kernel" in weights else ()
        if "copy_gate/kernel" in weights:
            if weights["copy_gate/bias"].shape[0] != len(self.copy_bars) + 1:
                raise ValueError(f"this model copies from {weights['copy_gate/bias'].shape[0] - 1} earlier bars: "
                                 "pass the config's copy_bars")
            self.gate_kernel, self.gate_bias = weights["copy_gate/kernel"], weights["copy_gate/bias"]
            self.gate_cap = gate_countdown_cap(self.gate_kernel.shape[0], weights["logits/kernel"].shape[0],
                                               len(self.copy_bars), "final_pitch_embedding" in weights)
        if self.countdown:
            self.countdown_embedding = weights["bars_left_embedding"]
        self.final_pitch = "final_pitch_embedding" in weights
        if self.final_pitch:
            self.final_pitch_embedding = weights["final_pitch_embedding"]
        self.key_head = "key_head/kernel" in weights
        if self.key_head:  # the profile's kernel and bias
            self.key_kernel, self.key_bias = weights["key_head/kernel"], weights["key_head/bias"]
            self.head_kernel, self.head_bias = self.key_kernel, self.key_bias
        self.key_size = self.key_kernel.shape[1] if self.key_head else 0
        if "pitch_class_table/kernel" in weights:  # each id's pitch class one-hot (vocab, 12)
            self.pitch_classes = np.ascontiguousarray(weights["pitch_class_table/kernel"].T)
        self.final_head = "final_head/kernel" in weights
        if self.final_head:
            self._final_tables(weights)
        self.ending_table = weights.get("ending_table/kernel")  # key_tonic: the ids that end the melody
        if self.bar_lookback or self.copy_bars or self.key_head:
            if durations is None:
                raise ValueError("this model reads the lengths of the tokens fed: pass the vocabulary's durations()")
            self.durations = np.asarray(durations, dtype=np.int64)
        if self.bar_lookback:
            self.lookback_embeddings = (weights["lookback_1_embedding"], weights["lookback_2_embedding"])
        if self.meter_features:
            self.position_embedding = weights["bar_position_embedding"]
            self.bar_steps_embedding = weights["bar_steps_embedding"]
            # trained embeddings are added to the token's; one-hot ones (identity tables) are concatenated
            self.concatenate = weights["lstm_0/kernel"].shape[0] != self.embedding.shape[1]
        self.layers = []  # each LSTM's kernels and bias, the gates reordered i, f, o, c: one sigmoid for three
        i = 0
        while f"lstm_{i}/kernel" in weights:
            units = weights[f"lstm_{i}/bias"].shape[0] // 4
            order = np.r_[0:2 * units, 3 * units:4 * units, 2 * units:3 * units]  # from Keras' i, f, c, o
            self.layers.append(tuple(np.ascontiguousarray(weights[f"lstm_{i}/{name}"][..., order])
                                     for name in ("kernel", "recurrent_kernel", "bias")))
            i += 1
        self.out_kernel, self.out_bias = weights["logits/kernel"], weights["logits/bias"]
        self.vocab_size = self.out_bias.shape[0]

    def initial_state(self, batch: int) -> list[np.ndarray]:
        """[h0, c0, h1, c1, ...], each (batch, units); with bar lookback then the roll (batch, LOOKBACK_STEPS) int32
        of PAD (nothing sounded before the start); with copy sources then the onset ring (`form.onset_ring`); with
        a key head then the steps each pitch class has sounded (batch, 12) float32; with a final-pitch input then
        the class each row's melody ends on (batch, 1) int32, FINAL_OPEN (not told) until the caller sets it."""
        state = []
        for _, recurrent, _ in self.layers:
            units = recurrent.shape[0]
            state += [np.zeros((batch, units), np.float32), np.zeros((batch, units), np.float32)]
        if self.bar_lookback:
            state.append(np.full((batch, LOOKBACK_STEPS), PAD, np.int32))
        if self.copy_bars:
            state.append(onset_ring(batch))
        if self.key_head:
            state.append(np.zeros((batch, 12), np.float32))
        if self.final_pitch:
            state.append(np.full((batch, 1), FINAL_OPEN, np.int32))
        return state

    def _inputs(self, ids, positions, bar_steps, lookback=(), bars_left=None, final=None) -> np.ndarray:
        x = self.embedding[ids]
        if not self.meter_features:
            return x
        if positions is None or bar_steps is None:
            raise ValueError("this model has meter features: pass each token's bar position and bar length")
        features = [x, self.position_embedding[positions], self.bar_steps_embedding[bar_steps]]
        features += [table[back] for table, back in zip(self.lookback_embeddings, lookback)] if lookback else []
        if self.countdown:
            if bars_left is None:
                raise ValueError("this model counts down to the end: pass each token's bars_left")
            features.append(self.countdown_embedding[bars_left])
        if final is not None:
            features.append(self.final_pitch_embedding[final[:, 0]])
        return np.concatenate(features, axis=-1) if self.concatenate else sum(features[1:], features[0])

    def step(self, ids: np.ndarray, state: list[np.ndarray], positions=None, bar_steps=None,
             durations_steps=None, bars_left=None, outputs: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
        """Feeds one token per row: ids (batch,) -> logits (batch, vocab), new state.

        A model with meter features also takes positions and bar_steps (batch,), from `vocab.meter_features`. A
        model with bar lookback or copy sources moves its rolls by each fed token's duration: `durations_steps`
        (batch,) where the caller knows better (an `<unk>` primer note's true length), else the vocabulary's. A
        model with a countdown takes `bars_left` (batch,) (`form.countdown_features`). With copy sources the
        logits are the mixture's log-probabilities. `outputs=False` skips them (None): the state alone.
        """
        lookback, extra = (), []
        ids = np.asarray(ids)
        if self.bar_lookback or self.copy_bars or self.key_head:
            if bar_steps is None:
                raise ValueError("this model looks back at earlier bars: pass each token's bar length")
            fed = self.durations[ids] if durations_steps is None else np.asarray(durations_steps)
        rolls = iter(state[2 * len(self.layers):])
        if self.bar_lookback:
            roll, *lookback = roll_lookback(next(rolls), ids, fed, bar_steps)
            extra.append(roll)
        if self.copy_bars:
            onsets = ring_onsets(next(rolls), ids, fed)
            extra.append(onsets)
        if self.key_head:
            held = next(rolls) + self.pitch_classes[ids] * fed[:, None].astype(np.float32)
            extra.append(held)
        final = next(rolls) if self.final_pitch else None
        if final is not None:
            extra.append(final)
        x = self._inputs(ids, positions, bar_steps, lookback, bars_left, final)
        new_state = []
        for layer, (kernel, recurrent, bias) in enumerate(self.layers):
            h, c = state[2 * layer], state[2 * layer + 1]
            z = x @ kernel + h @ recurrent + bias  # (batch, 4 * units), gates i, f, o, c (reordered at load)
            units = z.shape[-1] // 4
            gates = _sigmoid(z[..., :3 * units])  # the input, forget and output gates side by side: one call
            c = gates[..., units:2 * units] * c + gates[..., :units] * np.tanh(z[..., 3 * units:])
            h = gates[..., 2 * units:] * np.tanh(c)
            new_state += [h, c]
            x = h
        if not outputs:
            return None, new_state + extra
        logits = x @ self.out_kernel + self.out_bias
        if self.key_head or self.final_head:  # one product for both heads
            head_in = np.concatenate([x, key_head_features(bars_left, bar_steps)], axis=1) if self.countdown else x
            heads = head_in @ self.head_kernel + self.head_bias
        if self.key_head:
            bonus = key_bonus(heads[:, :self.key_size], held)
            if bonus.ndim == 2:  # no key tonic
                logits = logits + bonus @ self.pitch_classes.T
            elif (np.asarray(bars_left) > FINAL_STEPS).all():  # no row in its last bar: no token ends the melody
                logits = logits + bonus[:, 0] @ self.pitch_classes.T
            else:  # keras_model.key_logits
                by_id = bonus @ self.pitch_classes.T  # (batch, 2, vocab)
                logits = logits + by_id[:, 0] + by_id[:, 1] * self.ending_table[ending_rows(bars_left)]
        if self.final_head:
            logits = logits + self._final_logits(heads[:, self.key_size:], bars_left, final[:, 0])
        if self.copy_bars:
            logits = self._mix(logits, x, ring_candidates(onsets, bar_steps, self.copy_bars), bars_left, final)
        return logits, new_state + extra

    def _final_tables(self, weights) -> None:
        """The final-pitch head's lookups (keras_model.final_bonus): for each final-pitch value f and id, the column of
        the head's output holding the id's scale degree above f (12: a zero column, for rests, special ids and an
        untold f), and whether the id is on f; the head's kernel with that zero column put in (14 outputs)."""
        table = weights["pitch_class_table/kernel"].T  # (vocab, 12)
        id_class = np.where(table.any(axis=1), table.argmax(axis=1), -1)
        finals = np.arange(FINAL_PITCH_SIZE)[:, None]
        pitched = (id_class[None, :] >= 0) & (finals < 12)
        self.final_degrees = np.where(pitched, (id_class[None, :] - finals) % 12, 12)  # (FINAL_PITCH_SIZE, vocab)
        self.final_on = (pitched & (id_class[None, :] == finals)).astype(np.float32)
        kernel, bias = weights["final_head/kernel"], weights["final_head/bias"]
        zero = np.zeros((kernel.shape[0], 1), np.float32)
        final_kernel = np.concatenate([kernel[:, :12], zero, kernel[:, 12:]], axis=1)
        final_bias = np.concatenate([bias[:12], [0.0], bias[12:]]).astype(np.float32)
        self.head_kernel = np.concatenate([self.key_kernel, final_kernel], axis=1) if self.key_head else final_kernel
        self.head_bias = np.concatenate([self.key_bias, final_bias]) if self.key_head else final_bias

    def _final_logits(self, out, bars_left, final) -> np.ndarray:
        """keras_model.final_bonus through key_logits in numpy, from the head's (batch, 14) output (`_final_tables`):
        each pitched id gets the weight of its scale degree above the final pitch class, and an id that ends the
        melody on it the ending weight (none where the final is not told)."""
        bonus = out[np.arange(len(out))[:, None], self.final_degrees[final]]  # not take_along_axis: slow
        if (np.asarray(bars_left) > FINAL_STEPS).all():  # no row in its last bar: no token ends the melody
            return bonus
        return bonus + out[:, 13:14] * self.final_on[final] * self.ending_table[ending_rows(bars_left)]

    def _mix(self, logits, h, candidates, bars_left, final=None) -> np.ndarray:
        """keras_model.mix_copies in numpy: the LSTM's and the copy sources' distributions mixed by the gate (which
        also reads, in a final-pitch model, whether each source is on the final pitch class: `final_matches`)."""
        present = candidates != PAD
        features = gate_features(candidates, bars_left if self.countdown else None, self.gate_cap)
        if final is not None:  # keras_model.final_matches
            features = np.concatenate([features, self.final_on[final[:, :1], candidates]], axis=1)
        gate_logits = np.concatenate([h, features], axis=1) @ self.gate_kernel + self.gate_bias
        gate = np.exp(gate_logits - gate_logits.max(axis=1, keepdims=True))
        gate[:, 1:] *= present  # a source without a token takes no share
        gate /= gate.sum(axis=1, keepdims=True)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        mass = shifted * (gate[:, :1] / shifted.sum(axis=1, keepdims=True))  # g_0 softmax(logits)
        rows, vocab = mass.shape  # each source's gate on its id (an id of several sources gets each one's share)
        sources = (np.arange(rows)[:, None] * vocab + candidates).ravel()
        mass += np.bincount(sources, weights=gate[:, 1:].ravel(), minlength=rows * vocab).reshape(rows, vocab)
        return np.log(np.maximum(mass, 1e-30))

    def run(self, ids: np.ndarray, state=None, positions=None, bar_steps=None,
            durations_steps=None, bars_left=None, outputs: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
        """Feeds (batch, time) ids (and, with meter features, positions and bar_steps of that shape; with bar
        lookback optionally durations_steps, see `step`; with a countdown bars_left); returns (batch, time, vocab)
        logits (None with `outputs=False`: the state alone, faster) and the final state."""
        ids = np.asarray(ids)
        state = state if state is not None else self.initial_state(ids.shape[0])

        def at(values, t):
            return None if values is None else np.asarray(values)[:, t]

        steps = []
        for t in range(ids.shape[1]):
            logits, state = self.step(ids[:, t], state, at(positions, t), at(bar_steps, t), at(durations_steps, t),
                                      at(bars_left, t), outputs)
            steps.append(logits)
        return (np.stack(steps, axis=1) if outputs else None), state


LN2 = math.log(2.0)  # nats -> bits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) over the last axis, stable for large logits."""
    logits = logits - logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
