"""How close training comes to the CPU's arithmetic limit: tokens/s and GFLOP/s against one core's matmul peak.

    python scripts/benchmark_throughput.py                       # folk_lookback and folk_lstm on the folk set
    python scripts/benchmark_throughput.py --configs=folk_lookback --steps=150
    git worktree add /tmp/before 027c1be    # and the code before a change, measured in the same run:
    python scripts/benchmark_throughput.py --configs=folk_lookback --one_core --baseline_code=/tmp/before

For each config, steady-state training tokens/s (real tokens, the lanes' padding excluded; the first summary
interval, with tracing and warm-up, left out; no evaluation, no checkpoint inside the timed steps) on one core (the
process pinned to CPU 0) and on all cores, each in a process of its own. FLOPs per token are 3 x forward, forward =
sum over LSTM layers of 2*4*h*(in + h) + 2*h_last*V (embeddings counted as free), read off the trained weights'
shapes. The peak is one core's: the best of 5 timed 2048x2048 float32 `tf.matmul` on one thread after a warm-up,
measured in the same run, so every figure is a ratio to a limit measured beside it. `--baseline_code=DIR` also
measures each setup with the melody_plugin source tree in DIR (another checkout), one after the other.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
MATMUL_N = 2048


def matmul_peak_gflops() -> float:
    """One core's float32 matmul rate: best of 5 timed 2048x2048 products on one thread, after a warm-up."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from melody_plugin.runtime.quiet import import_tensorflow

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    a = tf.random.stateless_uniform((MATMUL_N, MATMUL_N), seed=(1, 2))
    b = tf.random.stateless_uniform((MATMUL_N, MATMUL_N), seed=(3, 4))
    tf.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_N ** 3 / best / 1e9


def flops_per_token(run_dir: Path) -> float:
    """3 x the forward FLOPs of one token, from the weights' shapes."""
    from melody_plugin.model.numpy_model import load_weights

    weights, _ = load_weights(run_dir / "weights.npz")
    forward = 0.0
    layer = 0
    while f"lstm_{layer}/kernel" in weights:
        inputs, gates = weights[f"lstm_{layer}/kernel"].shape  # (in, 4h)
        units = gates // 4
        forward += 2 * 4 * units * (inputs + units)
        layer += 1
    units, vocab = weights["logits/kernel"].shape
    forward += 2 * units * vocab
    return 3 * forward


def train_worker(config_name: str, data: str, steps: int, cores: int, intra: int, out: str) -> None:
    """One measurement, in its own process: train `steps` steps, report the steady tokens/s."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    from melody_plugin.model import registry
    from melody_plugin.train.loop import train_and_evaluate
    from melody_plugin.train.options import TrainOptions

    run_dir = Path(tempfile.mkdtemp(prefix="throughput_"))
    summaries = 5
    train_and_evaluate(registry.get_config(config_name), run_dir, data, TrainOptions(
        num_training_steps=steps, eval_ratio=0.0, summary_frequency=max(steps // summaries, 1),
        save_checkpoint_steps=10 * steps, threads=(intra, 0), progress=False, write_curve=False,
        log=lambda *a: None))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = statistics.median(r["train"]["tokens_per_second"] for r in rows[1:])  # the first holds the tracing
    Path(out).write_text(json.dumps({"tokens_per_second": steady, "flops_per_token": flops_per_token(run_dir)}))


def measure(config_name: str, data: Path, steps: int, cores: int, intra: int, work: Path, code: str = "") -> dict:
    out = work / f"{config_name}_{cores}_{intra}{'_base' if code else ''}.json"
    subprocess.run([sys.executable, __file__, "--worker", config_name, str(data), str(steps), str(cores), str(intra),
                    str(out), code], check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return json.loads(out.read_text())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        config_name, data, steps, cores, intra, out, code = sys.argv[2:9]
        if code:
            sys.path.insert(0, code)  # the baseline's melody_plugin, before this tree's
        return train_worker(config_name, data, int(steps), int(cores), int(intra), out)
    if len(sys.argv) > 1 and sys.argv[1] == "--peak":
        return print(json.dumps(matmul_peak_gflops()))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared" / "data" / "folk"),
                        help="a folder of MIDI files to train on (default: %(default)s)")
    parser.add_argument("--configs", default="folk_lookback,folk_lstm",
                        help="comma-separated config names (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=0, help="training steps per measurement (default: per config)")
    parser.add_argument("--one_core", action="store_true", help="only the one-core measurement")
    parser.add_argument("--baseline_code", default="", help="another source tree to measure beside this one")
    args = parser.parse_args()
    all_cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        peak = json.loads(subprocess.run([sys.executable, __file__, "--peak"], check=True, capture_output=True,
                                         text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout)
        print(f"one core's float32 matmul peak ({MATMUL_N}x{MATMUL_N}, best of 5): {peak:.1f} GFLOP/s", flush=True)
        print("\n| code | config | cores | intra-op threads | tokens/s | FLOPs/token | GFLOP/s | of one core's peak |")
        print("|---|---|---|---|---|---|---|---|")
        codes = ([("baseline", args.baseline_code)] if args.baseline_code else []) + [("this tree", "")]
        setups = [(1, 0)] + ([] if args.one_core else
                             [(all_cores, 0)] + ([(all_cores, all_cores)] if all_cores > 1 else []))
        for name in args.configs.split(","):
            data = work / f"data_{name}"  # each config's own tokens (an end token or not)
            subprocess.run([str(BIN / "melody_create_dataset"), f"--input={args.input}", f"--output_dir={data}",
                            f"--config={name}", "--progress=false"], check=True, capture_output=True)
            steps = args.steps or (250 if name == "folk_lookback" else 100)
            for (cores, intra), (label, code) in itertools.product(setups, codes):
                r = measure(name, data, steps, cores, intra, work, code)
                gflops = r["tokens_per_second"] * r["flops_per_token"] / 1e9
                print(f"| {label} | {name} | {cores} | {intra or 'auto'} | {r['tokens_per_second']:,.0f} | "
                      f"{r['flops_per_token'] / 1e6:.2f} M | {gflops:.1f} | {gflops / peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
