"""Measures what users feel, each figure with a baseline measured in the same run. Takes 2-4 minutes.

    python scripts/benchmark.py            # uses the example corpus shipped in the package
    python scripts/benchmark.py --input ../shared/data/folk
    python scripts/benchmark.py --only_startup [--magenta_bundle basic_rnn.mag]   # about 30 s

Prints: training tokens/s of char_lstm and folk_lstm (our compiled train step) against Keras `model.fit` at the
tutorial's batch 16; generation ms per melody (10 x 16 bars, batched) against the naive loop that re-runs the
Keras model on the growing sequence; wall time of `melody_generate --help` and of a whole generation (10 x 8 bars
from the example primer) against bare Python start-up and the model load, optionally against Magenta's
melody_rnn_generate; peak memory. Targets (2 CPU cores): training >= 30k tokens/s for char_lstm, generation <= 10
ms per melody, a whole melody_generate within 0.5 s of `python -c pass` + the model load.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def wall(cmd, repeats=3, env=None) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(repeats):
        times.append(wall_once(cmd, env))
    return statistics.median(times)


def wall_once(cmd, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def interleaved_walls(commands: dict, repeats=5) -> dict:
    """Median wall time of each command, run in turn `repeats` times (a busy spell on a shared machine then
    slows every command alike, and the differences stay fair)."""
    times = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (cmd, env) in commands.items():
            times[name].append(wall_once(cmd, env))
    return {name: statistics.median(t) for name, t in times.items()}


STARTUP_TARGET_S = 0.5


def startup(out_dir, magenta_bundle=None, repeats=5) -> list[str]:
    """A whole `melody_generate` (10 x 8 bars from the example primer) against `python -c pass` and the model
    load alone, medians of `repeats` interleaved runs; Magenta's melody_rnn_generate on the same primer when a
    bundle (e.g. basic_rnn.mag) is given. Returns the report lines."""
    import os

    from melody_plugin.generate.generator import EXAMPLE_PRIMER

    generate = [str(BIN / "melody_generate"), f"--primer_midi={EXAMPLE_PRIMER}", "--num_outputs=10",
                "--num_bars=8", f"--output_dir={Path(out_dir) / 'startup'}", "--seed=1", "--overwrite"]
    commands = {
        "pass": ([sys.executable, "-c", "pass"], None),
        # what melody_generate does before sampling: import the generator, load the embedded model
        "load": ([sys.executable, "-c", "from melody_plugin.generator import MelodyGenerator; "
                  "MelodyGenerator.load()"], None),
        "generate": (generate, None),
    }
    if magenta_bundle:
        # 8 bars of 4/4 at Magenta's 4 steps per quarter, primer included (its num_steps counts the primer)
        commands["magenta"] = ([str(BIN / "melody_rnn_generate"), f"--bundle_file={magenta_bundle}",
                                "--config=basic_rnn", f"--primer_midi={EXAMPLE_PRIMER}", "--num_outputs=10",
                                "--num_steps=128", f"--output_dir={Path(out_dir) / 'magenta'}"],
                               dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2"))
    t = interleaved_walls(commands, repeats)
    load_alone = t["load"] - t["pass"]
    over = t["generate"] - (t["pass"] + load_alone)
    lines = [
        f"start-up (median of {repeats}, interleaved): python -c pass {t['pass']:.3f} s; model load alone "
        f"{load_alone:.3f} s (python -c import + load {t['load']:.3f} s, {t['load'] / t['pass']:.1f}x pass)",
        f"melody_generate 10 x 8 bars, whole command: {t['generate']:.3f} s ({t['generate'] / t['pass']:.1f}x "
        f"pass); command - (pass + load) = {over:.3f} s; target <= {STARTUP_TARGET_S} s: "
        f"{'MET' if over <= STARTUP_TARGET_S else 'NOT MET'}"]
    if magenta_bundle:
        lines.append(f"Magenta melody_rnn_generate 10 x 8 bars, same primer: {t['magenta']:.3f} s "
                     f"({t['magenta'] / t['generate']:.1f}x melody_generate)")
    return lines


def train_speed(config_name, data_dir, steps, run_root) -> dict:
    from melody_plugin.model import registry
    from melody_plugin.train.loop import train_and_evaluate
    from melody_plugin.train.options import TrainOptions

    config = registry.get_config(config_name)
    run_dir = Path(run_root) / config_name
    result = train_and_evaluate(config, run_dir, data_dir, TrainOptions(
        num_training_steps=steps, summary_frequency=max(steps // 5, 1), save_checkpoint_steps=steps * 10,
        progress=False, log=lambda *a: None, write_curve=False))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = statistics.median(r["train"]["tokens_per_second"] for r in rows[1:])  # skip tracing/warm-up
    notes_share = sum(r["train"]["bits_per_token"] / max(r["train"]["bits_per_note"], 1e-9) for r in rows) / len(rows)
    return {"tokens_per_second": steady, "notes_per_second": steady * notes_share, "steps": result.step,
            "batch": config.batch_size, "window": config.window_size}


def fit_baseline(data_dir, steps=300) -> float:
    """Keras model.fit on the tutorial's setting (3x64 LSTM, batch 16, window 8): tokens/s of the second epoch."""
    import keras
    import numpy as np

    from melody_plugin.model import registry
    from melody_plugin.model.keras_model import build_model
    from melody_plugin.tokens import records as dataset
    from melody_plugin.tokens.vocab import Vocabulary

    vocab = Vocabulary.load(Path(data_dir) / "vocab.json")
    stream = np.concatenate(dataset.read_ids(Path(data_dir) / dataset.TRAIN_FILE))
    n = steps * 16
    windows = np.lib.stride_tricks.sliding_window_view(stream, 9)[:n]
    x, y = windows[:, :-1], windows[:, 1:]
    model = build_model(registry.get_config("char_lstm"), len(vocab))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return len(x) * 8 / (time.perf_counter() - start)


