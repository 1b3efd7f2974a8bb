"""Music files -> melodies -> token ids, once, for training, evaluation and `melody_create_dataset`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import collections
import dataclasses
import hashlib
import multiprocessing
import os
import re
import signal
import sys
import time
from pathlib import Path

from tqdm import tqdm

from melody_plugin.errors import InputFileError, MelodyPluginError
from melody_plugin.io.files import MusicFile, read_music_file
from melody_plugin.io.inputs import default_input, input_files, is_tfrecord_name
from melody_plugin.io.protos import music_pb2
from melody_plugin.io.tfrecord import read_note_sequence_tfrecord
from melody_plugin.music.extract import note_sequence_to_melodies
from melody_plugin.music.melody import Melody, MelodyError
from melody_plugin.runtime.atomic import write_json
from melody_plugin.runtime.quiet import quiet_third_party
from melody_plugin.tokens.records import EVAL_FILE, TRAIN_FILE, DatasetError, write_ids
from melody_plugin.tokens.vocab import START, Vocabulary, key_shift

FAILURE_REASONS = ("no_notes", "drums_only", "polyphony_rejected", "too_short", "quantization_failed",
                   "split_failed", "bad_time_signature", "bad_tempo", "track_not_found")

if TYPE_CHECKING:  # the config type, for annotations only: corpus reads the config's data settings
    from melody_plugin.model.registry import ModelConfig


def eval_fraction(key: str) -> float:
    """A stable number in [0, 1) from a file name: the same file always falls in the same split."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


def split_key(ns) -> str:
    """What a NoteSequence's split is keyed on: its file's name, as for a file read from a folder."""
    if ns.filename:
        return Path(ns.filename).name
    return ns.id or hashlib.sha1(ns.SerializeToString()).hexdigest()


def is_eval(key: str, eval_ratio: float) -> bool:
    return eval_fraction(key) < eval_ratio


@dataclasses.dataclass
class FileResult:
    path: str
    melodies: list
    stats: dict
    warnings: list
    error: str = ""  # why the file was skipped
    split_key: str = ""  # the name the train/eval split is keyed on


def _extract_file(args) -> FileResult:
    """Worker: one file (or serialized NoteSequence) -> melodies, through music.extract.note_sequence_to_melodies.

    `settings` are the config's data settings: (steps_per_quarter, polyphony_policy, min_notes)."""
    source, settings, track, program = args
    steps_per_quarter, policy, min_notes = settings
    if isinstance(source, tuple):  # (name, split key, serialized NoteSequence) from a TFRecord
        name, key, data = source

        files = [MusicFile(name, (music_pb2().NoteSequence.FromString(data),))]
    else:
        name, key = source, Path(source).name
        try:
            files = [read_music_file(source)]
        except InputFileError as e:
            return FileResult(name, [], {}, [], e.reason, key)
        except Exception as e:  # anything a library throws on hostile input: skip and report, never crash the run
            return FileResult(name, [], {}, [], f"unreadable ({type(e).__name__}: {e})", key)
    melodies, warnings, stats = [], list(files[0].warnings), collections.Counter()
    try:
        for ns in files[0].sequences:
            try:
                extraction = note_sequence_to_melodies(
                    ns, steps_per_quarter, policy, track, program, min_notes)
            except MelodyError as e:
                stats[e.reason] += 1
                continue
            melodies += extraction.melodies
            stats.update(extraction.stats)
    except Exception as e:
        return FileResult(name, [], {}, warnings, f"conversion failed ({type(e).__name__}: {e})", key)
    stats["melodies"] = len(melodies)
    stats = dict(stats)
    if not melodies:
        reason = next((r for r in FAILURE_REASONS if stats.get(r)), "no_notes")
        words = reason.replace("_", " ") + (f" (fewer than {max(min_notes, 1)} notes)" if reason == "too_short" else "")
        return FileResult(name, [], stats, warnings, words, key)
    if stats.get("time_change_splits"):
        warnings.append(f"split into {len(melodies)} melodies where the time signature changes")
    if stats.get("notes_snapped_to_grid"):
        warnings.append(f"{stats['notes_snapped_to_grid']} notes snapped to the grid")
    if stats.get("polyphony_resolved"):
        warnings.append(f"{stats['polyphony_resolved']} overlapping notes resolved ({policy})")
    return FileResult(name, melodies, stats, warnings, "", key)


def _init_worker():
    quiet_third_party()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent
    # a forked worker inherits the CLI's stop handling: its SIGTERM handler and the wakeup pipe it shares with the
    # parent. The pool ends its workers with SIGTERM, which must neither raise here nor reach the parent's
    # watchdog (it would stop the command).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)


