"""The train and eval token ids of a run (from files, a dataset folder or the run dir) -> distributed datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from melody_plugin.io.inputs import default_input
from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.tokens.batches import Batching, MeterInputs, make_dataset, num_windows
from melody_plugin.tokens.corpus import Reading, encode_corpus
from melody_plugin.tokens.form import final_counts, phrase_crops
from melody_plugin.tokens.records import EVAL_FILE, TRAIN_FILE, is_dataset_dir, read_split, write_ids
from melody_plugin.tokens.vocab import Vocabulary
from melody_plugin.train.options import TrainingError, TrainOptions


def load_training_data(input_path, config: ModelConfig, eval_ratio: float, vocab: Vocabulary | None = None,
                       progress=None, log=print):
    """(train_sequences, eval_sequences, vocab, (train_bars, eval_bars)) from a dataset folder, a MIDI folder/glob
    or a TFRecord. The bars are each sequence's steps_per_bar (None where a dataset written before meter features
    has none).

    With `vocab` given (a resumed run), new data is encoded with it; notes it lacks are mapped.
    """
    if input_path and is_dataset_dir(input_path):
        train, train_bars, eval_, eval_bars = read_split(input_path)
        vocab = Vocabulary.load(Path(input_path) / "vocab.json")
        if vocab.end_token != config.end_token:
            made = "with" if vocab.end_token else "without"
            raise TrainingError(f"{input_path}: the dataset was prepared {made} an end token and config "
                                f"{config.name!r} has end_token={str(config.end_token).lower()}; prepare it again "
                                "with this config, or pass --hparams=end_token=" + str(vocab.end_token).lower()
                                + ("" if vocab.end_token else ",countdown=false"))
        for name in ("transpose_to_key", "augment_transpositions"):  # settings applied when the dataset was made
            made, asked = getattr(vocab, name), getattr(config, name)
            if made != asked:
                log(f"{input_path}: the dataset was prepared with {name}={made}, and the config's {asked} does not "
                    "apply to it (preparing the dataset makes the copies: melody_create_dataset with the setting)")
        return train, eval_, vocab, (train_bars, eval_bars)
    data = encode_corpus(input_path, config, Reading(eval_ratio, progress=progress), vocab)
    corpus = data.corpus
    if not corpus.train:
        raise TrainingError(f"{input_path or default_input()}: no usable melody "
                            f"({len(corpus.results)} files read)")
    skipped = [r for r in corpus.results if r.error]
    log(f"read {len(corpus.results)} files in {corpus.elapsed_s:.1f} s: {len(corpus.train)} train / "
        f"{len(corpus.eval)} eval melodies, {len(skipped)} files skipped")
    for r in skipped[:10]:
        log(f"  skipped {r.path}: {r.error}")
    return ([np.asarray(s, np.int32) for s in data.train], [np.asarray(s, np.int32) for s in data.eval], data.vocab,
            (data.train_steps_per_bar, data.eval_steps_per_bar))


def _meter_inputs(config: ModelConfig, vocab: Vocabulary, bars, log=print):
    """make_dataset's `meter` (`MeterInputs`, with the bar lookback when the config asks) for each split, or
    (None, None) when the config has no meter features.

    A dataset written before meter features carries no steps_per_bar: those melodies are taken as 4/4.
    """
    if not config.meter_features:
        return None, None
    four_four = 4 * vocab.steps_per_quarter
    missing = sum(b is None for split in bars for b in split)
    if missing:
        log(f"{missing} melodies carry no steps_per_bar (a dataset written before meter features): taken as 4/4 "
            f"({four_four} steps a bar); rebuild the dataset to use their meters")
    durations = vocab.durations()
    # the eval split is scored as melody_evaluate scores: the length of the melody unknown (open countdown)
    return tuple(MeterInputs([four_four if b is None else b for b in split], durations, config.bar_lookback,
                             config.countdown, config.copy_bars, share,
                             vocab.pitches() if config.key_head else None,
                             vocab.pitches() if config.final_pitch else None)
                 for split, share in zip(bars, (config.open_countdown_share, 1.0)))


def with_phrase_endings(config: ModelConfig, vocab: Vocabulary, train_seqs, train_bars, log=print):
    """(sequences, bars) of the training melodies followed by their phrase endings (`form.phrase_crops`) when the
    config asks for them (`phrase_endings`), each with its melody's bar length; else as given."""
    if not config.phrase_endings:
        return train_seqs, train_bars
    four_four, durations, pitches = 4 * vocab.steps_per_quarter, vocab.durations(), vocab.pitches()
    train_bars = [None] * len(train_seqs) if train_bars is None else train_bars
    crops, crop_bars = [], []
    for sequence, bar in zip(train_seqs, train_bars):
        bar = four_four if bar is None else int(bar)  # as _meter_inputs takes a melody without one
        more = phrase_crops(sequence, durations, pitches, bar, config.phrase_endings, vocab.end_id)
        crops += more
        crop_bars += [bar] * len(more)
    log(f"phrase_endings={config.phrase_endings}: {len(crops)} phrase endings train with the "
        f"{len(train_seqs)} training melodies")
    return list(train_seqs) + crops, list(train_bars) + crop_bars


