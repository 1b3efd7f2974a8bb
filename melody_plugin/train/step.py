"""The compiled training and eval steps: optimizer, learning-rate schedule, summed losses per replica."""

from __future__ import annotations

import math

import numpy as np

from melody_plugin.model.keras_model import build_model, copy_inputs, copy_mixture_targets
from melody_plugin.evaluate.scoring import bits_per
from melody_plugin.model.registry import ModelConfig
from melody_plugin.runtime.quiet import import_tensorflow, import_keras
from melody_plugin.runtime.signals import _STOP
from melody_plugin.tokens.form import FINAL_STEPS
from melody_plugin.tokens.vocab import Vocabulary
from melody_plugin.train.options import TrainingError


def _make_optimizer(config: ModelConfig):
    keras = import_keras()

    optimizer = keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clip_norm or None)
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def scheduled_learning_rate(config: ModelConfig, step, num_training_steps: int, time_fraction=0.0):
    """The learning rate of 0-based step `step`: `learning_rate`, times the warm-up, times the decay.

    warm-up: min(1, (step + 1) / lr_warmup_steps). decay (cosine or linear) over progress p in [0, 1], the larger
    of step / num_training_steps and `time_fraction` (the share of a time budget spent; fed per compiled call):
    lr_min_ratio + (1 - lr_min_ratio) * (1 + cos(pi p)) / 2, or ... * (1 - p). Works on tensors in a tf.function.
    """
    tf = import_tensorflow()
    step = tf.cast(step, tf.float32)
    lr = tf.constant(config.learning_rate, tf.float32)
    if config.lr_warmup_steps:
        lr *= tf.minimum(1.0, (step + 1.0) / config.lr_warmup_steps)
    if config.lr_decay != "none":
        p = tf.maximum(step / tf.cast(num_training_steps, tf.float32), tf.cast(time_fraction, tf.float32))
        p = tf.clip_by_value(p, 0.0, 1.0)
        shape = 0.5 * (1.0 + tf.cos(math.pi * p)) if config.lr_decay == "cosine" else 1.0 - p
        lr *= config.lr_min_ratio + (1.0 - config.lr_min_ratio) * shape
    return lr


def _target_terms(tf, outputs, inputs, targets, copy_names=()):
    """(nll, predictions) per target: a plain model's logits, or a copy-gate model's [LSTM logits, gate logits]
    (`build_model(mixture_parts=True)`) with its sources read from `inputs` (`copy_mixture_targets`)."""
    if copy_names:
        candidates = tf.stack([inputs[name] for name in copy_names], axis=-1)
        return copy_mixture_targets(import_keras().ops, outputs[0], outputs[1], candidates, targets)
    logits = tf.cast(outputs, tf.float32)
    return (tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits),
            tf.argmax(logits, axis=-1, output_type=tf.int32))


NOTE, END = 1, 2  # token kinds (`token_kinds`); other tokens (rests, start) are 0


def token_kinds(vocab: Vocabulary) -> np.ndarray:
    """(V,) float32 per id: NOTE for a pitched note, END for the end token, else 0."""
    kinds = np.where(vocab.pitches() >= 0, NOTE, 0).astype(np.float32)
    if vocab.end_token:
        kinds[vocab.end_id] = END
    return kinds


def _step_sums(tf, nll, predictions, targets, kinds, weights=None):
    """Sums over a batch: nats of the targets, correct predictions, bits and count of pitched-note targets, and the
    nats of the end-token targets (`kinds`: `token_kinds`).

    `weights` (the lanes' 0 on padding) leave out the targets they zero; None counts every target.
    """
    correct = tf.cast(tf.equal(predictions, targets), tf.float32)
    kind = tf.gather(kinds, targets)
    if weights is None:
        weights = tf.ones_like(nll)
    note = tf.cast(tf.equal(kind, NOTE), tf.float32) * weights
    nll, correct = nll * weights, correct * weights
    return nll, {"nll": tf.reduce_sum(nll), "correct": tf.reduce_sum(correct),
                 "note_nll": tf.reduce_sum(nll * note), "notes": tf.reduce_sum(note),
                 "tokens": tf.reduce_sum(weights),
                 "end_nll": tf.reduce_sum(nll * tf.cast(tf.equal(kind, END), tf.float32))}


def summarize(sums: dict) -> dict:
    """loss, perplexity, accuracy, bits per token and bits per note from summed counts.

    bits_per_note leaves out the end token's bits, as `melody_evaluate`'s does; bits_per_note_with_end keeps them.
    """
    tokens = max(sums["tokens"], 1.0)
    loss = sums["nll"] / tokens
    end_nll = sums.get("end_nll", 0.0)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": sums["correct"] / tokens,
            "bits_per_token": bits_per(sums["nll"], tokens),
            "bits_per_note": bits_per(sums["nll"] - end_nll, sums["notes"]),
            **({"bits_per_note_with_end": bits_per(sums["nll"], sums["notes"])} if end_nll else {})}


