"""Training: `train_and_evaluate` and the eval-only job (`evaluate_checkpoints`)."""

# where `melody_plugin.train.<name>` found them before the training step became a folder
from melody_plugin.train.distribute import STRATEGIES, configure_cpu_devices, configure_threads, make_strategy  # noqa
from melody_plugin.train.eval_job import evaluate_checkpoints  # noqa: F401
from melody_plugin.train.loop import train_and_evaluate  # noqa: F401
from melody_plugin.train.options import TrainingError, TrainingInterrupted, TrainOptions, TrainResult  # noqa: F401
