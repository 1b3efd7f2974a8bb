"""tf.data windows -> trained weights: `train_and_evaluate(config, run_dir, ...)` and the eval-only job.

The loop reads top to bottom: run dir and data, strategy, model and optimizer in the strategy's scope, restore,
then compiled train steps with TensorBoard summaries, checkpoints (tf.train.CheckpointManager), the best
checkpoint by eval bits/note (run_dir/best/) and a progress line, until the step count or the time budget
(`max_minutes`, counted from the process start) ends. The learning rate follows the config's warm-up and decay
(`scheduled_learning_rate`). The batch size is global; each replica's loss is summed over its tokens and
divided by the global token count, so the summed replica gradients equal single-device training on the same
global batch.
Entry points: `train_and_evaluate` (with `TrainOptions`), `evaluate_checkpoints`, `load_training_data`, `make_strategy`,
`scheduled_learning_rate`, `process_start_time`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from melody_plugin import atomic, corpus as corpus_lib, numpy_model
from melody_plugin.dataset import (EVAL_FILE, TRAIN_FILE, Batching, MeterInputs, make_dataset, num_windows,
                                   read_sequences, write_sequences)
from melody_plugin.errors import Interrupted, MelodyPluginError
from melody_plugin.model import build_model
from melody_plugin.quiet import import_tensorflow
from melody_plugin.registry import ModelConfig
from melody_plugin.rundir import RunDir
from melody_plugin.vocab import Vocabulary

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


class TrainingError(MelodyPluginError):
    """Training cannot go on: a NaN loss, no data, a bad strategy."""


class TrainingInterrupted(Interrupted):
    """Ctrl-C: a checkpoint was saved and the run can be resumed."""


@dataclasses.dataclass
class TrainResult:
    step: int
    metrics: dict
    run_dir: str
    tokens_per_second: float
    replicas: int = 1
    budget_reached: bool = False  # stopped by max_minutes before num_training_steps


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """How one training runs; the model and its optimizer are the `ModelConfig`.

    `num_training_steps` counts across resumes. `summary_frequency` steps between TensorBoard summaries,
    evaluations and progress lines; `save_checkpoint_steps` between checkpoints, of which `num_checkpoints` are
    kept. `threads` is (intra_op, inter_op), 0 = auto. `progress`: the tqdm bar (None: when on a terminal); without
    a bar the progress lines go to `log`. `max_minutes` (None = no limit) stops the run, with a checkpoint and an
    eval, at the last compiled call that ends within that many minutes of `started_at` (a `time.time()`; None =
    this process's start, as a user's wall clock counts it); at least one call runs, so every resume progresses.
    `max_cpu_minutes` does the same with the CPU time this process has used since it started (all threads), for
    fair comparisons on a shared machine.
    """

    num_training_steps: int = 2000
    eval_ratio: float = 0.1
    summary_frequency: int = 100
    save_checkpoint_steps: int = 500
    num_checkpoints: int = 5
    seed: int = 0
    strategy: str = "auto"
    threads: tuple[int, int] = (0, 0)
    progress: bool | None = None
    write_curve: bool = True
    max_minutes: float | None = None
    # the same, in CPU time of this process (all its threads) and its finished child processes (the reading pool),
    # counted from the process start
    max_cpu_minutes: float | None = None
    started_at: float | None = None
    log: Callable[..., object] = dataclasses.field(default=print, compare=False)

    def __post_init__(self):
        for name in ("summary_frequency", "save_checkpoint_steps"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_minutes", "max_cpu_minutes"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise TrainingError(f"{name} must be > 0, got {value}")


_IMPORT_TIME = time.time()


def process_start_time() -> float:
    """When this process started, as a `time.time()`: from /proc/self/stat on Linux, else this module's import."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORT_TIME
    return time.time() - age_s if 0 <= age_s < 365 * 86400 else _IMPORT_TIME


# --- distribution

def configure_cpu_devices(num_cpu_devices: int) -> None:
    """Splits the CPU into N logical devices so MirroredStrategy can run N replicas on a CPU-only machine."""
    tf = import_tensorflow()
    if num_cpu_devices and num_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
        except RuntimeError:
            pass  # already initialised (a second run in one process keeps the first split)


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> tuple[int, int]:
    """TensorFlow's thread pools; 0 = auto: on a CPU-only machine one thread per op and two ops at a time.

    These LSTMs are small: splitting one op over both cores costs more in hand-offs than it gains (measured on
    2 cores: 35k -> 47k tokens/s for char_lstm, 27k -> 42k for folk_lstm). Must run before TensorFlow starts.
    """
    tf = import_tensorflow()
    if not intra_op and not inter_op and not tf.config.list_physical_devices("GPU"):
        intra_op, inter_op = 1, min(2, os.cpu_count() or 1)
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # the runtime already started (a second training in one process keeps the first setting)
    threading = tf.config.threading
    return threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()


