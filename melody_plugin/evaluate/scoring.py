"""Scoring melodies: bits per note, pitch bits, accuracy of whole melodies; continuations against references."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from melody_plugin.errors import MelodyPluginError
from melody_plugin.evaluate import form
from melody_plugin.evaluate.continuation import ContinuationError, average, compare, slice_steps
from melody_plugin.io.inputs import default_input
from melody_plugin.model.numpy_model import LN2, log_softmax
from melody_plugin.music.melody import DEFAULT_STEPS_PER_QUARTER
from melody_plugin.tokens.corpus import scoring_melodies
from melody_plugin.tokens.form import countdown_features
from melody_plugin.tokens.vocab import PAD, START, UNK, Vocabulary, meter_features


def bits_per(nll_nats: float, count: float) -> float:
    """A summed NLL in nats as bits per note (or per token): the one place bits are counted, in training's
    summaries and in scoring alike."""
    return nll_nats / LN2 / max(count, 1)


class EvaluationError(MelodyPluginError):
    """Nothing to score: every input file was skipped."""


UNKNOWN_PITCH = 128  # an <unk> note's pitch when only ids are given: outside MIDI, so in no vocabulary


def score_ids(model, sequences, vocab: Vocabulary, batch_size: int = 64, target_pitches=None,
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
        (`vocab.meter_features`); `model.run` then takes them as `positions=`/`bar_steps=`. A third array, each
        token's duration in steps, is passed as `durations_steps=` (the rolls of a model that looks back; default
        the vocabulary's durations, `<unk>` 0), a fourth as `bars_left=` (a countdown model).

    Returns:
      bits_per_note (all token NLL / pitched notes, `<unk>` notes included), bits_per_token, perplexity,
      accuracy, pitch_bits_per_note (pitch NLL per note: the marginal of the note's pitch over its durations, or
      the `<unk>` probability for a pitch the vocabulary lacks), notes, unk_notes, tokens, oov_tokens. With an
      end token in the vocabulary, the end targets are left out of all of these (figures comparable with models
      without one) and counted in bits_per_note_with_end (every token's NLL, the end's included, per note),
      end_bits (the mean NLL of ending where the melodies end) and endings.
    """
    pitches = vocab.pitches()
    # pitch marginal: sum the probabilities of every duration of a pitch
    pitch_values = np.unique(pitches[pitches >= 0])
    pitch_groups = np.zeros((len(vocab), len(pitch_values)), dtype=np.float64)
    for j, p in enumerate(pitch_values):
        pitch_groups[pitches == p, j] = 1.0
    totals = dict(nll=0.0, correct=0, tokens=0, notes=0, unk_notes=0, pitch_nll=0.0, oov=0, end_nll=0.0, endings=0)
    end_id = vocab.end_id
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        length = max(len(sequences[i]) for i in rows)
        ids = np.full((len(rows), length), PAD, dtype=np.int64)
        positions = np.zeros((len(rows), length), dtype=np.int64)  # padding's features are never scored
        bar_steps = np.ones((len(rows), length), dtype=np.int64)
        steps = np.zeros((len(rows), length), dtype=np.int64)
        countdown = np.zeros((len(rows), length), dtype=np.int64)
        own_steps = features is not None and len(features[0]) > 2
        with_countdown = features is not None and len(features[0]) > 3
        true_pitch = np.full((len(rows), length - 1), -2, dtype=np.int64)  # of each target; -2 under padding
        for r, i in enumerate(rows):
            ids[r, :len(sequences[i])] = sequences[i]
            if features is not None:
                positions[r, :len(sequences[i])], bar_steps[r, :len(sequences[i])] = features[i][:2]
                if own_steps:
                    steps[r, :len(sequences[i])] = features[i][2]
                if with_countdown:
                    countdown[r, :len(sequences[i])] = features[i][3]
            if target_pitches is not None:
                true_pitch[r, :len(sequences[i]) - 1] = target_pitches[i]
        targets = ids[:, 1:]
        ends = targets == end_id if end_id is not None else np.zeros(targets.shape, bool)
        mask = (targets != PAD) & ~ends
        if target_pitches is None:
            true_pitch = np.where(targets == UNK, UNKNOWN_PITCH, pitches[targets])
        if features is None:
            logits, _ = model.run(ids[:, :-1])
        else:
            extra = {"durations_steps": steps[:, :-1]} if own_steps else {}
            extra.update({"bars_left": countdown[:, :-1]} if with_countdown else {})
            logits, _ = model.run(ids[:, :-1], positions=positions[:, :-1], bar_steps=bar_steps[:, :-1], **extra)
        logp = log_softmax(logits.astype(np.float64))  # (batch, time, vocab)
        target_logp = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
        totals["nll"] -= float((target_logp * mask).sum())
        totals["end_nll"] -= float((target_logp * ends).sum())
        totals["endings"] += int(ends.sum())
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
        "bits_per_note": bits_per(totals["nll"], notes),
        "bits_per_token": bits_per(totals["nll"], tokens),
        "perplexity": math.exp(totals["nll"] / tokens),
        "accuracy": totals["correct"] / tokens,
        "pitch_bits_per_note": bits_per(totals["pitch_nll"], notes),
        "notes": totals["notes"],
        "unk_notes": totals["unk_notes"],
        "tokens": totals["tokens"],
        "oov_tokens": totals["oov"],
        **({"bits_per_note_with_end": bits_per(totals["nll"] + totals["end_nll"], notes),
            "end_bits": bits_per(totals["end_nll"], totals["endings"]), "endings": totals["endings"]}
           if end_id is not None else {}),
    }


