"""Magenta-style pipelines: typed transforms from NoteSequence to SequenceExample, and dataset creation.

Step of the flow: NoteSequence -> (split at time changes) -> quantized NoteSequence -> Melody -> token ids ->
`tf.train.SequenceExample`. Each `Pipeline` has an `input_type`, an `output_type`, `transform(item) -> list`
and counters (`get_stats()`) named like Magenta's, saying why data was dropped. `Chain` composes them and
`PartitionedPipeline` adds the train/eval split; `get_pipeline(config_name, eval_ratio, vocab)` returns the whole
graph of a registered config and `run_pipeline_serial` runs it from a NoteSequence TFRecord to SequenceExample
TFRecords. `create_dataset(...)`, behind `melody_create_dataset`, runs the same transforms in worker processes.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import time
from pathlib import Path

from melody_plugin import atomic, melody as melody_lib, midi_io
from melody_plugin.errors import InputFileError, MelodyPluginError
from melody_plugin.melody import Melody
from melody_plugin.quiet import quiet_third_party
from melody_plugin.registry import ModelConfig, get_config
from melody_plugin.vocab import START, Vocabulary, key_shift


def _note_sequence_type():
    quiet_third_party()
    from note_seq.protobuf import music_pb2

    return music_pb2.NoteSequence


class Pipeline:
    """A typed transform: `transform(item)` returns a list of outputs (empty = dropped, and counted)."""

    input_type: type | str = object
    output_type: type | str = object

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__
        self._stats: collections.Counter = collections.Counter()

    def transform(self, item) -> list:
        raise NotImplementedError

    def count(self, stat: str, n: int = 1) -> None:
        self._stats[stat] += n

    def get_stats(self) -> dict[str, int]:
        """Counters of this pipeline, named `<pipeline>_<counter>` like Magenta's statistics."""
        return {f"{self.name}_{k}": v for k, v in sorted(self._stats.items())}

    def reset_stats(self) -> None:
        self._stats.clear()


class TimeChangeSplitter(Pipeline):
    """NoteSequence -> NoteSequences, one per constant time signature and tempo."""

    def __init__(self, name=None):
        super().__init__(name)
        self.input_type = self.output_type = _note_sequence_type()

    def transform(self, ns):
        try:
            return melody_lib.split_on_time_changes(ns, self._stats)
        except melody_lib.MelodyError as e:
            self.count(e.reason)
            return []


class Quantizer(Pipeline):
    """NoteSequence -> quantized NoteSequence (note-seq's quantizer); notes moved onto the grid are counted."""

    def __init__(self, steps_per_quarter: int, name=None):
        super().__init__(name)
        self.steps_per_quarter = steps_per_quarter
        self.input_type = self.output_type = _note_sequence_type()

    def transform(self, ns):
        try:
            return [melody_lib.quantize(ns, self.steps_per_quarter, self._stats)]
        except melody_lib.MelodyError as e:
            self.count(e.reason)
            return []


class MelodyExtractor(Pipeline):
    """Quantized NoteSequence -> Melody (track choice, polyphony policy, rests, key)."""

    output_type = Melody

    def __init__(self, policy="highest", track=None, program=None, min_notes=0, name=None):
        super().__init__(name)
        self.policy, self.track, self.program, self.min_notes = policy, track, program, min_notes
        self.input_type = _note_sequence_type()

    def transform(self, qns):
        try:
            m = melody_lib.melody_from_quantized(qns, self.policy, self.track, self.program, self._stats)
        except melody_lib.MelodyError as e:
            self.count(e.reason)
            return []
        if m.num_pitched < max(self.min_notes, 1):
            self.count("too_short")
            return []
        self.count("melodies")
        return [m]


class KeyTransposer(Pipeline):
    """Melody -> Melody moved to C major / A minor (when `to_key`) and its augmentation copies."""

    input_type = output_type = Melody

    def __init__(self, to_key: bool = False, transpositions: tuple[int, int] = (0, 0), name=None):
        super().__init__(name)
        self.to_key, self.transpositions = to_key, tuple(transpositions)

    def transform(self, m):
        if self.to_key:
            m = m.transpose(key_shift(m))
        lo, hi = self.transpositions
        out = [m.transpose(s) for s in range(lo, hi + 1)
               if all(n.is_rest or 0 <= n.pitch + s <= 127 for n in m.notes)]
        self.count("transposed_copies", len(out) - 1)
        return out