def make_strategy(name: str = "auto"):
    """A tf.distribute strategy by name. `auto`: MirroredStrategy over several GPUs, else the default."""
    tf = import_tensorflow()
    if name not in STRATEGIES:
        raise TrainingError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":  # before anything initialises the runtime (listing logical devices does)
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy=multi_worker needs the TF_CONFIG environment variable (see README)")
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in gpus] if gpus else [d.name for d in cpus]
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
                                              if not gpus else None)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


# --- data

def _is_dataset_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "vocab.json").is_file() and (p / TRAIN_FILE).is_file()


def load_training_data(input_path, config: ModelConfig, eval_ratio: float, vocab: Vocabulary | None = None,
                       progress=None, log=print):
    """(train_sequences, eval_sequences, vocab, (train_bars, eval_bars)) from a dataset folder, a MIDI folder/glob
    or a TFRecord. The bars are each sequence's steps_per_bar (None where a dataset written before meter features
    has none).

    With `vocab` given (a resumed run), new data is encoded with it; notes it lacks are mapped.
    """
    if input_path and _is_dataset_dir(input_path):
        data_vocab = Vocabulary.load(Path(input_path) / "vocab.json")
        train, train_bars = read_sequences(Path(input_path) / TRAIN_FILE, with_steps_per_bar=True)
        eval_path = Path(input_path) / EVAL_FILE
        eval_, eval_bars = read_sequences(eval_path, with_steps_per_bar=True) if eval_path.is_file() else ([], [])
        return train, eval_, data_vocab, (train_bars, eval_bars)
    data = corpus_lib.encode_corpus(input_path, config, corpus_lib.Reading(eval_ratio, progress=progress), vocab)
    corpus = data.corpus
    if not corpus.train:
        raise TrainingError(f"{input_path or corpus_lib.default_input()}: no usable melody "
                            f"({len(corpus.results)} files read)")
    skipped = [r for r in corpus.results if r.error]
    log(f"read {len(corpus.results)} files in {corpus.elapsed_s:.1f} s: {len(corpus.train)} train / "
        f"{len(corpus.eval)} eval melodies, {len(skipped)} files skipped")
    for r in skipped[:10]:
        log(f"  skipped {r.path}: {r.error}")
    return ([np.asarray(s, np.int32) for s in data.train], [np.asarray(s, np.int32) for s in data.eval], data.vocab,
            (data.train_steps_per_bar, data.eval_steps_per_bar))


def _meter_inputs(config: ModelConfig, vocab: Vocabulary, bars, log=print):
    """make_dataset's `meter` (`MeterInputs`, with the bar lookback when the config asks) for each split, or
    (None, None) when the config has no meter features.

    A dataset written before meter features carries no steps_per_bar: those melodies are taken as 4/4.
    """
    if not config.meter_features:
        return None, None
    four_four = 4 * vocab.steps_per_quarter
    missing = sum(b is None for split in bars for b in split)
    if missing:
        log(f"{missing} melodies carry no steps_per_bar (a dataset written before meter features): taken as 4/4 "
            f"({four_four} steps a bar); rebuild the dataset to use their meters")
    durations = vocab.durations()
    return tuple(MeterInputs([four_four if b is None else b for b in split], durations, config.bar_lookback)
                 for split in bars)


# --- model pieces

def _make_optimizer(config: ModelConfig):
    import keras

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


def _step_sums(tf, logits, targets, is_note, weights=None):
    """Sums over a batch: nats of the targets, correct predictions, bits and count of pitched-note targets.

    `weights` (the lanes' 0 on padding) leave out the targets they zero; None counts every target.
    """
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), targets), tf.float32)
    note = tf.gather(is_note, targets)
    if weights is None:
        weights = tf.ones_like(nll)
    nll, correct, note = nll * weights, correct * weights, note * weights
    return nll, {"nll": tf.reduce_sum(nll), "correct": tf.reduce_sum(correct),
                 "note_nll": tf.reduce_sum(nll * note), "notes": tf.reduce_sum(note),
                 "tokens": tf.reduce_sum(weights)}


def summarize(sums: dict) -> dict:
    """loss, perplexity, accuracy, bits per token and bits per note from summed counts."""
    tokens = max(sums["tokens"], 1.0)
    loss = sums["nll"] / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": sums["correct"] / tokens,
            "bits_per_token": loss / numpy_model.LN2,
            "bits_per_note": sums["nll"] / numpy_model.LN2 / max(sums["notes"], 1.0)}