def melody_features(model, steps, steps_per_bar: int, open_ending: bool = True) -> tuple:
    """`score_ids`'s features of one melody for `model`: (positions, bar_steps[, steps[, bars_left]]).

    A countdown model is scored with the length of the melody unknown (`open_ending`, the open countdown), unless
    asked otherwise: then the likelihood is that of the melody given its length.
    """
    features = meter_features(steps, steps_per_bar)
    if getattr(model, "bar_lookback", False) or getattr(model, "copy_bars", ()) or getattr(model, "countdown", False):
        features += (steps,)
    if getattr(model, "countdown", False):
        features += (countdown_features(steps, steps_per_bar, open_ending),)
    return features


def evaluate_input(generator, input_path=None, progress=None) -> dict:
    """Reads every file of `input_path` with the model's converters and scores its melodies.

    `bits_per_note` divides the NLL of every token (rests included, as the model must predict them) by the number
    of pitched notes, those outside the vocabulary (`unk_notes`, scored through `<unk>`) included;
    `pitch_bits_per_note` is the NLL of the pitch alone (duration marginalised) per note.
    """
    config, vocab = generator.config, generator.vocab
    corpus, melodies = scoring_melodies(input_path, config, progress)
    sequences = [[START] + vocab.with_end(vocab.encode(m, map_oov=False)) for m in melodies]  # one id per note
    target_pitches = [[n.pitch for n in m.notes] + [-2] * vocab.end_token for m in melodies]  # -2: the end
    skipped = [{"file": r.path, "reason": r.error} for r in corpus.results if r.error]
    if not sequences:
        first = f"; {skipped[0]['file']}: {skipped[0]['reason']}" if skipped else ""
        raise EvaluationError(f"{input_path}: no melody to score ({len(corpus.results)} files, all skipped{first})")
    features = None
    if getattr(generator.model, "meter_features", False):
        steps = [np.array([0] + [n.duration_steps for n in m.notes] + [0] * vocab.end_token) for m in melodies]
        features = [melody_features(generator.model, d, m.steps_per_bar) for d, m in zip(steps, melodies)]
    scores = score_ids(generator.model, sequences, vocab, target_pitches=target_pitches, features=features)
    # what was scored: without --input, the example tunes shipped with the package (not the run's eval split)
    scores["input"] = str(input_path or default_input())
    scores["files"] = sum(1 for r in corpus.results if not r.error)
    scores["skipped"] = len(skipped)
    scores["skipped_files"] = skipped[:20]  # the first 20, each with its reason
    scores["melodies"] = len(sequences)
    return scores


_OUTPUT_INDEX = re.compile(r"^(?P<stem>.+?)(?:_cont)?_\d+$")  # melody_generate writes PRIMER_cont_001.mid


