"""Whole melodies -> how well a model predicts them: bits per note, perplexity, accuracy.

Entry points: `score_sequences(model, sequences, vocab) -> dict`, `evaluate_input(generator, input_path) -> dict`
(behind `melody_evaluate`). Every melody is scored from its start token on, with the hidden state carried
through the whole melody (no windows). Unknown notes are scored through the `<unk>` token and counted.
"""

from __future__ import annotations

import math

import numpy as np

from melody_plugin import corpus as corpus_lib
from melody_plugin.numpy_model import log_softmax
from melody_plugin.vocab import PAD, START, UNK, Vocabulary

LN2 = math.log(2.0)


def score_sequences(model, sequences, vocab: Vocabulary, batch_size: int = 64) -> dict:
    """Scores id sequences (each starting with the start token) with a `NumpyLSTM`-like model."""
    pitches = vocab.pitches()
    pitched = pitches >= 0
    # pitch marginal: sum the probabilities of every duration of a pitch
    pitch_values = np.unique(pitches[pitched])
    pitch_groups = np.zeros((len(vocab), len(pitch_values)), dtype=np.float64)
    for j, p in enumerate(pitch_values):
        pitch_groups[pitches == p, j] = 1.0
    pitch_column = np.zeros(len(vocab), dtype=np.int64)  # id -> its pitch's column (0 for rests and specials)
    for j, p in enumerate(pitch_values):
        pitch_column[pitches == p] = j
    totals = dict(nll=0.0, correct=0, tokens=0, notes=0, note_nll=0.0, pitch_nll=0.0, oov=0)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        batch = [np.asarray(sequences[i]) for i in order[start:start + batch_size]]
        length = max(len(s) for s in batch)
        ids = np.full((len(batch), length), PAD, dtype=np.int64)
        for r, s in enumerate(batch):
            ids[r, :len(s)] = s
        logits, _ = model.run(ids[:, :-1])
        logp = log_softmax(logits.astype(np.float64))  # (batch, time, vocab)
        targets = ids[:, 1:]
        mask = targets != PAD
        target_logp = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
        totals["nll"] -= float((target_logp * mask).sum())
        totals["correct"] += int(((logp.argmax(-1) == targets) & mask).sum())
        totals["tokens"] += int(mask.sum())
        totals["oov"] += int(((targets == UNK) & mask).sum())
        note_mask = mask & pitched[targets] & (targets != UNK)
        totals["notes"] += int(note_mask.sum())
        totals["note_nll"] -= float((target_logp * note_mask).sum())
        if note_mask.any():
            pitch_probs = np.exp(logp) @ pitch_groups  # (batch, time, pitches)
            p = np.take_along_axis(pitch_probs, pitch_column[targets][..., None], -1)[..., 0]
            totals["pitch_nll"] -= float((np.log(np.maximum(p, 1e-300)) * note_mask).sum())
    tokens, notes = max(totals["tokens"], 1), max(totals["notes"], 1)
    return {
        "bits_per_note": totals["nll"] / LN2 / notes,
        "bits_per_token": totals["nll"] / LN2 / tokens,
        "perplexity": math.exp(totals["nll"] / tokens),
        "accuracy": totals["correct"] / tokens,
        "pitch_bits_per_note": totals["pitch_nll"] / LN2 / notes,
        "notes": totals["notes"],
        "tokens": totals["tokens"],
        "oov_tokens": totals["oov"],
    }


def evaluate_input(generator, input_path=None, progress=None) -> dict:
    """Reads every file of `input_path` with the model's converters and scores its melodies.

    `bits_per_note` divides the NLL of every token (rests included, as the model must predict them) by the number
    of pitched notes; `pitch_bits_per_note` is the NLL of the pitch alone (duration marginalised) per note.
    """
    config, vocab = generator.config, generator.vocab
    corpus = corpus_lib.collect_melodies(input_path, config, eval_ratio=0.0, progress=progress)
    melodies = corpus_lib.prepare_melodies(corpus.train, config, augment=False)
    sequences = [[START] + vocab.encode(m, map_oov=False) for m in melodies]
    if not sequences:
        from melody_plugin.errors import MelodyPluginError

        raise MelodyPluginError(f"{input_path}: no melody to score ({len(corpus.results)} files, all skipped)")
    scores = score_sequences(generator.model, sequences, vocab)
    scores["files"] = sum(1 for r in corpus.results if not r.error)
    scores["skipped"] = sum(1 for r in corpus.results if r.error)
    scores["melodies"] = len(sequences)
    return scores