class _Trainer:
    """Builds the compiled train and eval steps of one model under one strategy.

    With `config.carry_state`, batches are (inputs, targets, weights, reset) lanes of whole melodies
    (`dataset.Batching`), and the LSTM states leaving one batch enter the next (zeroed where `reset` is 1): each
    replica keeps its own rows' states in sync-on-read variables, one set for training and one for evaluation.
    """

    def __init__(self, tf, strategy, model, optimizer, config, vocab, carry_model=None):
        self.tf, self.strategy, self.model, self.optimizer, self.config = tf, strategy, model, optimizer, config
        self.carry_model = carry_model
        if carry_model is not None:
            rows = config.batch_size // strategy.num_replicas_in_sync
            self.states = {kind: _state_variables(tf, rows, config.rnn_layer_sizes, kind) for kind in ("train", "eval")}
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.global_tokens = float(config.batch_size * config.window_size)
        self.is_note = tf.constant((vocab.pitches() >= 0).astype(np.float32))
        self.mixed = config.mixed_precision
        self.scheduled = bool(config.lr_warmup_steps) or config.lr_decay != "none"  # else a constant, as ever
        self.train_step = tf.function(self._train_step, jit_compile=None)
        self.eval_step = tf.function(self._eval_step)
        if config.jit_compile:
            self._replica_train = tf.function(self._replica_train, jit_compile=True)

    @property
    def step(self) -> int:
        return int(self.step_var.numpy())

    def _logits(self, batch, training: bool):
        """(logits, weights) of one replica's batch; with carried states, reads and updates them."""
        if self.carry_model is None:
            return self.model(batch[0], training=training), None
        x, _, weights, reset = batch
        keep = (1.0 - reset)[:, None]
        variables = self.states["train" if training else "eval"]
        logits, final = self.carry_model([x, [v * keep for v in variables]], training=training)
        for variable, value in zip(variables, final):
            variable.assign(value)  # a new starting point, not a path for gradients: truncated BPTT
        return logits, weights

    def _replica_train(self, *batch):
        tf = self.tf
        y = batch[1]
        with tf.GradientTape() as tape:
            logits, weights = self._logits(batch, training=True)
            nll, sums = _step_sums(tf, logits, y, self.is_note, weights)
            loss = tf.reduce_sum(nll) / self.global_tokens  # global mean: replicas' gradients add up exactly
            scaled = self.optimizer.scale_loss(loss) if self.mixed else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return sums

    SUM_KEYS = ("nll", "correct", "note_nll", "notes", "tokens")

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
        logits, weights = self._logits(batch, training=False)
        return _step_sums(self.tf, logits, batch[1], self.is_note, weights)[1]

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
    import keras

    if config.carry_state and config.batch_size % strategy.num_replicas_in_sync:
        raise TrainingError(f"batch_size {config.batch_size} does not split over "
                            f"{strategy.num_replicas_in_sync} replicas")
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    with strategy.scope():  # everything that creates variables
        model, carry_model = (build_model(config, len(vocab), carry_state=True) if config.carry_state
                              else (build_model(config, len(vocab)), None))
        optimizer = _make_optimizer(config)
        optimizer.build(model.trainable_variables)
        trainer = _Trainer(tf, strategy, model, optimizer, config, vocab, carry_model)
    keras.mixed_precision.set_global_policy("float32")
    return trainer


def _write_summaries(tf, writer, step: int, metrics: dict) -> None:
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
    writer.flush()


def export_weights(model, run: RunDir, step: int, config: ModelConfig) -> None:
    numpy_model.save_weights(numpy_model.weights_from_keras(model), run.weights_file,
                             {"step": step, "config": config.name})


