"""Generation time per melody of several models, measured interleaved in one run, as ratios to the first.

    python scripts/benchmark_generation.py --run_dir=before=OLD_RUN_DIR --run_dir=now=melody_plugin/data/default_model

Each model writes --num_outputs melodies of --num_bars bars from nothing (one batch, the numpy sampler, its default
ending) and continues the example primer for 8 bars; --repeats rounds, the models taking turns in each round so a
busy machine slows them alike. Prints the median milliseconds per melody of each and its ratio to the first model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from melody_plugin.generate.generator import EXAMPLE_PRIMER, MelodyGenerator  # noqa: E402
from melody_plugin.generate.sampler import SamplingOptions  # noqa: E402


def per_melody_ms(generator: MelodyGenerator, primer, num_bars: int, num_outputs: int, seed: int) -> float:
    start = time.perf_counter()
    generator.generate(primer, num_bars=num_bars, num_outputs=num_outputs, sampling=SamplingOptions(seed=seed))
    return (time.perf_counter() - start) * 1000 / num_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--num_bars", type=int, default=16)
    parser.add_argument("--num_outputs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    models = []
    for value in args.run_dir:
        name, _, path = value.partition("=")
        models.append((name, MelodyGenerator.from_run_dir(path)))
    primer = models[0][1].primer_from_file(EXAMPLE_PRIMER)
    times = {name: {"tune": [], "continuation": []} for name, _ in models}
    for r in range(args.repeats + 1):  # round 0 warms up
        for name, gen in models:
            tune = per_melody_ms(gen, None, args.num_bars, args.num_outputs, r)
            cont = per_melody_ms(gen, primer, 8, args.num_outputs, r)
            if r:
                times[name]["tune"].append(tune)
                times[name]["continuation"].append(cont)
    first = models[0][0]
    print(f"| model | ms per {args.num_bars}-bar tune | vs {first} | ms per 8-bar continuation | vs {first} |")
    print("|---|---|---|---|---|")
    base = {kind: statistics.median(times[first][kind]) for kind in ("tune", "continuation")}
    for name, _ in models:
        tune, cont = (statistics.median(times[name][kind]) for kind in ("tune", "continuation"))
        print(f"| {name} | {tune:.1f} | {tune / base['tune']:.2f} | {cont:.1f} | {cont / base['continuation']:.2f} |")


if __name__ == "__main__":
    main()
