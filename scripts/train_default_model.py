"""Trains the small model shipped inside the package (melody_plugin/data/default_model/).

The shipped model was made with exactly this command (the defaults: folk_lookback with a cosine learning-rate decay
over the run and dropout 0.2, 10000 steps, seed 0, 10% of the files held out, an evaluation every 1000 steps):
    python scripts/train_default_model.py --folk ../shared/data/folk
It trains the config on the folk tunes in a scratch run dir, then copies config.json, vocab.json and the best
checkpoint's weights.npz (the lowest eval bits/note; about 1.5 MB) into the package. Reproducible: the same data,
reading code, config, steps and seed give the same vocabulary, and the same weights on a CPU-only machine (one
thread per op; a GPU's kernels differ). Its held-out figures: docs/benchmarks.md.
Reading the folk set takes minutes; on a heavily loaded machine a few long tunes can pass the reader's 20 s limit
and be skipped, which changes the vocabulary: check that the "read ... files" line reports 1 file skipped.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10000  # the shipped model's: weights.npz's metadata names its step and config
# The preset's own decay and dropout, named here too: a long run (about 15 CPU-minutes) wants the learning rate
# decayed to its end and dropout 0.2.
HPARAMS = "lr_decay=cosine,dropout_rate=0.2"
EVAL_RATIO = 0.1
sys.path.insert(0, str(ROOT))

from melody_plugin.model import registry
from melody_plugin.model.rundir import RunDir
from melody_plugin.train.loop import train_and_evaluate
from melody_plugin.train.options import TrainOptions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folk", default=str(ROOT.parent / "shared" / "data" / "folk"))
    parser.add_argument("--config", default="folk_lookback")
    parser.add_argument("--hparams", default=HPARAMS)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run_dir", default=None, help="keep the scratch run dir here (default: a temp dir)")
    args = parser.parse_args()
    config = registry.with_hparams(registry.get_config(args.config), args.hparams)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="default_model_"))
    start = time.perf_counter()
    result = train_and_evaluate(config, run_dir, args.folk, TrainOptions(
        num_training_steps=args.steps, eval_ratio=EVAL_RATIO, summary_frequency=1000, save_checkpoint_steps=5000,
        seed=args.seed, progress=False))
    run = RunDir(run_dir)
    out = ROOT / "melody_plugin" / "data" / "default_model"
    out.mkdir(parents=True, exist_ok=True)
    best_weights = run.best_weights_file  # the checkpoint with the lowest eval bits/note
    for f in (run.config_file, run.vocab_file, best_weights if best_weights.is_file() else run.weights_file):
        shutil.copy(f, out / f.name)
    size = sum((out / f.name).stat().st_size for f in (run.config_file, run.vocab_file, run.weights_file))
    print(f"trained {args.config} for {result.step} steps in {time.perf_counter() - start:.0f} s "
          f"({result.tokens_per_second:.0f} tokens/s); eval: {result.metrics.get('eval')}")
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
