"""Whole melodies -> how well a model predicts them: bits per note, perplexity, accuracy.

Entry points: `score_sequences(model, sequences, vocab) -> dict`, `evaluate_input(generator, input_path) -> dict`
(behind `melody_evaluate`). Every melody is scored from its start token on, with the hidden state carried
through the whole melody (no windows). Unknown notes are scored through the `<unk>` token and counted. A model
with meter features is fed each token's bar position and bar length, from the melody's true durations (an
`<unk>` note lasts its own duration).
"""

from __future__ import annotations

import math

import numpy as np

from melody_plugin import corpus as corpus_lib
from melody_plugin.numpy_model import LN2, log_softmax
from melody_plugin.errors import MelodyPluginError
from melody_plugin.vocab import PAD, START, UNK, Vocabulary, meter_features


class EvaluationError(MelodyPluginError):
    """Nothing to score: every input file was skipped."""

UNKNOWN_PITCH = 128  # an <unk> note's pitch when only ids are given: outside MIDI, so in no vocabulary


def score_sequences(model, sequences, vocab: Vocabulary, batch_size: int = 64, target_pitches=None,
                    features=None) -> dict:
    """Scores id sequences (each starting with the start token) with a `NumpyLSTM`-like model.

    Args:
      model: has `.run(ids (batch, time)) -> (logits (batch, time, vocab), state)`.
      sequences: lists of ids, the start token first.
      vocab: the model's vocabulary.
      batch_size: sequences per model call.
      target_pitches: for each sequence, the true pitch (REST for rests) of every id after the start token, so
        that an `<unk>` target is known to be a note or a rest, and of which pitch. Without it an `<unk>` target
        counts as a note of a pitch the vocabulary lacks.
      features: for a model with meter features, (positions, bar_steps) of each sequence, each as long as it
        (`vocab.meter_features`); `model.run` then takes them as `positions=`/`bar_steps=`.

    Returns:
      bits_per_note (all token NLL / pitched notes, `<unk>` notes included), bits_per_token, perplexity,
      accuracy, pitch_bits_per_note (pitch NLL per note: the marginal of the note's pitch over its durations, or
      the `<unk>` probability for a pitch the vocabulary lacks), notes, unk_notes, tokens, oov_tokens.
    """
    pitches = vocab.pitches()
    # pitch marginal: sum the probabilities of every duration of a pitch
    pitch_values = np.unique(pitches[pitches >= 0])
    pitch_groups = np.zeros((len(vocab), len(pitch_values)), dtype=np.float64)
    for j, p in enumerate(pitch_values):
        pitch_groups[pitches == p, j] = 1.0
    totals = dict(nll=0.0, correct=0, tokens=0, notes=0, unk_notes=0, pitch_nll=0.0, oov=0)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        length = max(len(sequences[i]) for i in rows)
        ids = np.full((len(rows), length), PAD, dtype=np.int64)
        positions = np.zeros((len(rows), length), dtype=np.int64)  # padding's features are never scored
        bar_steps = np.ones((len(rows), length), dtype=np.int64)
        true_pitch = np.full((len(rows), length - 1), -2, dtype=np.int64)  # of each target; -2 under padding
        for r, i in enumerate(rows):
            ids[r, :len(sequences[i])] = sequences[i]
            if features is not None:
                positions[r, :len(sequences[i])], bar_steps[r, :len(sequences[i])] = features[i]
            if target_pitches is not None:
                true_pitch[r, :len(sequences[i]) - 1] = target_pitches[i]
        targets = ids[:, 1:]
        mask = targets != PAD
        if target_pitches is None:
            true_pitch = np.where(targets == UNK, UNKNOWN_PITCH, pitches[targets])
        if features is None:
            logits, _ = model.run(ids[:, :-1])
        else:
            logits, _ = model.run(ids[:, :-1], positions=positions[:, :-1], bar_steps=bar_steps[:, :-1])
        logp = log_softmax(logits.astype(np.float64))  # (batch, time, vocab)
        target_logp = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
        totals["nll"] -= float((target_logp * mask).sum())
        totals["correct"] += int(((logp.argmax(-1) == targets) & mask).sum())
        totals["tokens"] += int(mask.sum())
        totals["oov"] += int(((targets == UNK) & mask).sum())
        note_mask = mask & (true_pitch >= 0)
        totals["notes"] += int(note_mask.sum())
        totals["unk_notes"] += int((note_mask & (targets == UNK)).sum())
        if note_mask.any():
            # a pitch the vocabulary has is scored by its marginal (even as <unk>: only its duration is new);
            # any other pitch can only come through <unk>
            column = np.clip(np.searchsorted(pitch_values, true_pitch), 0, max(len(pitch_values) - 1, 0))
            known = (pitch_values[column] == true_pitch) if len(pitch_values) else np.zeros_like(note_mask)
            pitch_probs = np.exp(logp) @ pitch_groups  # (batch, time, pitches)
            p_known = np.take_along_axis(pitch_probs, column[..., None], -1)[..., 0] if len(pitch_values) else 0.0
            p = np.where(known, p_known, np.exp(logp[..., UNK]))
            totals["pitch_nll"] -= float((np.log(np.maximum(p, 1e-300)) * note_mask).sum())
    tokens, notes = max(totals["tokens"], 1), max(totals["notes"], 1)
    return {
        "bits_per_note": totals["nll"] / LN2 / notes,
        "bits_per_token": totals["nll"] / LN2 / tokens,
        "perplexity": math.exp(totals["nll"] / tokens),
        "accuracy": totals["correct"] / tokens,
        "pitch_bits_per_note": totals["pitch_nll"] / LN2 / notes,
        "notes": totals["notes"],
        "unk_notes": totals["unk_notes"],
        "tokens": totals["tokens"],
        "oov_tokens": totals["oov"],
    }


def evaluate_input(generator, input_path=None, progress=None) -> dict:
    """Reads every file of `input_path` with the model's converters and scores its melodies.

    `bits_per_note` divides the NLL of every token (rests included, as the model must predict them) by the number
    of pitched notes, those outside the vocabulary (`unk_notes`, scored through `<unk>`) included;
    `pitch_bits_per_note` is the NLL of the pitch alone (duration marginalised) per note.
    """
    config, vocab = generator.config, generator.vocab
    corpus, melodies = corpus_lib.scoring_melodies(input_path, config, progress)
    sequences = [[START] + vocab.encode(m, map_oov=False) for m in melodies]  # one id per note
    target_pitches = [[n.pitch for n in m.notes] for m in melodies]
    skipped = [{"file": r.path, "reason": r.error} for r in corpus.results if r.error]
    if not sequences:
        first = f"; {skipped[0]['file']}: {skipped[0]['reason']}" if skipped else ""
        raise EvaluationError(f"{input_path}: no melody to score ({len(corpus.results)} files, all skipped{first})")
    features = None
    if getattr(generator.model, "meter_features", False):
        features = [meter_features([0] + [n.duration_steps for n in m.notes], m.steps_per_bar) for m in melodies]
    scores = score_sequences(generator.model, sequences, vocab, target_pitches=target_pitches, features=features)
    scores["files"] = sum(1 for r in corpus.results if not r.error)
    scores["skipped"] = len(skipped)
    scores["skipped_files"] = skipped[:20]  # the first 20, each with its reason
    scores["melodies"] = len(sequences)
    return scores