class _StopSignals:
    """SIGINT and SIGTERM during `train_and_evaluate`: raised as KeyboardInterrupt, and remembered.

    The flag is the safety net: a KeyboardInterrupt raised inside library code can be swallowed there (a Cython
    module loaded by TensorFlow's import writes it off as "unraisable"), so the loop checks the flag as well.

    Inside `deferred()` (TensorFlow at work: building, compiled calls, checkpoints, evaluation) a signal is only
    remembered: Python runs its handler wherever TensorFlow's C++ code calls back into Python, and an exception
    raised there can crash the process (a segmentation fault while a checkpoint was written). The loop then stops
    at its next check, between two compiled calls or two eval batches; the command's watchdog (cli.flags) ends it
    if that takes longer than its grace period.
    """

    def __init__(self):
        self.requested = False
        self._deferring = 0
        self._previous = {}

    def __enter__(self):
        self.requested = False
        self._deferring = 0
        if _main_thread():  # only the main thread may set handlers; elsewhere Ctrl-C is the caller's business
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _on_signal(self, signum, frame):
        self.requested = True
        if not self._deferring:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        """Signals only remembered while TensorFlow works; KeyboardInterrupt at the end if one came."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        self.check()

    def check(self) -> None:
        """Raises KeyboardInterrupt if a signal came, even if its KeyboardInterrupt was swallowed."""
        if self.requested:
            raise KeyboardInterrupt


_STOP = _StopSignals()


def _stops_on_signals(fn):
    """Runs `fn` with SIGINT and SIGTERM handled by _STOP (restored afterwards)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with _STOP:
            return fn(*args, **kwargs)

    return wrapped


@_stops_on_signals
def train_and_evaluate(config: ModelConfig, run_dir, input_path=None,
                       options: TrainOptions | None = None) -> TrainResult:
    """Trains `config` into `run_dir` until `options.num_training_steps` (total, across resumes), evaluating as it goes.

    Re-running on the same run dir resumes from its latest checkpoint (step and optimizer state).

    Args:
      config: the model and its optimizer settings.
      run_dir: where config, vocabulary, data, checkpoints, logs and weights go.
      input_path: a dataset folder, MIDI folder/glob or TFRecord; None on a resume reuses the run dir's data.
      options: how to train (steps, frequencies, seed, strategy, ...); `TrainOptions()` when None.

    Raises:
      RunDirError: run dir in use, or made with an incompatible config or vocabulary.
      TrainingError: NaN/inf loss (the last good checkpoint is kept), no data.
      TrainingInterrupted: Ctrl-C or SIGTERM; a checkpoint was saved first.
    """
    opts = options or TrainOptions()
    tf = import_tensorflow()
    _STOP.check()  # a Ctrl-C during the import may have been swallowed there
    dist = _start_strategy(config, opts)  # threads and strategy come before any other TensorFlow op
    chief = _is_chief(dist)
    run = RunDir(run_dir)
    run.check_compatible(config)
    # Only the chief locks and writes the run dir; the other workers of a multi-worker job read it.
    with run.lock() if chief else contextlib.nullcontext():
        # --- data
        train_seqs, eval_seqs, vocab, bars = _prepare_data(run, config, input_path, opts, chief)
        resume_step = run.latest_checkpoint_step() or 0  # reseeds the shuffle: a resumed run sees new batches
        train_ds, eval_ds = _distribute_datasets(dist, config, train_seqs, eval_seqs, opts.seed + resume_step,
                                                 _meter_inputs(config, vocab, bars, opts.log), opts.log)
        with _STOP.deferred():
            # --- model
            trainer = _build_trainer(tf, dist, config, vocab, config.mixed_precision)
            # --- restore
            ckpts = _Checkpoints(trainer, run, opts.num_checkpoints, chief)
            resumed = ckpts.restore_latest(config.learning_rate, opts.log)
            # --- fit
            report = _Report(trainer, run, chief, opts)
            iterator = iter(train_ds)
            start_step, run_start = trainer.step, time.perf_counter()
            report.start(start_step)
            try:
                step, last_metrics, budget_reached = _fit(trainer, iterator, eval_ds, ckpts, report, opts)
                if step > start_step or not resumed:
                    ckpts.save()
            except KeyboardInterrupt:
                report.bar.close()
                step = trainer.step  # the stop lands between compiled calls: the graph's counter is the truth
                ckpts.save()
                raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved in {run.checkpoint_dir}, "
                                          "run the same command to resume") from None
            finally:
                report.close()
                ckpts.close()
        total_s = time.perf_counter() - run_start
        tokens_per_second = report.tokens_seen / max(total_s, 1e-9)
        if chief and opts.write_curve:
            _write_curve(run, opts.log)
        return TrainResult(step, last_metrics, str(run.path), tokens_per_second, dist.num_replicas_in_sync,
                           budget_reached)


def _start_strategy(config: ModelConfig, opts: TrainOptions):
    """Thread pools, the strategy and the seed; checks that the global batch splits over the replicas."""
    import keras

    configure_threads(*opts.threads)
    dist = make_strategy(opts.strategy)
    keras.utils.set_random_seed(opts.seed)
    replicas = dist.num_replicas_in_sync
    if config.batch_size % replicas:
        raise TrainingError(f"batch_size {config.batch_size} does not split over {replicas} replicas")
    if config.carry_state and isinstance(dist, _multi_worker_strategies()):
        # each worker would take every n-th batch, and a lane's windows would no longer follow one another
        raise TrainingError("carry_state=true trains lanes of whole melodies, which are not split across machines "
                            "yet; use carry_state=false with --strategy=multi_worker")
    if replicas > 1:
        opts.log(f"{type(dist).__name__} with {replicas} replicas; global batch {config.batch_size} "
                 f"= {config.batch_size // replicas} per replica")
    return dist