class MelodyEncoder(Pipeline):
    """Melody -> token ids (start token first); notes outside the vocabulary are mapped and counted."""

    input_type, output_type = Melody, list

    def __init__(self, vocab: Vocabulary, name=None):
        super().__init__(name)
        self.vocab = vocab

    def transform(self, m):
        ids, changes = self.vocab.encode_with_report(m)
        self.count("notes", len(m.notes))
        self.count("oov_notes_mapped", sum(1 for c in changes if c.replacement))
        self.count("oov_notes_unknown", sum(1 for c in changes if not c.replacement))
        return [[START] + ids]


class SequenceExampleMaker(Pipeline):
    """Token ids -> tf.train.SequenceExample with `inputs`/`labels` feature lists."""

    input_type, output_type = list, "tf.train.SequenceExample"

    def transform(self, ids):
        from melody_plugin.dataset import sequence_to_example

        return [sequence_to_example(ids)]


class Chain(Pipeline):
    """Pipelines run one after the other; each output of one is fed to the next."""

    def __init__(self, pipelines, name="Chain"):
        super().__init__(name)
        self.pipelines = list(pipelines)
        for a, b in zip(self.pipelines, self.pipelines[1:]):
            if a.output_type is not b.input_type and b.input_type is not object:
                raise MelodyPluginError(f"pipeline {a.name} outputs {a.output_type}, but {b.name} takes "
                                        f"{b.input_type}")
        self.input_type, self.output_type = self.pipelines[0].input_type, self.pipelines[-1].output_type

    def transform(self, item):
        items = [item]
        for p in self.pipelines:
            items = [out for x in items for out in p.transform(x)]
        return items

    def get_stats(self):
        stats = {}
        for p in self.pipelines:
            stats.update(p.get_stats())
        return stats

    def reset_stats(self):
        for p in self.pipelines:
            p.reset_stats()


