"""Training: `train_and_evaluate` and the eval-only job (`evaluate_checkpoints`)."""

# where `melody_plugin.train.<name>` found them before the training step became a folder
from melody_plugin.train.budget import process_start_time  # noqa: F401
from melody_plugin.train.checkpoints import export_weights  # noqa: F401
from melody_plugin.train.data import load_training_data  # noqa: F401
from melody_plugin.train.distribute import STRATEGIES, configure_cpu_devices, configure_threads, make_strategy  # noqa
from melody_plugin.train.eval_job import evaluate_checkpoints  # noqa: F401
from melody_plugin.train.loop import train_and_evaluate  # noqa: F401
from melody_plugin.train.options import TrainingError, TrainingInterrupted, TrainOptions, TrainResult  # noqa: F401
from melody_plugin.train.step import scheduled_learning_rate, summarize  # noqa: F401