def _prepare_data(run: RunDir, config: ModelConfig, input_path, opts: TrainOptions, chief: bool):
    """(train, eval, vocab): the run dir's own data on a resume without input, else the input's.

    The chief writes the data, the vocabulary and the config into the run dir.
    """
    old_vocab = run.load_vocab() if run.vocab_file.is_file() else None
    if input_path is None and (run.data_dir / TRAIN_FILE).is_file():
        train_seqs, train_bars = read_sequences(run.data_dir / TRAIN_FILE, with_steps_per_bar=True)
        eval_seqs, eval_bars = (read_sequences(run.data_dir / EVAL_FILE, with_steps_per_bar=True)
                                if (run.data_dir / EVAL_FILE).is_file() else ([], []))
        bars = (train_bars, eval_bars)
        vocab = old_vocab
    else:
        train_seqs, eval_seqs, vocab, bars = load_training_data(input_path, config, opts.eval_ratio, old_vocab,
                                                          opts.progress, opts.log)
        run.check_compatible(config, vocab)
        if input_path is not None and run.latest_checkpoint_step() is not None:
            if _same_data(run, train_seqs, eval_seqs, bars):
                opts.log(f"resuming on --input={input_path}: the same melodies as the run's own data/ (leave "
                         "--input out to resume without reading the files again)")
            else:
                opts.log(f"resuming on --input={input_path}: the run dir's data/ is replaced by it (the best "
                         "checkpoint so far was chosen on the earlier eval data); leave --input out to resume on "
                         "the run's own data")
        if chief:
            write_sequences(train_seqs, run.data_dir / TRAIN_FILE, steps_per_bar=bars[0])
            write_sequences(eval_seqs, run.data_dir / EVAL_FILE, steps_per_bar=bars[1])
    if chief:
        if old_vocab is None:
            vocab.save(run.vocab_file)
        run.save_config(config)
    return train_seqs, eval_seqs, vocab, bars


def _same_data(run: RunDir, train_seqs, eval_seqs, bars) -> bool:
    """Whether the run dir's data/ holds exactly these melodies (ids and bar lengths), train and eval."""
    for name, seqs, seq_bars in ((TRAIN_FILE, train_seqs, bars[0]), (EVAL_FILE, eval_seqs, bars[1])):
        path = run.data_dir / name
        if not path.is_file():
            if seqs:
                return False
            continue
        old_seqs, old_bars = read_sequences(path, with_steps_per_bar=True)
        new_bars = [None] * len(seqs) if seq_bars is None else [None if b is None else int(b) for b in seq_bars]
        if len(old_seqs) != len(seqs) or old_bars != new_bars:
            return False
        if any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(old_seqs, seqs)):
            return False
    return True


def _distribute_datasets(dist, config: ModelConfig, train_seqs, eval_seqs, seed: int, meter=(None, None),
                         log=print):
    """(train, eval) distributed datasets: shuffled, repeated global batches; eval None without eval data, or
    (windows) when the eval melodies hold fewer tokens than one window (said in the log)."""
    train_ds = dist.experimental_distribute_dataset(make_dataset(train_seqs, _batching(config, seed=seed), meter[0]))
    if not eval_seqs:
        return train_ds, None
    tokens = sum(len(s) for s in eval_seqs)
    if not config.carry_state and num_windows(tokens, config.window_size, config.window_size) < config.batch_size:
        log(f"no evaluation: the {len(eval_seqs)} eval melodies hold {tokens} tokens, fewer than one batch of "
            f"{config.batch_size} windows of {config.window_size} (carry_state=true evaluates melodies of any "
            "length)")
        return train_ds, None
    return train_ds, dist.experimental_distribute_dataset(make_dataset(eval_seqs, _eval_batching(config), meter[1]))


def _batching(config: ModelConfig, seed: int) -> Batching:
    """Training batches as the config lays them out: shuffled, repeated."""
    return Batching(config.window_size, config.batch_size, config.window_stride, config.carry_state, seed=seed)


