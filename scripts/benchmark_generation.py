"""Generation time per melody of several models, measured interleaved in one run, as ratios to the first.

    python scripts/benchmark_generation.py --run_dir=before=OLD_MODEL@OLD_CHECKOUT --run_dir=now=NEW_MODEL

Each model writes --num_outputs melodies of --num_bars bars from nothing (one batch, the numpy sampler, its default
ending) and continues the example primer for 8 bars; --repeats rounds, the models taking turns in each round so a
busy machine slows them alike. Each model runs in a worker process of its own, on this checkout's code or, with
`@CHECKOUT`, on another checkout's (e.g. a `git worktree` of an older commit: its code and its model as they were).
Prints the median milliseconds per melody of each and its ratio to the first model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRIMER = ROOT / "melody_plugin" / "data" / "examples" / "seed.mid"

# One model's worker: loads it with its checkout's code, then times one round per line read ("seed"), answering
# a JSON line of milliseconds per melody for the tune and for the continuation.
WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.generate.sampler import SamplingOptions
gen = MelodyGenerator.from_run_dir(sys.argv[2])
primer = gen.primer_from_file(sys.argv[3])
num_bars, num_outputs = int(sys.argv[4]), int(sys.argv[5])

def per_melody_ms(primer, bars, seed):
    start = time.perf_counter()
    gen.generate(primer, num_bars=bars, num_outputs=num_outputs, sampling=SamplingOptions(seed=seed))
    return (time.perf_counter() - start) * 1000 / num_outputs

import melody_plugin
print(json.dumps(["ready", melody_plugin.__file__]), flush=True)
for line in sys.stdin:
    seed = int(line)
    print(json.dumps([per_melody_ms(None, num_bars, seed), per_melody_ms(primer, 8, seed)]), flush=True)
"""


def start_worker(value: str, num_bars: int, num_outputs: int) -> tuple[str, subprocess.Popen]:
    """NAME=PATH[@CHECKOUT] -> (name, its worker, ready)."""
    name, _, spec = value.partition("=")
    path, _, checkout = spec.partition("@")
    code = Path(checkout or ROOT).resolve()
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(code), str(Path(path).resolve()), str(PRIMER),
                               str(num_bars), str(num_outputs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=code)
    ready = json.loads(worker.stdout.readline() or "null")
    if not ready or not Path(ready[1]).resolve().is_relative_to(code):
        sys.exit(f"{name}: the worker for {path} did not start on the code in {code} ({ready})")
    return name, worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", action="append", required=True, metavar="NAME=PATH[@CHECKOUT]",
                        help="a model (run dir or model folder), optionally run with another checkout's code")
    parser.add_argument("--num_bars", type=int, default=16)
    parser.add_argument("--num_outputs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    models = [start_worker(value, args.num_bars, args.num_outputs) for value in args.run_dir]
    times = {name: {"tune": [], "continuation": []} for name, _ in models}
    for r in range(args.repeats + 1):  # round 0 warms up
        for name, worker in models:
            worker.stdin.write(f"{r}\n")
            worker.stdin.flush()
            tune, cont = json.loads(worker.stdout.readline())
            if r:
                times[name]["tune"].append(tune)
                times[name]["continuation"].append(cont)
    for _, worker in models:
        worker.stdin.close()
        worker.wait()
    first = models[0][0]
    print(f"| model | ms per {args.num_bars}-bar tune | vs {first} | ms per 8-bar continuation | vs {first} |")
    print("|---|---|---|---|---|")
    base = {kind: statistics.median(times[first][kind]) for kind in ("tune", "continuation")}
    for name, _ in models:
        tune, cont = (statistics.median(times[name][kind]) for kind in ("tune", "continuation"))
        print(f"| {name} | {tune:.1f} | {tune / base['tune']:.2f} | {cont:.1f} | {cont / base['continuation']:.2f} |")


if __name__ == "__main__":
    main()