def _sources(input_path):
    """File paths, and (name, split key, bytes) NoteSequences for every record of a TFRecord."""
    sources = []
    for path in input_files(input_path):
        if not is_tfrecord_name(path):
            sources.append(str(path))
            continue
        for i, ns in enumerate(read_note_sequence_tfrecord(path)):
            sources.append((f"{path.name}#{i}:{ns.filename or ns.id}", split_key(ns), ns.SerializeToString()))
    return sources


@dataclasses.dataclass
class Corpus:
    """Melodies of a folder split by file into train and eval, and what happened to every file."""

    train: list
    eval: list
    results: list
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class Reading:
    """How input files are read: the share held out for evaluation (the split is by file name), worker processes
    (None: one per CPU), which track or program holds the melody (None: chosen by the config's polyphony policy;
    `track` may be "all"), and the progress bar (None: shown when on a terminal)."""

    eval_ratio: float = 0.1
    workers: int | None = None
    track: int | str | None = None
    program: int | None = None
    progress: bool | None = None


def collect_melodies(input_path, config: ModelConfig, reading: Reading | None = None) -> Corpus:
    """Reads every file of `input_path` in worker processes and extracts melodies, skipping bad files.

    Args:
      input_path: a music file, a folder, a glob, or a NoteSequence TFRecord (sharded names and globs too);
        None reads the shipped example corpus.

    Raises:
      InputFileError: only if `input_path` names nothing readable at all.
    """

    reading = reading or Reading()
    start = time.perf_counter()
    sources = _sources(input_path if input_path else default_input())
    workers = reading.workers or min(len(sources), os.cpu_count() or 1)
    settings = (config.steps_per_quarter, config.polyphony_policy, config.min_notes)
    tasks = [(s, settings, reading.track, reading.program) for s in sources]
    progress = reading.progress
    bar = tqdm(total=len(tasks), desc="reading", unit="file", disable=None if progress is None else not progress)
    results = []
    if workers <= 1 or len(tasks) < 8:
        for t in tasks:
            results.append(_extract_file(t))
            bar.update()
    else:
        # fork is cheap and safe here: the parent has not imported TensorFlow yet
        ctx = multiprocessing.get_context("fork" if "tensorflow" not in sys.modules else "spawn")
        pool = ctx.Pool(workers, initializer=_init_worker, maxtasksperchild=200)
        try:
            for r in pool.imap(_extract_file, tasks, chunksize=8):
                results.append(r)
                bar.update()
            # the workers leave on their own: a SIGTERM (the `with` block's terminate) can reach one still starting,
            # before `_init_worker` replaced the command's start-up handler, which would report an interruption
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    bar.close()
    train, eval_ = [], []
    for r in results:
        (eval_ if is_eval(r.split_key, reading.eval_ratio) else train).extend(r.melodies)
    return Corpus(train, eval_, results, time.perf_counter() - start)


def transposed_copies(melody: Melody, to_key: bool, transpositions: tuple[int, int]) -> list[Melody]:
    """`melody` moved to C major / A minor (when `to_key`), then one copy per shift in the inclusive range
    that keeps every pitch in MIDI's 0-127."""
    if to_key:
        melody = melody.transpose(key_shift(melody))
    lo, hi = transpositions
    return [melody.transpose(s) for s in range(lo, hi + 1)
            if all(n.is_rest or 0 <= n.pitch + s <= 127 for n in melody.notes)]


def prepare_melodies(melodies, config: ModelConfig, augment: bool) -> list[Melody]:
    """Key normalisation and, when `augment`, the config's transposition copies."""
    shifts = config.augment_transpositions if augment else (0, 0)
    return [out for m in melodies for out in transposed_copies(m, config.transpose_to_key, shifts)]


def encode_melody(melody: Melody, vocab: Vocabulary, stats: collections.Counter) -> list[int]:
    """[START] + the melody's ids (+ the end id when the vocabulary has one); notes and out-of-vocabulary notes
    (mapped or unknown) are counted in `stats`."""
    ids, changes = vocab.encode_with_report(melody)
    stats["notes"] += len(melody.notes)
    stats["oov_notes_mapped"] += sum(1 for c in changes if c.replacement)
    stats["oov_notes_unknown"] += sum(1 for c in changes if not c.replacement)
    return [START] + vocab.with_end(ids)


def encode_all(melodies, vocab: Vocabulary) -> tuple[list[list[int]], dict]:
    stats = collections.Counter()
    sequences = [encode_melody(m, vocab, stats) for m in melodies]
    stats["tokens"] = sum(len(s) - 1 for s in sequences)  # unknown tokens are counted as oov_notes_unknown
    return sequences, dict(stats)