def eval_fraction(key: str) -> float:
    """A stable number in [0, 1) from a file name: the same file always falls in the same split."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


class PartitionedPipeline(Pipeline):
    """NoteSequence -> {"training": [...], "eval": [...]}: a deterministic split by file, then the chain."""

    def __init__(self, chain: Pipeline, eval_ratio: float, name="Partition"):
        super().__init__(name)
        if not 0 <= eval_ratio < 1:
            raise MelodyPluginError(f"eval_ratio must be in [0, 1), got {eval_ratio}")
        self.chain, self.eval_ratio = chain, eval_ratio
        self.input_type, self.output_type = chain.input_type, dict

    def partition_of(self, ns) -> str:
        key = ns.filename or ns.id or ns.SerializeToString().hex()[:64]
        return "eval" if eval_fraction(key) < self.eval_ratio else "training"

    def transform(self, ns):
        name = self.partition_of(ns)
        self.count(f"{name}_sequences")
        return {name: self.chain.transform(ns), ("eval" if name == "training" else "training"): []}

    def get_stats(self):
        return {**super().get_stats(), **self.chain.get_stats()}


def melody_pipeline(config: ModelConfig, track=None, program=None) -> Chain:
    """The NoteSequence -> Melody half of the graph (it needs no vocabulary)."""
    return Chain([
        TimeChangeSplitter(name="TimeChangeSplitter"),
        Quantizer(config.steps_per_quarter, name="Quantizer"),
        MelodyExtractor(config.polyphony_policy, track, program, config.min_notes, name="MelodyExtractor"),
    ], name="MelodyPipeline")


def get_pipeline(config_name: str | ModelConfig, eval_ratio: float, vocab: Vocabulary,
                 augment: bool = True) -> PartitionedPipeline:
    """The whole graph of a registered config: NoteSequence -> {"training"/"eval": [SequenceExample]}.

    Transposition copies are made for the training partition only when `augment` is set; the eval partition
    of this graph is built without them (Magenta's pipelines do the same by running one graph per split).
    """
    config = config_name if isinstance(config_name, ModelConfig) else get_config(config_name)
    front = melody_pipeline(config).pipelines
    transposer = KeyTransposer(config.transpose_to_key, config.augment_transpositions if augment else (0, 0),
                               name="KeyTransposer")
    chain = Chain(front + [transposer, MelodyEncoder(vocab, name="MelodyEncoder"),
                           SequenceExampleMaker(name="SequenceExampleMaker")], name="MelodyDatasetPipeline")
    return PartitionedPipeline(chain, eval_ratio)


def run_pipeline_serial(pipeline: Pipeline, note_sequence_tfrecord, output_dir) -> dict:
    """Runs a pipeline over a NoteSequence TFRecord and writes one SequenceExample TFRecord per partition.

    Returns the pipeline's statistics plus the number of records written per output file.
    """
    from melody_plugin.dataset import write_examples

    outputs = collections.defaultdict(list)
    for ns in midi_io.read_note_sequence_tfrecord(note_sequence_tfrecord):
        result = pipeline.transform(ns)
        for name, items in (result.items() if isinstance(result, dict) else [("output", result)]):
            outputs[name].extend(items)
    stats = dict(pipeline.get_stats())
    output_dir = Path(output_dir)
    for name, items in sorted(outputs.items()):
        stats[f"written_{name}"] = write_examples(items, output_dir / f"{name}.tfrecord")
    return stats


# --- dataset creation: the same transforms, run over files in worker processes

FAILURE_REASONS = ("no_notes", "drums_only", "polyphony_rejected", "too_short", "quantization_failed",
                   "split_failed", "bad_time_signature", "bad_tempo", "track_not_found")


@dataclasses.dataclass
class FileResult:
    path: str
    melodies: list
    stats: dict
    warnings: list
    error: str = ""  # why the file was skipped


def _extract_file(args) -> FileResult:
    """Worker: one file (or serialized NoteSequence) -> melodies, via the same MelodyPipeline."""
    source, config_json, track, program = args
    config = ModelConfig.from_json(config_json)
    chain = melody_pipeline(config, track, program)
    if isinstance(source, tuple):  # (name, serialized NoteSequence) from a TFRecord
        name, data = source
        ns_type = _note_sequence_type()
        files = [midi_io.MusicFile(name, (ns_type.FromString(data),))]
    else:
        name = source
        try:
            files = [midi_io.read_music_file(source)]
        except InputFileError as e:
            return FileResult(name, [], {}, [], e.reason)
        except Exception as e:  # anything a library throws on hostile input: skip and report, never crash the run
            return FileResult(name, [], {}, [], f"unreadable ({type(e).__name__}: {e})")
    melodies, warnings = [], list(files[0].warnings)
    try:
        for ns in files[0].sequences:
            melodies += chain.transform(ns)
    except Exception as e:
        return FileResult(name, [], {}, warnings, f"conversion failed ({type(e).__name__}: {e})")
    stats = {k.split("_", 1)[1]: v for k, v in chain.get_stats().items()}
    if not melodies:
        reasons = [r for r in FAILURE_REASONS if stats.get(r)]
        return FileResult(name, [], stats, warnings, (reasons[0] if reasons else "no_notes").replace("_", " "))
    if stats.get("time_change_splits"):
        warnings.append(f"split into {len(melodies)} melodies at time-signature/tempo changes")
    if stats.get("notes_snapped_to_grid"):
        warnings.append(f"{stats['notes_snapped_to_grid']} notes snapped to the grid")
    if stats.get("polyphony_resolved"):
        warnings.append(f"{stats['polyphony_resolved']} overlapping notes resolved ({config.polyphony_policy})")
    return FileResult(name, melodies, stats, warnings)


def _init_worker():
    quiet_third_party()
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent


def _sources(input_path):
    """File paths, or (name, bytes) NoteSequences when the input is a TFRecord."""
    if midi_io.is_tfrecord(input_path) and "*" not in str(input_path):
        return [(f"{Path(input_path).name}#{i}:{ns.filename or ns.id}", ns.SerializeToString())
                for i, ns in enumerate(midi_io.read_note_sequence_tfrecord(input_path))]
    return [str(p) for p in midi_io.list_music_files(input_path)]


@dataclasses.dataclass
class Corpus:
    """Melodies of a folder split by file into train and eval, and what happened to every file."""

    train: list
    eval: list
    results: list
    elapsed_s: float


def default_input() -> Path:
    """The example corpus shipped inside the package (about 100 folk tunes)."""
    return Path(__file__).parent / "data" / "corpus"


def collect_melodies(input_path, config: ModelConfig, eval_ratio: float = 0.1, workers: int | None = None,
                     track=None, program=None, progress: bool | None = None) -> Corpus:
    """Reads every file of `input_path` in worker processes and extracts melodies, skipping bad files.

    Raises:
      InputFileError: only if `input_path` names nothing readable at all.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    sources = _sources(input_path if input_path else default_input())
    workers = workers or min(len(sources), os.cpu_count() or 1)
    config_json = config.to_json()
    tasks = [(s, config_json, track, program) for s in sources]
    bar = tqdm(total=len(tasks), desc="reading", unit="file", disable=None if progress is None else not progress)
    results = []
    if workers <= 1 or len(tasks) < 8:
        for t in tasks:
            results.append(_extract_file(t))
            bar.update()
    else:
        # fork is cheap and safe here: the parent has not imported TensorFlow yet
        ctx = multiprocessing.get_context("fork" if "tensorflow" not in sys.modules else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, maxtasksperchild=200) as pool:
            for r in pool.imap(_extract_file, tasks, chunksize=8):
                results.append(r)
                bar.update()
    bar.close()
    train, eval_ = [], []
    for r in results:
        (eval_ if eval_fraction(Path(r.path).name) < eval_ratio else train).extend(r.melodies)
    return Corpus(train, eval_, results, time.perf_counter() - start)


def prepare_melodies(melodies, config: ModelConfig, augment: bool) -> list[Melody]:
    transposer = KeyTransposer(config.transpose_to_key, config.augment_transpositions if augment else (0, 0))
    return [out for m in melodies for out in transposer.transform(m)]


def encode_all(melodies, vocab: Vocabulary) -> tuple[list[list[int]], dict]:
    encoder = MelodyEncoder(vocab, name="enc")
    sequences = [ids for m in melodies for ids in encoder.transform(m)]
    stats = {k.split("_", 1)[1]: v for k, v in encoder.get_stats().items()}
    stats["tokens"] = sum(len(s) - 1 for s in sequences)  # unknown tokens are counted as oov_notes_unknown
    return sequences, stats


def _reason_kind(reason: str) -> str:
    """A reason without its particulars, to count alike failures together ("events at tick N exceed ...")."""
    import re

    return re.sub(r"\d+", "N", re.sub(r"\s*\([^)]*\)", "", reason)).strip()


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


def build_vocabulary(train_melodies, config: ModelConfig) -> Vocabulary:
    return Vocabulary.build(prepare_melodies(train_melodies, config, augment=True), config.min_token_count,
                            config.transpose_to_key, config.augment_transpositions)


def create_dataset(input_path, output_dir, config: ModelConfig, eval_ratio: float = 0.1, workers=None,
                   track=None, program=None, progress=None) -> dict:
    """Files -> train/eval SequenceExample TFRecords, vocab.json and stats.json in `output_dir`.

    Returns the report (also written as stats.json). Bad files are skipped and listed, never fatal.
    """
    from melody_plugin.dataset import EVAL_FILE, TRAIN_FILE, write_sequences

    corpus = collect_melodies(input_path, config, eval_ratio, workers, track, program, progress)
    if not corpus.train:
        raise MelodyPluginError(f"{input_path}: no usable melody in the training split "
                                f"({len(corpus.results)} files read, all skipped or in eval)")
    vocab = build_vocabulary(corpus.train, config)
    train_seqs, train_stats = encode_all(prepare_melodies(corpus.train, config, augment=True), vocab)
    eval_seqs, eval_stats = encode_all(prepare_melodies(corpus.eval, config, augment=False), vocab)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_sequences(train_seqs, output_dir / TRAIN_FILE)
    write_sequences(eval_seqs, output_dir / EVAL_FILE)
    vocab.save(output_dir / "vocab.json")
    report = corpus_report(corpus, vocab, train_stats, eval_stats, input_path)
    report["config"] = config.to_json()
    atomic.write_json(output_dir / "stats.json", report)
    return report


def format_report(report: dict, max_lines: int = 20) -> str:
    """The readable terminal summary of a dataset report."""
    lines = [
        f"files read: {report['files_read']}, used: {report['files_used']}, skipped: {report['files_skipped']}"
        f" in {report['seconds']} s",
        f"melodies: {report['melodies_train']} train / {report['melodies_eval']} eval; notes: "
        f"{report['notes_train']} / {report['notes_eval']}; tokens: {report['tokens_train']} / {report['tokens_eval']}",
        f"vocabulary: {report['vocab_size']} tokens; coverage: train {report['coverage_train']}, "
        f"eval {report['coverage_eval']}",
        "conversion: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["conversion"].items() if v),
    ]
    if report["skipped"]:
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in report["skipped_by_reason"].items()))
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
