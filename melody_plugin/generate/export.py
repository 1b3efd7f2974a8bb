"""A run's model -> a TensorFlow SavedModel (`serving_default` continues ids by grid steps, `logits`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate import sampler, sampler_tf
from melody_plugin.generate.endings import final_prior
from melody_plugin.model.numpy_model import weights_to_keras_model
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import filtered_stderr, import_tensorflow
from melody_plugin.tokens.form import FINAL_CLASSES, FINAL_OPEN, FINAL_PITCH_SIZE, OPEN_COUNTDOWN
from melody_plugin.tokens.vocab import METER_FEATURE_SIZE, PAD


class ExportError(MelodyPluginError):
    """A SavedModel that cannot be written where asked (the folder exists and --overwrite was not given)."""


MAX_SERVING_STEPS = 4096  # per request: 85 bars of 4/4 at 12 steps per quarter; the plan's table is this long


STEPS_MESSAGE = f"serving_default: steps must be in [0, {MAX_SERVING_STEPS}] grid steps per sequence"


def _serving_module(tf, model, vocab, copy_bars=()):
    durations_np = vocab.durations()
    step_fn = sampler_tf.keras_step_fn(model, durations_np, copy_bars)
    sample = sampler_tf.compiled_sampler(tf, step_fn)
    # the in-process samplers' plan for every request up front: target[s] is the most of s steps that tokens
    # can fill exactly (s itself unless the vocabulary is tiny)
    base_np, fillable_np, target_np, _ = sampler.plan(durations_np, np.arange(MAX_SERVING_STEPS + 1))

    class MelodyModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.durations = tf.constant(durations_np, tf.int32)
            self.allowed = tf.constant(base_np)
            self.fillable = tf.constant(fillable_np)
            self.targets = tf.constant(target_np, tf.int32)
            self.end_id = tf.constant(-1 if vocab.end_id is None else vocab.end_id, tf.int32)
            self.final_prior = tf.constant(final_prior(vocab.final_counts), tf.float32)

        def positions(self, ids, steps_per_bar):
            """(batch, time): where the token after each id begins in its bar (vocab.meter_features, <unk> 0)."""
            onsets = tf.cumsum(tf.gather(self.durations, ids), axis=1)
            return tf.math.floormod(onsets, tf.maximum(steps_per_bar, 1)[:, None])

        def lookback(self, ids, steps_per_bar):
            """(lookback_1, lookback_2), each (batch, time): vocab.lookback_features of every row, in TF ops."""
            ends = tf.cumsum(tf.gather(self.durations, ids), axis=1)  # where the token after each id begins
            bar = tf.clip_by_value(steps_per_bar, 1, METER_FEATURE_SIZE - 1)[:, None]
            last = tf.shape(ids)[1] - 1
            out = []
            for k in (1, 2):
                step = ends - k * bar
                sounding = tf.searchsorted(ends, step, side="right")  # the first token ending after `step`
                back = tf.gather(ids, tf.minimum(sounding, last), batch_dims=1)
                out.append(tf.where(step < 0, tf.constant(PAD, tf.int32), back))
            return out

        def copies(self, ids, steps_per_bar):
            """(batch, time, K): form.copy_features of every row, in TF ops (the ids that began k bars back)."""
            durations = tf.gather(self.durations, ids)
            ends = tf.cumsum(durations, axis=1)
            starts = ends - durations
            bar = tf.clip_by_value(steps_per_bar, 1, METER_FEATURE_SIZE - 1)[:, None]
            last = tf.shape(ids)[1] - 1
            out = []
            for k in step_fn.copy_bars:
                step = ends - k * bar
                at = tf.minimum(tf.searchsorted(ends, step, side="right"), last)  # the token sounding at `step`
                began = (step >= 0) & (tf.gather(starts, at, batch_dims=1) == step)
                out.append(tf.where(began, tf.gather(ids, at, batch_dims=1), tf.constant(PAD, tf.int32)))
            return out

        def model_logits(self, ids, steps_per_bar):
            if not step_fn.meter_features:
                return {"logits": self.model(ids, training=False)}
            top = METER_FEATURE_SIZE - 1
            inputs = {"ids": ids, "bar_position": tf.minimum(self.positions(ids, steps_per_bar), top),
                      "bar_steps": tf.minimum(tf.broadcast_to(steps_per_bar[:, None], tf.shape(ids)), top)}
            if step_fn.bar_lookback:
                inputs["lookback_1"], inputs["lookback_2"] = self.lookback(ids, steps_per_bar)
            if step_fn.countdown:  # the length of the melody unknown, as melody_evaluate scores
                inputs["bars_left"] = tf.fill(tf.shape(ids), tf.constant(OPEN_COUNTDOWN, tf.int32))
            if step_fn.final_pitch:  # nor how it ends
                inputs["final_pitch"] = tf.fill(tf.shape(ids), tf.constant(FINAL_OPEN, tf.int32))
            inputs.update(zip((f"copy_{k}" for k in step_fn.copy_bars), self.copies(ids, steps_per_bar)))
            if step_fn.key_head:  # form.pitch_class_steps of every row
                table = tf.transpose(self.model.get_layer("pitch_class_table").kernel)  # (vocab, 12)
                held = tf.gather(table, ids) * tf.cast(tf.gather(self.durations, ids), tf.float32)[..., None]
                inputs["pitch_classes"] = tf.cast(tf.cumsum(held, axis=1), tf.int32)
            return {"logits": self.model(inputs, training=False)}

        def continue_ids(self, ids, steps, knobs, steps_per_bar, tune_ending):
            """knobs: (temperature, top_k, top_p, seed); tune_ending: a countdown model counts down to the end of
            the `steps` (True) or is fed the open countdown (False)."""
            temperature, top_k, top_p, seed = knobs
            checks = [tf.debugging.assert_non_negative(steps, message=STEPS_MESSAGE),
                      tf.debugging.assert_less_equal(steps, MAX_SERVING_STEPS, message=STEPS_MESSAGE)]
            with tf.control_dependencies(checks):  # before the table lookup, whose own error is obscure
                target = tf.gather(self.targets, steps)
            batch = tf.shape(ids)[0]
            positions = self.positions(ids, steps_per_bar)
            open_ending = tf.fill([batch], tf.logical_not(tune_ending))
            # each primer token's steps left to the end: this request's steps plus the primer's after it
            ends = tf.cumsum(tf.gather(self.durations, ids), axis=1)
            left = target[:, None] + ends[:, -1:] - ends
            if step_fn.final_pitch:
                states = self.told_states(ids, positions, steps_per_bar, left, open_ending, seed)
            else:
                states = sampler_tf.initial_states(tf, step_fn, batch)  # a bar lookback model's roll starts as PAD
                for t in tf.range(tf.shape(ids)[1] - 1):  # the whole primer builds the state
                    countdown = sampler_tf.countdown_input(tf, left[:, t], steps_per_bar, open_ending)
                    _, states = step_fn(ids[:, t], states, positions[:, t], steps_per_bar, countdown)
            out = sample(sampler_tf.Start(states, ids[:, -1], target, positions[:, -1], steps_per_bar, open_ending),
                         sampler_tf.Tables(self.durations, self.allowed, self.fillable, self.end_id),
                         sampler_tf.Knobs(temperature, top_k, top_p, seed))
            out["unfilled_steps"] = steps - target
            return out

        def told_states(self, ids, positions, steps_per_bar, left, open_ending, seed):
            """A final-pitch model's state after the primer (all but its last id), each row told the pitch class its
            melody ends on, drawn from the posterior given the primer (generate/endings.py), or the open value for
            an open ending: the primer runs once per class (rows b * FINAL_PITCH_SIZE + class)."""
            batch, classes = tf.shape(ids)[0], FINAL_PITCH_SIZE
            rows = [tf.repeat(x, classes, axis=0) for x in (ids, positions, steps_per_bar, left, open_ending)]
            ids_r, positions_r, bar_r, left_r, open_r = rows
            states = sampler_tf.initial_states(tf, step_fn, batch * classes)
            states[-1] = tf.tile(tf.range(classes, dtype=tf.int32)[:, None], [batch, 1])
            log_likelihood = tf.zeros([batch * classes])
            for t in tf.range(tf.shape(ids)[1] - 1):
                countdown = sampler_tf.countdown_input(tf, left_r[:, t], bar_r, open_r)
                logits, states = step_fn(ids_r[:, t], states, positions_r[:, t], bar_r, countdown)
                log_likelihood += tf.gather(tf.nn.log_softmax(logits), ids_r[:, t + 1], batch_dims=1)
            posterior = tf.reshape(log_likelihood, [batch, classes])[:, :FINAL_CLASSES] + self.final_prior[None, :]
            drawn = tf.random.stateless_categorical(posterior, 1, seed=tf.stack([seed, tf.constant(0xF1, tf.int64)]),
                                                    dtype=tf.int32)[:, 0]
            chosen = tf.where(open_ending, tf.constant(FINAL_OPEN, tf.int32), drawn)
            return tf.nest.map_structure(lambda s: tf.gather(s, tf.range(batch) * classes + chosen), states)

    module = MelodyModule()
    request = [tf.TensorSpec([None, None], tf.int32, name="ids"), tf.TensorSpec([None], tf.int32, name="steps"),
               tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="top_k"),
               tf.TensorSpec([], tf.float32, name="top_p"), tf.TensorSpec([], tf.int64, name="seed")]
    bar_spec = tf.TensorSpec([None], tf.int32, name="steps_per_bar")
    ending_spec = tf.TensorSpec([], tf.bool, name="tune_ending")
    if step_fn.countdown:  # a model that can end a tune takes how it ends
        module.logits = tf.function(lambda ids, steps_per_bar: module.model_logits(ids, steps_per_bar),
                                    input_signature=[request[0], bar_spec])
        module.continue_melody = tf.function(
            lambda ids, steps, temperature, top_k, top_p, seed, steps_per_bar, tune_ending: module.continue_ids(
                ids, steps, (temperature, top_k, top_p, seed), steps_per_bar, tune_ending),
            input_signature=request + [bar_spec, ending_spec])
    elif step_fn.meter_features:
        module.logits = tf.function(lambda ids, steps_per_bar: module.model_logits(ids, steps_per_bar),
                                    input_signature=[request[0], bar_spec])
        module.continue_melody = tf.function(
            lambda ids, steps, temperature, top_k, top_p, seed, steps_per_bar: module.continue_ids(
                ids, steps, (temperature, top_k, top_p, seed), steps_per_bar, False),
            input_signature=request + [bar_spec])
    else:  # the signatures of a model without meter features are what they always were
        module.logits = tf.function(lambda ids: module.model_logits(ids, tf.ones([tf.shape(ids)[0]], tf.int32)),
                                    input_signature=request[:1])
        module.continue_melody = tf.function(
            lambda ids, steps, temperature, top_k, top_p, seed: module.continue_ids(
                ids, steps, (temperature, top_k, top_p, seed), tf.ones([tf.shape(ids)[0]], tf.int32), False),
            input_signature=request)
    # Continues token sequences (start token first) by `steps` grid steps each, planned as sampler.plan.
    # Returns ids (batch, n) padded with -1, their log_likelihoods, and unfilled_steps (batch,): steps no token
    # sequence can fill exactly (tiny vocabularies; normally 0), left as silence at the end, so each row lasts
    # steps - unfilled_steps. A step count outside [0, MAX_SERVING_STEPS] fails the call with InvalidArgumentError
    # "serving_default: steps must be in [0, 4096] ...". A model with a countdown (config.countdown) also takes
    # tune_ending (bool): True ends each row on its last step as a tune, False continues it openly; then
    # end_log_likelihood (batch,) is the end token's log-likelihood there (NaN for an open ending or no end token).
    return module


SAVED_MODEL_FILES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra"}  # what we write


def check_export_target(target: Path, overwrite: bool) -> None:
    """Refuses (ExportError) to write a SavedModel over anything but an empty folder or, with `overwrite`, a
    SavedModel of ours holding nothing else: a file or folder of the user's is never replaced."""
    if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
        return
    if not overwrite:
        raise ExportError(f"{target}: already exists; pass --overwrite to replace it")
    if not (target / "saved_model.pb").is_file():
        raise ExportError(f"{target}: not a SavedModel (no saved_model.pb in it); --overwrite replaces only a "
                          "SavedModel: name another --saved_model_dir")
    others = sorted(p.name for p in target.iterdir() if p.name not in SAVED_MODEL_FILES)
    if others:
        raise ExportError(f"{target}: holds {', '.join(others[:5])}{' ...' if len(others) > 5 else ''} beside the "
                          "SavedModel, which --overwrite would lose: move them out or name another --saved_model_dir")


def export_saved_model(gen, saved_model_dir, overwrite: bool = False) -> Path:
    """Writes a SavedModel of `gen` (a MelodyGenerator) to `saved_model_dir`, atomically (temp dir + rename)."""
    target = Path(os.path.realpath(saved_model_dir)) if os.path.islink(saved_model_dir) else Path(saved_model_dir)
    check_export_target(target, overwrite)  # before TensorFlow's start-up: a refusal comes at once
    tf = import_tensorflow()
    model = weights_to_keras_model(gen.config, gen.weights)
    module = _serving_module(tf, model, gen.vocab, gen.config.copy_bars)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o777 & ~atomic.umask())  # mkdtemp makes 0700: readable by a server as another user, as mkdir
    try:
        with filtered_stderr():
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.continue_melody,
                                                              "logits": module.logits})
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        gen.vocab.save(extra / "vocab.json")

        atomic.write_json(extra / "config.json", gen.config.to_json())
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