def build_vocabulary(train_melodies, config: ModelConfig) -> Vocabulary:
    return Vocabulary.build(prepare_melodies(train_melodies, config, augment=True), config.min_token_count,
                            config.transpose_to_key, config.augment_transpositions, config.end_token)


@dataclasses.dataclass
class EncodedCorpus:
    """A corpus read, split, augmented (train only) and encoded: what a training run needs."""

    corpus: Corpus
    vocab: Vocabulary
    train: list  # id sequences, start token first
    eval: list
    train_stats: dict
    eval_stats: dict
    # each sequence's melody's bar length in grid steps, for meter-aware inputs (vocab.meter_features)
    train_steps_per_bar: list = dataclasses.field(default_factory=list)
    eval_steps_per_bar: list = dataclasses.field(default_factory=list)


def encode_corpus(input_path, config: ModelConfig, reading: Reading | None = None,
                  vocab: Vocabulary | None = None) -> EncodedCorpus:
    """The whole data path in one call: files -> melodies -> split -> copies -> vocabulary -> ids.

    Args:
      vocab: encode with this vocabulary (a resumed run, a trained model); default: built from the train split.

    Raises:
      MelodyPluginError: if the train split holds no melody and no vocabulary is given.
    """
    corpus = collect_melodies(input_path, config, reading)
    if vocab is None:
        if not corpus.train:
            raise MelodyPluginError(f"{input_path or default_input()}: no usable melody in the training split "
                                    f"({len(corpus.results)} files read, all skipped or in eval{_why_skipped(corpus)})")
        vocab = build_vocabulary(corpus.train, config)
    train_melodies = prepare_melodies(corpus.train, config, augment=True)
    eval_melodies = prepare_melodies(corpus.eval, config, augment=False)
    train, train_stats = encode_all(train_melodies, vocab)
    eval_, eval_stats = encode_all(eval_melodies, vocab)
    return EncodedCorpus(corpus, vocab, train, eval_, train_stats, eval_stats,
                         [m.steps_per_bar for m in train_melodies], [m.steps_per_bar for m in eval_melodies])


def scoring_melodies(input_path, config: ModelConfig, progress=None) -> tuple[Corpus, list[Melody]]:
    """Every melody of `input_path`, key-normalised as the config says but never augmented: what is scored."""
    corpus = collect_melodies(input_path, config, Reading(eval_ratio=0.0, progress=progress))
    return corpus, prepare_melodies(corpus.train, config, augment=False)


def _reason_kind(reason: str) -> str:
    """A reason without its particulars, to count alike failures together ("events at tick N exceed ...").

    Parenthesised details go, nested ones whole (a reason cut short loses its unclosed one); numbers standing alone
    become N (X:9 is X:N), and names with digits in them (music21) stay.
    """
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", reason)
        if shorter == reason:
            break
        reason = shorter
    reason = re.sub(r"\s*\(.*", "", reason).replace(")", "")  # what is left is unbalanced: ")"s, then "("s
    return re.sub(r"\b\d+\b", "N", reason).strip()


def _why_skipped(corpus: Corpus) -> str:
    """The commonest kind of skip reason in one file's own words ("; 6 skipped like a.abc: ..."), or "" if none."""
    errors = [r for r in corpus.results if r.error]
    if not errors:
        return ""
    kind, count = collections.Counter(_reason_kind(r.error) for r in errors).most_common(1)[0]
    example = next(r for r in errors if _reason_kind(r.error) == kind)
    return f"; {count} skipped like {Path(example.path).name}: {example.error}"


def corpus_report(corpus: Corpus, vocab: Vocabulary, train_stats: dict, eval_stats: dict, input_path) -> dict:
    skipped = [{"file": r.path, "reason": r.error} for r in corpus.results if r.error]
    changed = [{"file": r.path, "changes": r.warnings} for r in corpus.results if not r.error and r.warnings]
    reasons = collections.Counter(_reason_kind(r.error) for r in corpus.results if r.error)
    totals = collections.Counter()
    for r in corpus.results:
        totals.update(r.stats)

    def coverage(stats):
        notes = stats.get("notes", 0)
        exact = notes - stats.get("oov_notes_mapped", 0) - stats.get("oov_notes_unknown", 0)
        return round(exact / notes, 4) if notes else None

    return {
        "input": str(input_path or default_input()),
        "files_read": len(corpus.results),
        "files_used": sum(1 for r in corpus.results if not r.error),
        "files_skipped": len(skipped),
        "skipped_by_reason": dict(reasons),
        "melodies_train": len(corpus.train),
        "melodies_eval": len(corpus.eval),
        "notes_train": sum(m.num_pitched for m in corpus.train),
        "notes_eval": sum(m.num_pitched for m in corpus.eval),
        "tokens_train": train_stats.get("tokens", 0),
        "tokens_eval": eval_stats.get("tokens", 0),
        "vocab_size": len(vocab),
        "coverage_train": coverage(train_stats),
        "coverage_eval": coverage(eval_stats),
        "oov_eval": {k: eval_stats.get(k, 0) for k in ("oov_notes_mapped", "oov_notes_unknown")},
        "conversion": {k: totals[k] for k in ("time_change_splits", "notes_snapped_to_grid", "polyphony_resolved",
                                              "key_estimated", "other_tracks_ignored", "too_short")},
        "seconds": round(corpus.elapsed_s, 2),
        "skipped": skipped,
        "changed": changed,
    }


