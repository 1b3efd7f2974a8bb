"""Training: `train_and_evaluate` and the eval-only job (`evaluate_checkpoints`)."""

# the names of the old module melody_plugin.train, where users import them from
from melody_plugin.runtime.signals import _STOP, _main_thread, _stops_on_signals, _StopSignals  # noqa: F401
from melody_plugin.train.budget import _IMPORT_TIME, _Budget, _cpu_seconds, process_start_time  # noqa: F401
from melody_plugin.train.checkpoints import _Checkpoints, _restore, export_weights  # noqa: F401
from melody_plugin.train.data import (  # noqa: F401
    _batching,
    _distribute_datasets,
    _eval_batching,
    _is_dataset_dir,
    _meter_inputs,
    _prepare_data,
    _same_data,
    load_training_data,
)
from melody_plugin.train.distribute import (  # noqa: F401
    STRATEGIES,
    _is_chief,
    _multi_worker_strategies,
    _start_strategy,
    configure_cpu_devices,
    configure_threads,
    make_strategy,
)
from melody_plugin.train.eval_job import _eval_data, _wait_for_run, evaluate_checkpoints  # noqa: F401
from melody_plugin.train.loop import _fit, train_and_evaluate  # noqa: F401
from melody_plugin.train.options import TrainingError, TrainingInterrupted, TrainOptions, TrainResult  # noqa: F401
from melody_plugin.train.report import (  # noqa: F401
    _append_metrics,
    _progress_bar,
    _progress_line,
    _Report,
    _write_curve,
    _write_summaries,
)
from melody_plugin.train.step import (  # noqa: F401
    _build_trainer,
    _inner,
    _make_optimizer,
    _state_variables,
    _step_sums,
    _Trainer,
    scheduled_learning_rate,
    summarize,
)
