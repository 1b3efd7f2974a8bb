"""Where training runs: CPU devices and threads, and the `tf.distribute` strategy."""

from __future__ import annotations

import os

from melody_plugin.model.registry import ModelConfig
from melody_plugin.runtime.quiet import import_tensorflow, import_keras
from melody_plugin.train.options import TrainingError, TrainOptions

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def configure_cpu_devices(num_cpu_devices: int) -> None:
    """Splits the CPU into N logical devices so MirroredStrategy can run N replicas on a CPU-only machine."""
    tf = import_tensorflow()
    if num_cpu_devices and num_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
        except RuntimeError:
            pass  # already initialised (a second run in one process keeps the first split)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> tuple[int, int]:
    """TensorFlow's thread pools; 0 = auto: on a CPU-only machine one thread per op and two ops at a time (one when
    the process may use one core only).

    These LSTMs are small: splitting one op over both cores costs more in hand-offs than it gains (measured on
    2 cores: 35k -> 47k tokens/s for char_lstm, 27k -> 42k for folk_lstm). Must run before TensorFlow starts.
    """
    tf = import_tensorflow()
    if not intra_op and not inter_op and not tf.config.list_physical_devices("GPU"):
        intra_op, inter_op = 1, min(2, usable_cores())
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


def _start_strategy(config: ModelConfig, opts: TrainOptions):
    """Thread pools, the strategy and the seed; checks that the global batch splits over the replicas."""
    keras = import_keras()

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


def _multi_worker_strategies() -> tuple:
    tf = import_tensorflow()
    return (tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.experimental.MultiWorkerMirroredStrategy)