DATASET_FILES = (TRAIN_FILE, EVAL_FILE, "vocab.json", "stats.json")  # what create_dataset writes


def check_dataset_dir(output_dir, overwrite: bool = False) -> None:
    """Refuses (DatasetError) a folder that already holds any file `create_dataset` would write, unless
    `overwrite`: a dataset made before, or a user's own file of the same name, is never replaced unasked."""
    there = [name for name in DATASET_FILES if os.path.lexists(Path(output_dir) / name)]
    if there and not overwrite:
        raise DatasetError(f"{output_dir}: already holds {', '.join(there)}; pass --overwrite to replace "
                           f"{'them' if len(there) > 1 else 'it'}, or name another --output_dir")


def create_dataset(input_path, output_dir, config: ModelConfig, reading: Reading | None = None,
                   sequence_format: str = "plugin") -> dict:
    """Files -> train/eval SequenceExample TFRecords, vocab.json and stats.json in `output_dir`.

    Args:
      sequence_format: "plugin" (int64 ids, what melody_train reads) or "magenta" (float one-hot inputs and
        int64 labels, what Magenta's `sequence_example_lib.get_padded_batch` reads; melody_train reads it too).

    Returns the report (also written as stats.json). Bad files are skipped and listed, never fatal.
    """

    data = encode_corpus(input_path, config, reading)
    one_hot_size = len(data.vocab) if sequence_format == "magenta" else None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_ids(data.train, output_dir / TRAIN_FILE, one_hot_size, data.train_steps_per_bar)
    write_ids(data.eval, output_dir / EVAL_FILE, one_hot_size, data.eval_steps_per_bar)
    data.vocab.save(output_dir / "vocab.json")
    report = corpus_report(data.corpus, data.vocab, data.train_stats, data.eval_stats, input_path)
    report["config"] = config.to_json()
    report["sequence_format"] = sequence_format
    write_json(output_dir / "stats.json", report)
    return report


# what each conversion count means, for the report line ("conversion: 5 keys estimated (no key signature), ...")
_CONVERSION_WORDS = {
    "time_change_splits": "melodies split where the meter changes",
    "notes_snapped_to_grid": "notes snapped to the grid",
    "polyphony_resolved": "overlapping notes resolved to one line",
    "key_estimated": "keys estimated (no key signature)",
    "other_tracks_ignored": "other tracks ignored",
    "too_short": "melodies too short, left out",
}


def format_report(report: dict, max_lines: int = 20) -> str:
    """The readable terminal summary of a dataset report."""
    lines = [
        f"files read: {report['files_read']}, used: {report['files_used']}, skipped: {report['files_skipped']}"
        f" in {report['seconds']} s",
        f"melodies: {report['melodies_train']} train / {report['melodies_eval']} eval; notes: "
        f"{report['notes_train']} / {report['notes_eval']}; tokens: {report['tokens_train']} / {report['tokens_eval']}",
        f"vocabulary: {report['vocab_size']} tokens; coverage: train {report['coverage_train']}, "
        f"eval {report['coverage_eval']}",
        "conversion: " + (", ".join(f"{v} {_CONVERSION_WORDS[k]}" for k, v in report["conversion"].items() if v)
                          or "nothing changed"),
    ]
    if report["skipped"]:
        lines.append("skipped: " + "; ".join(f"{v} x {k}" for k, v in report["skipped_by_reason"].items()))
        for item in report["skipped"][:max_lines]:
            lines.append(f"  {item['file']}: {item['reason']}")
        if len(report["skipped"]) > max_lines:
            lines.append(f"  ... {len(report['skipped']) - max_lines} more in stats.json")
    if report["changed"]:
        lines.append(f"changed while reading: {len(report['changed'])} files")
        for item in report["changed"][:max_lines // 2]:
            lines.append(f"  {item['file']}: {'; '.join(item['changes'])}")
        if len(report["changed"]) > max_lines // 2:
            lines.append(f"  ... {len(report['changed']) - max_lines // 2} more in stats.json")
    return "\n".join(lines)
