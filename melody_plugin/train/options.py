"""What a training run is asked for (`TrainOptions`) and what it returns (`TrainResult`), and its errors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from melody_plugin.errors import Interrupted, MelodyPluginError


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