def generation_speed(run_dir) -> dict:
    import numpy as np

    from melody_plugin.generate.generator import EXAMPLE_PRIMER, MelodyGenerator
    from melody_plugin.generate.sampler import SamplingOptions

    start = time.perf_counter()
    gen = MelodyGenerator.from_run_dir(run_dir)
    load_s = time.perf_counter() - start
    primer = gen.primer_from_file(EXAMPLE_PRIMER)
    gen.generate(primer, num_bars=16, num_outputs=10)  # warm-up (seed 0)
    times, tokens = [], 0
    for seed in range(5):
        start = time.perf_counter()
        outs = gen.generate(primer, num_bars=16, num_outputs=10, sampling=SamplingOptions(seed=seed))
        times.append(time.perf_counter() - start)
        tokens += sum(len(o.continuation_ids) for o in outs)
    per_melody_ms = statistics.median(times) / 10 * 1000
    gen.generate(primer, num_bars=16, num_outputs=10, sampling=SamplingOptions(backend="tf"))  # trace once
    tf_times = []
    for seed in range(5):
        start = time.perf_counter()
        gen.generate(primer, num_bars=16, num_outputs=10, sampling=SamplingOptions(seed=seed, backend="tf"))
        tf_times.append(time.perf_counter() - start)
    tf_ms = statistics.median(tf_times) / 10 * 1000
    # baseline: re-run the Keras model on the whole growing sequence for every new token (the tutorial's way)
    from melody_plugin.model.numpy_model import weights_to_keras_model
    from melody_plugin.tokens.vocab import START, lookback_features, meter_features, token_durations

    model = weights_to_keras_model(gen.config, gen.weights)
    seq = [START] + gen.vocab.encode(primer)
    rng = np.random.default_rng(0)

    def model_inputs(ids):  # the ids, and for a model with meter inputs its features, recomputed for the whole prefix
        if not gen.config.meter_features:
            return np.array([ids])
        steps = token_durations(ids, gen.vocab.durations())
        inputs = dict(zip(("bar_position", "bar_steps"), meter_features(steps, primer.steps_per_bar)), ids=ids)
        if gen.config.bar_lookback:
            inputs.update(zip(("lookback_1", "lookback_2"), lookback_features(steps, ids, primer.steps_per_bar)))
        return {name: np.asarray([value]) for name, value in inputs.items()}

    start, naive_tokens = time.perf_counter(), 0
    while time.perf_counter() - start < 5 and naive_tokens < 64:
        logits = np.asarray(model(model_inputs(seq), training=False))[0, -1]
        p = np.exp(logits - logits.max())
        seq.append(int(rng.choice(len(p), p=p / p.sum())))
        naive_tokens += 1
    naive_tps = naive_tokens / (time.perf_counter() - start)
    tps = tokens / sum(times)
    return {"ms_per_melody": per_melody_ms, "tf_ms_per_melody": tf_ms, "tokens_per_second": tps,
            "naive_tokens_per_second": naive_tps,
            "load_s": load_s, "tokens_per_melody": tokens / 50}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=None, help="music folder (default: the example corpus)")
    parser.add_argument("--char_steps", type=int, default=1500)
    parser.add_argument("--folk_steps", type=int, default=60)
    parser.add_argument("--only_startup", action="store_true",
                        help="only the whole-command start-up figures (no training or sampling speed)")
    parser.add_argument("--magenta_bundle", default=None,
                        help="a Magenta melody_rnn bundle (basic_rnn.mag) to time melody_rnn_generate with")
    args = parser.parse_args()
    from melody_plugin.generate.generator import DEFAULT_MODEL_DIR, EXAMPLE_PRIMER
    from melody_plugin.model import registry
    from melody_plugin.tokens import corpus

    tmp = Path(tempfile.mkdtemp(prefix="melody_bench_"))
    lines = []

    def report(line):
        print(line, flush=True)
        lines.append(line)

    if args.only_startup:
        for line in startup(tmp, args.magenta_bundle):
            report(line)
        return

    # --- dataset
    start = time.perf_counter()
    stats = corpus.create_dataset(args.input, tmp / "ds", registry.get_config("char_lstm"),
                                  corpus.Reading(progress=False))
    report(f"dataset: {stats['files_read']} files -> {stats['tokens_train']} train tokens in "
           f"{time.perf_counter() - start:.1f} s (vocabulary {stats['vocab_size']})")

    # --- training
    char = train_speed("char_lstm", tmp / "ds", args.char_steps, tmp)
    fit = fit_baseline(tmp / "ds")
    report(f"train char_lstm (batch {char['batch']}, window {char['window']}): {char['tokens_per_second']:,.0f} "
           f"tokens/s ({char['notes_per_second']:,.0f} notes/s); model.fit batch 16: {fit:,.0f} tokens/s; "
           f"ratio {char['tokens_per_second'] / fit:.1f}x; target >= 30,000: "
           f"{'MET' if char['tokens_per_second'] >= 30000 else 'NOT MET'}")
    folk = train_speed("folk_lstm", tmp / "ds", args.folk_steps, tmp)
    report(f"train folk_lstm (batch {folk['batch']}, window {folk['window']}): {folk['tokens_per_second']:,.0f} "
           f"tokens/s ({folk['notes_per_second']:,.0f} notes/s); ratio to model.fit baseline "
           f"{folk['tokens_per_second'] / fit:.2f}x")

    # --- generation (the embedded model)
    gen = generation_speed(DEFAULT_MODEL_DIR)
    report(f"generate 10 x 16 bars (batched, {gen['tokens_per_melody']:.0f} tokens each): {gen['ms_per_melody']:.2f} "
           f"ms per melody ({gen['tokens_per_second']:,.0f} tokens/s); naive Keras re-run: "
           f"{gen['naive_tokens_per_second']:,.1f} tokens/s; "
           f"ratio {gen['tokens_per_second'] / gen['naive_tokens_per_second']:,.0f}x; "
           f"target <= 10 ms: {'MET' if gen['ms_per_melody'] <= 10 else 'NOT MET'}")
    report(f"generate 10 x 16 bars with the compiled TensorFlow loop (--sampler=tf): {gen['tf_ms_per_melody']:.2f} ms "
           f"per melody once traced; target <= 10 ms: {'MET' if gen['tf_ms_per_melody'] <= 10 else 'NOT MET'}")

    # --- whole commands
    bare = wall([sys.executable, "-c", "pass"], 5)
    help_s = wall([str(BIN / "melody_generate"), "--help"], 5)
    out = tmp / "gen"
    report(f"melody_generate --help: {help_s:.2f} s (bare python {bare:.2f} s)")
    for line in startup(tmp, args.magenta_bundle):
        report(line)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # measured from a small launcher: a child forked from this big process would count its pages
    launcher = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True);"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    gen_mb = int(subprocess.run([sys.executable, "-c", launcher, str(BIN / "melody_generate"),
                                 f"--primer_midi={EXAMPLE_PRIMER}", "--num_outputs=10", "--num_bars=16",
                                 f"--output_dir={out}", "--seed=1", "--overwrite"],
                                capture_output=True, text=True, check=True).stdout) / 1024
    report(f"peak memory: training (TensorFlow, this process) {peak_self:.0f} MB; melody_generate {gen_mb:.0f} MB")


if __name__ == "__main__":
    main()