class _Trainer:
    """Builds the compiled train and eval steps of one model under one strategy.

    With `config.carry_state`, batches are (inputs, targets, weights, reset) lanes of whole melodies
    (`dataset.Batching`), and the LSTM states leaving one batch enter the next (zeroed where `reset` is 1): each
    replica keeps its own rows' states in sync-on-read variables, one set for training and one for evaluation.
    """

    def __init__(self, tf, strategy, model, optimizer, config, vocab, carry_model=None):
        self.tf, self.strategy, self.model, self.optimizer, self.config = tf, strategy, model, optimizer, config
        self.carry_model = carry_model
        self.copy_names = copy_inputs(config) if config.copy_bars else ()
        if carry_model is not None:
            rows = config.batch_size // strategy.num_replicas_in_sync
            self.states = {kind: _state_variables(tf, rows, config.rnn_layer_sizes, kind) for kind in ("train", "eval")}
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.global_tokens = float(config.batch_size * config.window_size)
        self.kinds = tf.constant(token_kinds(vocab))
        self.mixed = config.mixed_precision
        self.scheduled = bool(config.lr_warmup_steps) or config.lr_decay != "none"  # else a constant, as ever
        self.train_step = tf.function(self._train_step, jit_compile=None)
        self.eval_step = tf.function(self._eval_step)
        if config.jit_compile:
            self._replica_train = tf.function(self._replica_train, jit_compile=True)

    @property
    def step(self) -> int:
        return int(self.step_var.numpy())

    def _terms(self, batch, training: bool):
        """(nll, predictions, weights) of one replica's batch; with carried states, reads and updates them."""
        weights = None
        if self.carry_model is None:
            outputs = self.model(batch[0], training=training)
        else:
            x, _, weights, reset = batch
            keep = (1.0 - reset)[:, None]
            variables = self.states["train" if training else "eval"]
            outputs, final = self.carry_model([x, [v * keep for v in variables]], training=training)
            for variable, value in zip(variables, final):
                variable.assign(value)  # a new starting point, not a path for gradients: truncated BPTT
        nll, predictions = _target_terms(self.tf, outputs, batch[0], batch[1], self.copy_names)
        return nll, predictions, weights

    def _loss(self, batch, training: bool = True):
        """(loss, sums) of one replica's batch: the targets' nats over the global batch's tokens (so the replicas'
        gradients add up exactly), those in a melody's last bar (its countdown says so) counted ending_weight times;
        the sums (`_step_sums`) count every target once."""
        tf = self.tf
        nll, predictions, weights = self._terms(batch, training=training)
        nll, sums = _step_sums(tf, nll, predictions, batch[1], self.kinds, weights)
        if self.config.ending_weight != 1.0:
            last_bar = tf.cast(batch[0]["bars_left"] <= FINAL_STEPS, nll.dtype)
            nll = nll * (1.0 + (self.config.ending_weight - 1.0) * last_bar)
        return tf.reduce_sum(nll) / self.global_tokens, sums

    def _replica_train(self, *batch):
        tf = self.tf
        with tf.GradientTape() as tape:
            loss, sums = self._loss(batch)
            scaled = self.optimizer.scale_loss(loss) if self.mixed else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return sums

    SUM_KEYS = ("nll", "correct", "note_nll", "notes", "tokens", "end_nll")

    def _train_step(self, iterator, num_steps, step_var, total_steps, time_fraction):
        """`num_steps` steps in one call (one compiled loop); returns the summed counts as one vector.

        `total_steps` and `time_fraction` drive the learning-rate schedule, set before each step.
        """
        tf = self.tf
        totals = tf.zeros([len(self.SUM_KEYS)])
        for _ in tf.range(num_steps):
            batch = next(iterator)
            if self.scheduled:
                _inner(self.optimizer).learning_rate.assign(
                    scheduled_learning_rate(self.config, step_var, total_steps, time_fraction))
            per_replica = self.strategy.run(self._replica_train, args=tuple(batch))
            sums = [self.strategy.reduce("SUM", per_replica[k], axis=None) for k in self.SUM_KEYS]
            totals += tf.stack(sums)
            step_var.assign_add(1)
        return totals

    def _replica_eval(self, *batch):
        nll, predictions, weights = self._terms(batch, training=False)
        return _step_sums(self.tf, nll, predictions, batch[1], self.kinds, weights)[1]

    def _eval_step(self, batch):
        per_replica = self.strategy.run(self._replica_eval, args=batch)
        return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}

    def evaluate(self, dataset, max_batches: int = 200) -> dict | None:
        if dataset is None:
            return None
        totals = {}
        for i, batch in enumerate(dataset):
            if i >= max_batches:
                break
            _STOP.check()  # a signal during training stops it between two batches
            for k, v in self.eval_step(batch).items():
                totals[k] = totals.get(k, 0.0) + float(v)
        return summarize(totals) if totals else None


def _state_variables(tf, rows: int, layer_sizes, kind: str) -> list:
    """[h_0, c_0, h_1, ...] (rows, units) float32 states, one copy per replica (sync on read, never checkpointed)."""
    return [tf.Variable(tf.zeros([rows, units]), trainable=False, name=f"{kind}_lstm_{i}_{part}",
                        synchronization=tf.VariableSynchronization.ON_READ,
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for i, units in enumerate(layer_sizes) for part in ("h", "c")]


def _build_trainer(tf, strategy, config: ModelConfig, vocab: Vocabulary, mixed_precision: bool) -> _Trainer:
    """Model, optimizer and step counter, made in the strategy's scope (mixed_float16 for the build only)."""
    keras = import_keras()

    if config.carry_state and config.batch_size % strategy.num_replicas_in_sync:
        raise TrainingError(f"batch_size {config.batch_size} does not split over "
                            f"{strategy.num_replicas_in_sync} replicas")
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    with strategy.scope():  # everything that creates variables
        # a copy-gate model trains on its mixture's parts (`copy_mixture_targets`), with the same weights
        tables = {"pitches": vocab.pitches(), "durations": vocab.durations()}
        model, carry_model = (build_model(config, len(vocab), carry_state=True, mixture_parts=True, **tables)
                              if config.carry_state else (build_model(config, len(vocab), mixture_parts=True,
                                                                      **tables), None))
        optimizer = _make_optimizer(config)
        optimizer.build(model.trainable_variables)
        trainer = _Trainer(tf, strategy, model, optimizer, config, vocab, carry_model)
    keras.mixed_precision.set_global_policy("float32")
    return trainer


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer wraps the real one
