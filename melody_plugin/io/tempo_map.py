"""A NoteSequence's tempo map: seconds <-> quarter notes (the MIDI reader and the grid both count in quarters)."""

from __future__ import annotations

import bisect
import math


def round_half_up(x: float) -> int:
    """x rounded to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5)


class TempoMap:
    """Seconds <-> quarter notes through a NoteSequence's tempo events (120 qpm before the first, as in MIDI)."""

    def __init__(self, tempos=()):
        events: dict[float, float] = {}
        for t in sorted(tempos, key=lambda t: t.time):
            if t.qpm > 0 and math.isfinite(t.qpm):
                events[max(t.time, 0.0)] = t.qpm  # several at one time: the last wins
        if 0.0 not in events:
            events[0.0] = 120.0
        self.times = sorted(events)
        self.qpms = [events[t] for t in self.times]
        self.quarters = [0.0]
        for i in range(1, len(self.times)):
            self.quarters.append(self.quarters[-1] + (self.times[i] - self.times[i - 1]) * self.qpms[i - 1] / 60.0)

    def quarters_at(self, seconds: float) -> float:
        i = max(bisect.bisect_right(self.times, seconds) - 1, 0)
        return self.quarters[i] + (seconds - self.times[i]) * self.qpms[i] / 60.0

    def seconds_at(self, quarters: float) -> float:
        i = max(bisect.bisect_right(self.quarters, quarters) - 1, 0)
        return self.times[i] + (quarters - self.quarters[i]) * 60.0 / self.qpms[i]

    def tempo_steps(self, steps_per_quarter: int) -> list[tuple[int, float]]:
        """(grid step, qpm) of each tempo event, nearest step; several on one step: the last wins."""
        by_step: dict[int, float] = {}
        for q, qpm in zip(self.quarters, self.qpms):
            by_step[round_half_up(q * steps_per_quarter)] = qpm
        return sorted(by_step.items())
