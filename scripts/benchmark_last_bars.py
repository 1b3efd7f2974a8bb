"""How models end real tunes: each held-out tune given up to its last N bars, the model writes those bars and ends
there (--ending=tune); the share of endings on the tonic against the tunes' own.

    python scripts/benchmark_last_bars.py --run_dir="shipped=melody_plugin/data/default_model" --bars=1,4

It separates the last bars' own distribution (given the real tune before them) from the melodies a model writes
itself (scripts/benchmark_continuation.py's whole tunes). A tune counts where its last N bars begin on a note's
start (a note held across that bar line would be cut) and it ends on a bar line. The tonic is the key finder's
(`melody_evaluate --form`'s) on the whole melody, real or written; 4 outputs per tune, seeded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_continuation import READ_CONFIG, held_out_tunes, parse_run_dirs  # noqa: E402

from melody_plugin.evaluate import form  # noqa: E402
from melody_plugin.generate.generator import MelodyGenerator  # noqa: E402
from melody_plugin.generate.sampler import SamplingOptions  # noqa: E402
from melody_plugin.model import registry  # noqa: E402


def cut_before_last_bars(melody, bars: int):
    """The melody without its last `bars` bars, or None where a note is held across that bar line or the melody
    does not end on a bar line."""
    bar, total = melody.steps_per_bar, melody.total_steps
    if total % bar or total <= bars * bar:
        return None
    cut, step, kept = total - bars * bar, 0, []
    for note in melody.notes:
        if step >= cut:
            break
        kept.append(note)
        step += note.duration_steps
    return melody.with_notes(kept) if step == cut else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(ROOT.parent / "shared" / "data" / "folk"))
    parser.add_argument("--eval_ratio", type=float, default=0.1)
    parser.add_argument("--bars", default="1,4", help="bars the models write, comma-separated")
    parser.add_argument("--num_outputs", type=int, default=4)
    parser.add_argument("--run_dir", action="append", metavar="NAME=PATH", required=True)
    args = parser.parse_args()
    tunes, _ = held_out_tunes(args.input, registry.get_config(READ_CONFIG), args.eval_ratio, 2, 4, None)
    models = [(name, MelodyGenerator.load(path)) for name, path in parse_run_dirs(args.run_dir)]
    print("| | bars written | tunes | the tunes' own last note on the tonic | the model's |")
    print("|---|---|---|---|---|")
    for bars in (int(b) for b in args.bars.split(",")):
        cases = [(t["whole"], cut) for t in tunes if (cut := cut_before_last_bars(t["whole"], bars)) is not None]
        real = sum(bool(form.ends_on_tonic(whole)) for whole, _ in cases) / len(cases)
        for name, gen in models:
            hits = total = 0
            for seed, (_, primer) in enumerate(cases):
                outs = gen.generate(primer, num_bars=bars, num_outputs=args.num_outputs,
                                    sampling=SamplingOptions(seed=seed, ending="tune"))
                hits += sum(bool(form.ends_on_tonic(o.melody)) for o in outs)
                total += len(outs)
            print(f"| {name} | {bars} | {len(cases)} | {real:.3f} | {hits / total:.3f} |", flush=True)


if __name__ == "__main__":
    main()
