"""Held-out quality per CPU-minute: trains each variant on the folk set for the same CPU budget, then scores it.

    python scripts/benchmark_quality.py --jobs=2             # 3 variants x 10 CPU-minutes: about 20 min on 2 cores
    python scripts/benchmark_quality.py --cpu_minutes=2 --variant=mine=folk_lstm:dropout_rate=0.3
    python scripts/benchmark_quality.py --score=shipped=melody_plugin/data/default_model   # score only, no training
    git worktree add /tmp/before 027c1be    # the code before a change, for a before/after in one run:
    python scripts/benchmark_quality.py --jobs=2 --variant=before=folk_lookback@/tmp/before --variant=now=folk_lookback

Each variant is a config and `--hparams` overrides. The folk set is read once into a dataset folder
(`melody_create_dataset`, the file-name split with eval_ratio 0.1; once more for each other set of the
settings applied when a dataset is made: the end token, transpose_to_key, augment_transpositions), every variant
trains on its train split with
`melody_train --max_cpu_minutes=M` (the CPU time of the training process, all threads, counted from its start as
a user's clock would be: start-up and data loading included), and `melody_evaluate` scores its best checkpoint on
the held-out files, whole melodies from the start token (an end token, where a model has one, is not counted:
the figures compare across models). `--jobs=N` trains N variants at a time (each on one thread). Prints a
Markdown table with bits/note and pitch bits/note, each also as a ratio to the first variant, and the steps,
tokens/s and CPU minutes each run used.
`--score=NAME=RUN_DIR` adds a model trained elsewhere (the shipped one, say), scored on the same held-out files.
A variant ending in `@DIR` trains and scores with the melody_plugin source tree in DIR (another checkout, e.g. a
`git worktree` of an earlier commit) in place of this one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

# name -> (config, hparams). The first is the baseline of the ratios.
VARIANTS = {
    "folk_lstm (2x256)": ("folk_lstm", ""),
    # the preset before tunes had a shape: no end token, countdown, copy gate or key head; dropout 0.1, no decay
    "folk_lookback before endings and copies": ("folk_lookback", "end_token=false,countdown=false,copy_bars=[],"
                                                "key_head=false,key_tonic=false,batch_size=64,"
                                                "learning_rate=0.004,dropout_rate=0.1,lr_decay=none"),
    "folk_lookback": ("folk_lookback", ""),
}


# Imported first (sitecustomize) by a command run on another source tree: melody_plugin.configs is that tree's
# configs/ folder, whatever package the environment has installed, even an editable one of this tree.
CONFIGS_FROM_CODE = """
import importlib.util, os, sys

class _TreeConfigs:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "melody_plugin.configs":
            return None
        folder = os.path.join(os.environ["MELODY_PLUGIN_CODE"], "configs")
        return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])