def _eval_batching(config: ModelConfig, drop_remainder: bool = True) -> Batching:
    """Evaluation batches: every window once, in order; lanes carry the state through each whole melody, as
    `melody_evaluate` scores it."""
    return Batching(config.window_size, config.batch_size, config.window_size, config.carry_state, shuffle=False,
                    repeat=False, drop_remainder=drop_remainder)


def _multi_worker_strategies() -> tuple:
    tf = import_tensorflow()
    return (tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.experimental.MultiWorkerMirroredStrategy)


def _fit(trainer: _Trainer, iterator, eval_ds, ckpts: _Checkpoints, report: _Report, opts: TrainOptions):
    """Compiled calls up to `opts.num_training_steps` or the time budget.

    Returns (the step reached, the last summary's metrics, whether the time budget stopped it).
    """
    tf = trainer.tf
    total, every_summary, every_save = opts.num_training_steps, opts.summary_frequency, opts.save_checkpoint_steps
    budget = _Budget(opts)
    step, last_metrics = trainer.step, {}
    while step < total:
        _STOP.check()
        # Run up to the next summary/checkpoint boundary in one call (at most 50 steps): fewer Python
        # round trips; a NaN is still caught before any checkpoint is written.
        n = min(total - step, every_summary - step % every_summary, every_save - step % every_save, 50)
        budget.call_starts()
        out = trainer.train_step(iterator, tf.constant(n), trainer.step_var, tf.constant(total, tf.int64),
                                 tf.constant(budget.fraction(), tf.float32)).numpy()
        step += n
        out_of_time = step < total and budget.next_call_overruns()
        batch = dict(zip(_Trainer.SUM_KEYS, (float(v) for v in out)))
        if not math.isfinite(batch["nll"]):
            raise TrainingError(f"loss became {batch['nll']} at step {step}; stopped. The last good "
                                f"checkpoint is kept in {ckpts.run.checkpoint_dir}; try a lower learning_rate")
        report.add(batch, n)
        if step % every_summary == 0 or step == total or out_of_time:
            last_metrics = report.summary(step, eval_ds)
            ckpts.keep_if_best(step, last_metrics["eval"])
        if out_of_time:  # the caller saves the checkpoint
            report.bar.close()
            opts.log(f"{budget.describe()} reached at step {step}; run the same command to resume (without --input "
                     "it resumes on the run's own data, without reading the files again)")
            return step, last_metrics, True
        if step % every_save == 0 and step < total:
            ckpts.save()
    return step, last_metrics, False


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes (the file-reading pool)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class _Budget:
    """The time budgets of a run: wall-clock minutes from `opts.started_at` (or the process start) and CPU minutes
    of this process and the workers it ran. A compiled call is not started when the last one's length says it would
    end past either."""

    def __init__(self, opts: TrainOptions):
        self.opts = opts
        self.started = opts.started_at if opts.started_at is not None else process_start_time()
        self.wall_s = opts.max_minutes * 60 if opts.max_minutes else None
        self.cpu_s = opts.max_cpu_minutes * 60 if opts.max_cpu_minutes else None
        self.call_wall = self.call_cpu = 0.0
        self.reached: list[str] = []

    def call_starts(self) -> None:
        self.call_wall, self.call_cpu = time.time(), _cpu_seconds()

    def fraction(self) -> float:
        """The share of the tighter budget spent (drives a learning-rate decay to the budget); 0 without one."""
        shares = [0.0]
        if self.wall_s:
            shares.append((time.time() - self.started) / self.wall_s)
        if self.cpu_s:
            shares.append(_cpu_seconds() / self.cpu_s)
        return max(shares)

    def next_call_overruns(self) -> bool:
        wall, cpu = time.time(), _cpu_seconds()
        self.reached = []  # the budgets the next call would overrun
        if self.wall_s and wall + (wall - self.call_wall) > self.started + self.wall_s:
            self.reached.append(f"{self.opts.max_minutes:g} min")
        if self.cpu_s and cpu + (cpu - self.call_cpu) > self.cpu_s:
            self.reached.append(f"{self.opts.max_cpu_minutes:g} CPU min")
        return bool(self.reached)

    def describe(self) -> str:
        return "time budget of " + " and ".join(self.reached)


