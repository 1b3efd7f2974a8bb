"""Time and CPU budgets of a training run (`--max_minutes`, `--max_cpu_minutes`)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from melody_plugin.train.options import TrainOptions

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