sys.meta_path.insert(0, _TreeConfigs)
"""


def run(cmd: list[str], code: str | None = None) -> tuple[str, float, float]:
    """Runs a command; returns (stdout, wall seconds, CPU seconds of it and its children). The CPU time is the
    process's own (os.wait4), so commands running side by side (--jobs) do not count each other's. With `code`, a
    source tree whose melody_plugin the command imports (first on its path, and its working folder)."""
    start = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as boot, tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err:
        if code:  # the tree's own presets too: an editable install would map melody_plugin.configs to this tree's
            Path(boot, "sitecustomize.py").write_text(CONFIGS_FROM_CODE, encoding="utf-8")
            env.update(PYTHONPATH=os.pathsep.join([boot, code]), MELODY_PLUGIN_CODE=code)
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=code)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return stdout, wall, usage.ru_utime + usage.ru_stime


def held_out_folder(input_dir: Path, out: Path, eval_ratio: float) -> int:
    """Links the held-out files of `input_dir` (the split melody_create_dataset makes) into `out`."""
    from melody_plugin.io.inputs import input_files
    from melody_plugin.tokens.corpus import is_eval

    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in input_files(input_dir):
        if is_eval(path.name, eval_ratio):
            link = out / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
            count += 1
    return count


def dataset(input_dir: str, work: Path, config: str, hparams: str) -> Path:
    """The folk set as a dataset folder for this variant, made once for each set of the settings applied when a
    dataset is made: the end token, the key normalisation and the transposition copies. A variant with its own
    source tree (`@DIR`) gets a dataset made by that tree's melody_create_dataset with its own config: its presets
    decide those settings, as its melody_train and melody_evaluate do."""
    from melody_plugin.model.registry import get_config, with_hparams

    hparams, _, code = hparams.partition("@")
    if code:
        data = work / ("data_" + "".join(c if c.isalnum() else "_" for c in f"{code}_{config}_{hparams}"))
        if not (data / "train.tfrecord").is_file():
            run([str(BIN / "melody_create_dataset"), f"--input={input_dir}", f"--output_dir={data}",
                 f"--config={config}", f"--hparams={hparams}", "--progress=false"], code)
        return data
    chosen = with_hparams(get_config(config), hparams)
    lo, hi = chosen.augment_transpositions
    name = ("data" + ("_end" if chosen.end_token else "") + ("_key" if chosen.transpose_to_key else "")
            + (f"_shift{lo}_{hi}" if (lo, hi) != (0, 0) else ""))
    data = work / name
    if not (data / "train.tfrecord").is_file():
        settings = (f"end_token={str(chosen.end_token).lower()},transpose_to_key={str(chosen.transpose_to_key).lower()}"
                    f",augment_transpositions=[{lo},{hi}]")
        run([str(BIN / "melody_create_dataset"), f"--input={input_dir}", f"--output_dir={data}",
             "--config=folk_lstm", f"--hparams={settings}", "--progress=false"])
    return data


def train_and_score(name: str, config: str, hparams: str, data: Path, held_out: Path, work: Path,
                    cpu_minutes: float) -> dict:
    hparams, _, code = hparams.partition("@")
    run_dir = work / "runs" / name.replace(" ", "_").replace("+", "p").replace(":", "").replace("/", "_")
    out, wall, cpu = run([str(BIN / "melody_train"), f"--config={config}", f"--hparams={hparams}", f"--input={data}",
                          f"--run_dir={run_dir}", f"--max_cpu_minutes={cpu_minutes}", "--num_training_steps=10000000",
                          "--summary_frequency=250", "--save_checkpoint_steps=10000000", "--progress=false"],
                         code or None)
    done = [line for line in out.splitlines() if line.startswith("done: step ")][-1]
    steps = int(done.split()[2].rstrip(","))
    tokens_per_second = float(done.split(", ")[1].split()[0])
    scores = json.loads(run([str(BIN / "melody_evaluate"), f"--run_dir={run_dir}", f"--input={held_out}"],
                            code or None)[0].strip().splitlines()[-1])
    return {"name": name, "config": config, "hparams": hparams, "code": code or str(ROOT), "steps": steps,
            "train_wall_s": wall,
            "train_cpu_s": cpu, "tokens_per_second": tokens_per_second, **{
                k: scores[k] for k in ("bits_per_note", "pitch_bits_per_note", "accuracy", "notes", "files")}}


def score_only(name: str, run_dir: str, held_out: Path) -> dict:
    scores = json.loads(run([str(BIN / "melody_evaluate"), f"--run_dir={run_dir}", f"--input={held_out}"])[0]
                        .strip().splitlines()[-1])
    config = json.loads((Path(run_dir) / "config.json").read_text())
    return {"name": name, "config": config.get("name", "?"), "hparams": "", "steps": None, "train_wall_s": None,
            "train_cpu_s": None, "tokens_per_second": None, **{
                k: scores[k] for k in ("bits_per_note", "pitch_bits_per_note", "accuracy", "notes", "files")}}


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict], cpu_minutes: float) -> str:
    base = rows[0]
    trained = any(r["steps"] is not None for r in rows)
    first = f"variant ({cpu_minutes:g} CPU-min each)" if trained else "model"
    lines = [f"| {first} | steps | tokens/s | CPU min used | bits/note | vs first | "
             "pitch bits/note | vs first | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cpu_min = None if r["train_cpu_s"] is None else r["train_cpu_s"] / 60
        lines.append(f"| {r['name']} | {_figure(r['steps'], ',')} | {_figure(r['tokens_per_second'], ',.0f')} | "
                     f"{_figure(cpu_min, '.1f')} | "
                     f"{r['bits_per_note']:.3f} | {r['bits_per_note'] / base['bits_per_note']:.3f} | "
                     f"{r['pitch_bits_per_note']:.3f} | {r['pitch_bits_per_note'] / base['pitch_bits_per_note']:.3f} "
                     f"| {r['accuracy']:.3f} |")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, tuple[str, str]]:
    name, _, spec = text.partition("=")
    spec, at, code = spec.partition("@")  # the source tree travels at the end of the hparams
    config, _, hparams = spec.partition(":")
    hparams += at + code
    if not name or not config:
        raise argparse.ArgumentTypeError(f"--variant is NAME=CONFIG[:HPARAMS][@DIR], got {text!r}")
    return name, (config, hparams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared" / "data" / "folk"),
                        help="a folder of MIDI files, split by file name (default: %(default)s)")
    parser.add_argument("--cpu_minutes", type=float, default=10.0,
                        help="CPU budget of each training run (default: %(default)s)")
    parser.add_argument("--variant", type=parse_variant, action="append",
                        help="NAME=CONFIG[:HPARAMS][@DIR] (DIR: another source tree); repeatable; default: "
                        "the built-in variants")
    parser.add_argument("--score", type=parse_variant, action="append", default=[],
                        help="NAME=RUN_DIR: also score this trained model (no training); repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at a time (default 1)")
    parser.add_argument("--work_dir", help="keep the dataset and run dirs here (default: a temporary folder)")
    parser.add_argument("--output_json", help="also write the rows as JSON here")
    args = parser.parse_args()
    variants = dict(args.variant) if args.variant else ({} if args.score else VARIANTS)  # --score alone: no training

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp).resolve()  # absolute: a variant on another source tree runs there
        held_out = work / "held_out"
        print(f"{held_out_folder(Path(args.input), held_out, 0.1)} held-out files", flush=True)
        jobs = [(name, config, hparams, dataset(args.input, work, config, hparams), held_out, work, args.cpu_minutes)
                for name, (config, hparams) in variants.items()]
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda job: train_and_score(*job), jobs))
        for row in rows:
            print(json.dumps(row), flush=True)
        for name, (run_dir, _) in args.score:
            rows.append(score_only(name, run_dir, held_out))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(table(rows, args.cpu_minutes))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