def pair_by_name(generated: dict[str, Path], references: dict[str, Path]) -> tuple[dict, list[str]]:
    """({reference name: [generated names]}, generated names without a reference).

    A generated file pairs with the reference of the same name, else with the reference its name continues
    with `_cont_NNN` or `_NNN` (melody_generate's numbering): `tune.mid` and `tune_cont_002.mid` both score
    against references/tune.mid.
    """
    pairs, unpaired = {}, []
    for name in sorted(generated):
        match = _OUTPUT_INDEX.match(name)
        reference = name if name in references else (match["stem"] if match else None)
        if reference in references:
            pairs.setdefault(reference, []).append(name)
        else:
            unpaired.append(name)
    return pairs, unpaired


def evaluate_continuations(generated_dir, references_dir, skip_bars: int = 0,
                           steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER,
                           policy: str = "highest") -> dict:
    """Scores a folder of generated melodies against a folder of references, as scripts/benchmark_continuation.py.

    Files pair by name (`pair_by_name`); each generated melody is compared with its reference
    (`compare`: pitch-class, interval and duration histogram overlaps, notes per bar), the figures
    are averaged per reference (tune), then over tunes. A file on one side only, or one that cannot be read, is
    listed with the reason and counted, and the rest is scored.

    Args:
      skip_bars: bars dropped from the start of every generated melody first, e.g. the primer's when
        melody_generate ran without --continuation_only.

    Raises:
      EvaluationError: no pair could be scored at all.
      InputFileError: a folder that is not there.
    """
    if skip_bars < 0:
        raise EvaluationError(f"skip_bars must be >= 0, got {skip_bars}")
    generated, references = form.files_by_name(generated_dir), form.files_by_name(references_dir)
    pairs, unpaired = pair_by_name(generated, references)
    missing = sorted(set(references) - set(pairs))
    skipped, tune_scores, scored_pairs = [], [], 0
    shapes, reference_shapes = [], []  # form figures of each scored continuation (with its primer) and reference
    for name, outputs in pairs.items():
        try:
            reference = form.melody_of_file(references[name], steps_per_quarter, policy)
        except MelodyPluginError as e:
            skipped.append({"file": str(references[name]), "reason": form.reason(e, references[name])})
            continue
        scores = []
        for output in outputs:
            path = generated[output]
            try:
                melody = form.melody_of_file(path, steps_per_quarter, policy)
                spb = melody.steps_per_bar
                if melody.total_steps <= skip_bars * spb:
                    raise ContinuationError(f"{melody.total_steps / spb:g} bars, nothing left after "
                                            f"skipping {skip_bars}")
                primer = slice_steps(melody, 0, skip_bars * spb) if skip_bars else None
                melody = slice_steps(melody, skip_bars * spb, melody.total_steps)
                scores.append(compare(melody, reference))
                shapes.append(form.form_figures(melody, primer))
            except MelodyPluginError as e:
                skipped.append({"file": str(path), "reason": form.reason(e, path)})
        if scores:
            tune_scores.append(average(scores))
            scored_pairs += len(scores)
            reference_shapes.append(form.form_figures(reference))
    if not tune_scores:
        paired = sum(map(len, pairs.values()))
        detail = ""
        if skipped:
            detail = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped[:3])
            detail += "; ..." if len(skipped) > 3 else ""
        elif not paired:
            detail = "files pair by name: NAME_cont_NNN.mid (or NAME_NNN.mid) against NAME.mid in the references"
        raise EvaluationError(f"{generated_dir}: no generated melody could be scored against {references_dir} "
                              f"({len(generated)} generated, {len(references)} references, {paired} paired, "
                              f"{len(skipped)} skipped{': ' + detail if detail else ''})")
    result = average(tune_scores)
    result.update({
        # how the continuations end and repeat (and, with skip_bars, relate to the primer), beside the references
        "form": form.average_figures(shapes), "reference_form": form.average_figures(reference_shapes),
        "tunes": len(tune_scores),
        "pairs": scored_pairs,
        "unpaired_generated": len(unpaired),
        "unpaired_references": len(missing),
        "skipped": len(skipped),
        # the first 20 of each, with the reason
        "unpaired_files": ([{"file": str(generated[n]), "reason": "no reference of this name"} for n in unpaired]
                           + [{"file": str(references[n]), "reason": "no generated file of this name"}
                              for n in missing])[:20],
        "skipped_files": skipped[:20],
    })
    return result