class _Checkpoints:
    """A run's checkpoints: restore the latest, save one (the chief also exports the numpy weights), keep the best.

    The best (lowest eval bits/note) goes to run_dir/best/, outside the CheckpointManager's folder, so that
    `max_to_keep` never deletes it: `ckpt-N.*` (model and step), `weights.npz`, then `best.json` naming step N.
    """

    def __init__(self, trainer: _Trainer, run: RunDir, max_to_keep: int, chief: bool):
        tf = trainer.tf
        self.trainer, self.run, self.chief = trainer, run, chief
        # Non-chief workers of a multi-worker job save to a temporary place that is removed afterwards.
        self.ckpt_dir = run.checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="melody_worker_ckpt_"))
        self.checkpoint = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer, step=trainer.step_var)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.ckpt_dir), max_to_keep=max_to_keep)
        self.best_checkpoint = tf.train.Checkpoint(model=trainer.model, step=trainer.step_var)
        self.best_dir = run.best_dir if chief else self.ckpt_dir / "best"
        best = run.best()  # a resumed run must beat the best of its earlier runs
        self.best_bits = best.get("eval_bits_per_note") if best else None

    def restore_latest(self, learning_rate: float, log) -> str | None:
        """Restores the run's latest checkpoint, if any, and returns its path."""
        latest = self.trainer.tf.train.latest_checkpoint(str(self.run.checkpoint_dir))
        if latest:
            step = _restore(self.checkpoint, latest, self.trainer)
            # the optimizer state comes back, but a learning rate given with --hparams on this run wins
            _inner(self.trainer.optimizer).learning_rate.assign(learning_rate)
            log(f"resumed from {Path(latest).name} at step {step}")
        return latest

    def save(self) -> None:
        step = self.trainer.step
        self.manager.save(checkpoint_number=step)
        if self.chief:
            export_weights(self.trainer.model, self.run, step, self.trainer.config)

    def keep_if_best(self, step: int, eval_metrics: dict | None) -> bool:
        """After an eval: when its bits/note is the lowest so far, keeps this step's weights as the best."""
        bits = (eval_metrics or {}).get("bits_per_note")
        if bits is None or not math.isfinite(bits) or (self.best_bits is not None and not bits < self.best_bits):
            return False
        self.best_bits = bits
        name = f"ckpt-{step}"
        # every worker writes (saving may need them all); only the chief's copy is the run dir's
        self.best_checkpoint.write(str(self.best_dir / name))
        if self.chief:
            numpy_model.save_weights(numpy_model.weights_from_keras(self.trainer.model), self.run.best_weights_file,
                                     {"step": step, "config": self.trainer.config.name})
            atomic.write_json(self.run.best_file, {"step": step, "eval_bits_per_note": bits, "checkpoint": name})
        for old in self.best_dir.glob("ckpt-*"):  # only after best.json names the new one
            if old.name.split(".")[0] != name:
                old.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        if not self.chief:
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)


def _restore(checkpoint, path, trainer: _Trainer) -> int:
    """Loads checkpoint `path` (extra objects in it are fine) and returns its step."""
    checkpoint.restore(path).expect_partial()
    return trainer.step


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer wraps the real one


class _Report:
    """TensorBoard summaries, metrics.jsonl (chief only), the progress bar and the progress line."""

    def __init__(self, trainer: _Trainer, run: RunDir, chief: bool, opts: TrainOptions):
        tf = trainer.tf
        self.trainer, self.run, self.chief, self.opts = trainer, run, chief, opts
        self.writers = {k: tf.summary.create_file_writer(str(run.logs_dir / k)) for k in ("train", "eval")} \
            if chief else {}
        self.bar = None
        self.tokens_seen = 0.0  # targets trained on in this process (lanes: padding not counted)
        self._reset()

    def _reset(self) -> None:
        self.sums, self.tokens, self.interval_start = {}, 0.0, time.perf_counter()

    def start(self, step: int) -> None:
        """Opens the progress bar at `step` and starts the first interval."""
        self.bar = _progress_bar(self.opts.progress, step, self.opts.num_training_steps)
        self._reset()

    def add(self, batch: dict, num_steps: int) -> None:
        for k, v in batch.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.tokens += batch["tokens"]
        self.tokens_seen += batch["tokens"]
        self.bar.update(num_steps)

    def summary(self, step: int, eval_ds) -> dict:
        """Writes the interval's metrics, evaluates, writes the progress line; returns {"train": ..., "eval": ...}."""
        import keras

        tf = self.trainer.tf
        metrics = summarize(self.sums)
        metrics["tokens_per_second"] = self.tokens / max(time.perf_counter() - self.interval_start, 1e-9)
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(_inner(self.trainer.optimizer).learning_rate))
        _write_summaries(tf, self.writers.get("train"), step, metrics)
        eval_metrics = self.trainer.evaluate(eval_ds)
        if eval_metrics:
            _write_summaries(tf, self.writers.get("eval"), step, eval_metrics)
        if self.chief:
            _append_metrics(self.run, step, metrics, eval_metrics)
        self.bar.set_postfix_str(f"loss {metrics['loss']:.3f}, {metrics['tokens_per_second']:.0f} tok/s")
        if self.bar.disable:
            self.opts.log(_progress_line(step, self.opts.num_training_steps, metrics, eval_metrics))
        self._reset()
        return {"train": metrics, "eval": eval_metrics}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for w in self.writers.values():
            w.close()


