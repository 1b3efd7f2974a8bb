"""The key of a melody: Krumhansl-Schmuckler on its duration-weighted pitch classes."""

from __future__ import annotations

import math


def estimate_key(notes, default=(0, False)) -> tuple[int, bool]:
    """Krumhansl-Schmuckler key estimate from duration-weighted pitch classes: (tonic, minor)."""
    major = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
    minor = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
    hist = [0.0] * 12
    for n in notes:
        if not n.is_rest:
            hist[n.pitch % 12] += n.duration_steps
    if not any(hist):
        return default

    def corr(xs, ys):
        mx, my = sum(xs) / 12, sum(ys) / 12
        num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        den = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
        return num / den if den else 0.0

    best = max(((corr(hist, profile[-t:] + profile[:-t]), t, is_minor)
                for is_minor, profile in ((False, major), (True, minor)) for t in range(12)))
    return best[1], best[2]