def _prepare_data(run: RunDir, config: ModelConfig, input_path, opts: TrainOptions, chief: bool):
    """(train, eval, vocab): the run dir's own data on a resume without input, else the input's.

    The chief writes the data, the vocabulary and the config into the run dir.
    """
    old_vocab = run.load_vocab() if run.vocab_file.is_file() else None
    if input_path is None and (run.data_dir / TRAIN_FILE).is_file():
        train_seqs, train_bars, eval_seqs, eval_bars = read_split(run.data_dir)
        bars = (train_bars, eval_bars)
        vocab = old_vocab
    else:
        train_seqs, eval_seqs, vocab, bars = load_training_data(input_path, config, opts.eval_ratio, old_vocab,
                                                                opts.progress, opts.log)
        run.check_compatible(config, vocab)
        if input_path is not None and run.latest_checkpoint_step() is not None:
            if _same_data(run, train_seqs, eval_seqs, bars):
                opts.log(f"resuming on --input={input_path}: the same melodies as the run's own data/ (leave "
                         "--input out to resume without reading the files again)")
            else:
                opts.log(f"resuming on --input={input_path}: the run dir's data/ is replaced by it (the best "
                         "checkpoint so far was chosen on the earlier eval data); leave --input out to resume on "
                         "the run's own data")
        if chief:
            write_ids(train_seqs, run.data_dir / TRAIN_FILE, steps_per_bar=bars[0])
            write_ids(eval_seqs, run.data_dir / EVAL_FILE, steps_per_bar=bars[1])
    counted = config.final_pitch and not vocab.final_counts
    if counted:  # the prior: how the training melodies end
        vocab = dataclasses.replace(vocab, final_counts=final_counts(train_seqs, vocab.pitches(), vocab.durations()))
    if chief:
        if old_vocab is None or counted:
            vocab.save(run.vocab_file)
        run.save_config(config)
    return train_seqs, eval_seqs, vocab, bars


def _same_data(run: RunDir, train_seqs, eval_seqs, bars) -> bool:
    """Whether the run dir's data/ holds exactly these melodies (ids and bar lengths), train and eval."""
    if not (run.data_dir / TRAIN_FILE).is_file():
        return not train_seqs and not eval_seqs
    old_train, old_train_bars, old_eval, old_eval_bars = read_split(run.data_dir)
    for old_seqs, old_bars, seqs, seq_bars in ((old_train, old_train_bars, train_seqs, bars[0]),
                                               (old_eval, old_eval_bars, eval_seqs, bars[1])):
        new_bars = [None] * len(seqs) if seq_bars is None else [None if b is None else int(b) for b in seq_bars]
        if len(old_seqs) != len(seqs) or old_bars != new_bars:
            return False
        if any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(old_seqs, seqs)):
            return False
    return True


def _distribute_datasets(dist, config: ModelConfig, train_seqs, eval_seqs, seed: int, meter=(None, None),
                         log=print):
    """(train, eval) distributed datasets: shuffled, repeated global batches; eval None without eval data, or
    (windows) when the eval melodies hold fewer tokens than one window (said in the log)."""
    train_ds = dist.experimental_distribute_dataset(make_dataset(train_seqs, _batching(config, seed=seed), meter[0]))
    if not eval_seqs:
        log("no evaluation: no eval melodies (a larger --eval_ratio or a dataset with an eval split gives some); "
            "no best checkpoint is chosen in this run, so generation and melody_evaluate take the latest unless "
            "an earlier run of this run dir chose one (then pass --checkpoint=latest)")
        return train_ds, None
    tokens = sum(len(s) for s in eval_seqs)
    if not config.carry_state and num_windows(tokens, config.window_size, config.window_size) < config.batch_size:
        held = f"the {len(eval_seqs)} eval {'melody holds' if len(eval_seqs) == 1 else 'melodies hold'}"
        log(f"no evaluation: {held} {tokens} tokens, fewer than one batch of "
            f"{config.batch_size} windows of {config.window_size} (carry_state=true evaluates melodies of any "
            "length)")
        return train_ds, None
    return train_ds, dist.experimental_distribute_dataset(make_dataset(eval_seqs, _eval_batching(config), meter[1]))


def _batching(config: ModelConfig, seed: int) -> Batching:
    """Training batches as the config lays them out: shuffled, repeated."""
    return Batching(config.window_size, config.batch_size, config.window_stride, config.carry_state, seed=seed)


def _eval_batching(config: ModelConfig, drop_remainder: bool = True) -> Batching:
    """Evaluation batches: every window once, in order; lanes carry the state through each whole melody, as
    `melody_evaluate` scores it."""
    return Batching(config.window_size, config.batch_size, config.window_size, config.carry_state, shuffle=False,
                    repeat=False, drop_remainder=drop_remainder)