def _progress_line(step: int, total: int, metrics: dict, eval_metrics: dict | None) -> str:
    return (f"step {step}/{total} loss {metrics['loss']:.3f} "
            f"bits/note {metrics['bits_per_note']:.2f} acc {metrics['accuracy']:.3f}"
            + (f" | eval loss {eval_metrics['loss']:.3f} bits/note {eval_metrics['bits_per_note']:.2f}"
               if eval_metrics else "")
            + f" | {metrics['tokens_per_second']:.0f} tokens/s")


def _write_curve(run: RunDir, log) -> None:
    try:
        from melody_plugin import render

        render.training_curve(run.metrics_file, run.curve_file)
    except Exception as e:  # a missing plot must never fail a finished training
        log(f"warning: no training curve ({type(e).__name__}: {e})")


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _progress_bar(progress, initial: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step",
                disable=None if progress is None else not progress, dynamic_ncols=True)


def _append_metrics(run: RunDir, step: int, train: dict, eval_: dict | None) -> None:
    # Appending one line is atomic enough for a log: a torn last line is skipped by the reader.
    with open(run.metrics_file, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "train": train, "eval": eval_}) + "\n")


def evaluate_checkpoints(run_dir, input_path=None, num_training_steps: int | None = None, timeout_s: float = 600,
                         log=print) -> dict | None:
    """The eval-only job: follows a training job's checkpoints and writes eval summaries for each new one.

    Stops when a checkpoint reaches `num_training_steps` or none arrives for `timeout_s` seconds.
    """
    tf = import_tensorflow()
    run = RunDir(run_dir)
    _wait_for_run(run, timeout_s)  # the training job may not have written its config yet
    config, vocab = run.load_config(), run.load_vocab()
    eval_seqs, eval_bars = _eval_data(run, config, vocab, input_path)
    # float32, as ever: the eval job does not take the training's mixed precision
    trainer = _build_trainer(tf, tf.distribute.get_strategy(), config, vocab, mixed_precision=False)
    eval_ds = make_dataset(eval_seqs, _eval_batching(config, drop_remainder=False),
                           _meter_inputs(config, vocab, ([], eval_bars), log)[1])
    writer = tf.summary.create_file_writer(str(run.logs_dir / "eval"))
    checkpoint = tf.train.Checkpoint(model=trainer.model, step=trainer.step_var)  # the optimizer state is not needed
    metrics = None
    for path in tf.train.checkpoints_iterator(str(run.checkpoint_dir), timeout=timeout_s):
        step = _restore(checkpoint, path, trainer)
        metrics = trainer.evaluate(eval_ds, max_batches=10_000)
        _write_summaries(tf, writer, step, metrics)
        log(f"eval step {step}: loss {metrics['loss']:.3f} bits/note {metrics['bits_per_note']:.2f} "
            f"acc {metrics['accuracy']:.3f}")
        if num_training_steps and step >= num_training_steps:
            break
    writer.close()
    return metrics


def _wait_for_run(run: RunDir, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not run.exists():
        if time.time() > deadline:
            raise TrainingError(f"{run.path}: no training job appeared within {timeout_s:.0f} s")
        time.sleep(1)


def _eval_data(run: RunDir, config: ModelConfig, vocab: Vocabulary, input_path) -> tuple[list, list]:
    """The eval job's (sequences, steps_per_bar): a dataset folder's eval split, every melody of other input, or
    the run's own."""
    if input_path and _is_dataset_dir(input_path):
        eval_seqs, bars = read_sequences(Path(input_path) / EVAL_FILE, with_steps_per_bar=True)
    elif input_path:  # every melody of the input is evaluation data
        _, melodies = corpus_lib.scoring_melodies(input_path, config, progress=False)
        eval_seqs, _ = corpus_lib.encode_all(melodies, vocab)
        bars = [m.steps_per_bar for m in melodies]
    elif (run.data_dir / EVAL_FILE).is_file():
        eval_seqs, bars = read_sequences(run.data_dir / EVAL_FILE, with_steps_per_bar=True)
    else:
        eval_seqs, bars = [], []
    if not eval_seqs:
        raise TrainingError(f"{run.path}: no evaluation data; pass --input or train with --eval_ratio > 0")
    return eval_seqs, bars
