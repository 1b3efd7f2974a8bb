"""Pictures and sound: piano-roll PNGs, WAV files, and the training curve.

Entry points: `piano_roll_png(melody, path, primer_steps=...)` (drawn by `piano_roll_figure`),
`wav_file(note_sequence, path)`, `training_curve(metrics_jsonl, path)`. matplotlib draws (Agg backend, no screen
needed); pretty_midi's synthesizer makes the sound. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import wave

import numpy as np

from melody_plugin.io.midi import note_sequence_to_pretty_midi
from melody_plugin.music.melody import FLAT_NAMES, SHARP_NAMES, Melody, pitch_name
from melody_plugin.runtime import atomic


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display), with `plt.patches`: the matplotlib edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    plt.patches = matplotlib.patches
    return plt


def _save(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # keeps a legend beside the axes
    _pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def piano_roll_png(melody: Melody, path, primer_steps: int = 0, title: str = "") -> None:
    """Draws the melody as a piano roll (see `piano_roll_figure`) and writes it as a PNG."""
    _save(piano_roll_figure(melody, primer_steps, title), path)


BLACK_KEYS = (1, 3, 6, 8, 10)
FLAT_MAJOR_KEYS = (5, 10, 3, 8, 1, 6)  # F, Bb, Eb, Ab, Db, Gb major (and their relative minors)


def _note_names(melody: Melody) -> tuple[str, ...]:
    """Row names spelled as the key signature spells them (Bb in G minor, A# in B major)."""
    major_tonic = (melody.key + 3) % 12 if melody.minor else melody.key
    return FLAT_NAMES if major_tonic in FLAT_MAJOR_KEYS else SHARP_NAMES
PRIMER_COLOR, CONTINUATION_COLOR = "#4c72b0", "#dd8452"


def describe(melody: Melody) -> str:
    """Key, meter and tempo in words: "D major, 6/8, 120 qpm" (or "120-90 qpm" when the tempo changes)."""
    num, den = melody.time_signature
    tempo = f"{melody.qpm:g}" if not melody.tempo_changes else f"{melody.qpm:g}-{melody.final_qpm:g}"
    return f"{melody.key_name}, {num}/{den}, {tempo} qpm"


def piano_roll_figure(melody: Melody, primer_steps: int = 0, title: str = ""):
    """A matplotlib figure of the melody: one row per semitone, primer in blue, continuation in orange.

    Rows are shaded like a keyboard's black keys, a darker line marks each octave (below every C), C rows are
    labelled with their octave (C4 = MIDI 60) and the others with their note name, spelled as the key is. Bar
    lines are vertical; the title names the key, meter and tempo; the legend sits outside the axes, so it never
    covers a note.
    """
    plt = _pyplot()
    Patch, Rectangle = plt.patches.Patch, plt.patches.Rectangle  # matplotlib's classes


    spb, total = melody.steps_per_bar, max(melody.total_steps, 1)
    notes, step = [], 0
    for note in melody.notes:
        if not note.is_rest:
            notes.append((step, note))
        step += note.duration_steps
    pitches = [n.pitch for _, n in notes]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (58, 74)
    rows = hi - lo + 1
    fig, ax = plt.subplots(figsize=(min(4 + total / spb * 0.9, 24), min(1.6 + rows * 0.17, 16)))
    for pitch in range(lo, hi + 1):
        if pitch % 12 in BLACK_KEYS:
            ax.axhspan(pitch - 0.5, pitch + 0.5, facecolor="#eeeeee", linewidth=0, zorder=0)
        octave = pitch % 12 == 0
        ax.axhline(pitch - 0.5, color="#777777" if octave else "#dddddd", linewidth=0.9 if octave else 0.4, zorder=1)
    for bar in range(int(np.ceil(total / spb)) + 1):
        ax.axvline(bar, color="black" if bar % 4 == 0 else "#999999", linewidth=0.8 if bar % 4 == 0 else 0.5,
                   zorder=2)
    for start, note in notes:
        color = PRIMER_COLOR if start < primer_steps else CONTINUATION_COLOR
        ax.add_patch(Rectangle((start / spb, note.pitch - 0.4), note.duration_steps / spb, 0.8, facecolor=color,
                               edgecolor="black", linewidth=0.4, zorder=3))
    if primer_steps:
        ax.axvline(primer_steps / spb, color="#c44e52", linewidth=1.5, linestyle="--", zorder=4)
    ax.set_xlim(0, max(total / spb, 1))
    ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_yticks(range(lo, hi + 1))
    names = _note_names(melody)
    ax.set_yticklabels([pitch_name(p) if p % 12 == 0 else names[p % 12] for p in range(lo, hi + 1)], fontsize=7)
    for label, pitch in zip(ax.get_yticklabels(), range(lo, hi + 1)):
        if pitch % 12 == 0:
            label.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("bar")
    ax.set_ylabel("pitch")
    legend = [Patch(facecolor=CONTINUATION_COLOR, edgecolor="black", label="continuation")]
    if primer_steps:
        legend.insert(0, Patch(facecolor=PRIMER_COLOR, edgecolor="black", label="primer"))
    # outside the axes, right of the plot: a legend inside may land on notes
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_title(f"{title}: {describe(melody)}" if title else describe(melody), fontsize=10)
    fig.tight_layout()
    return fig


def wav_bytes(note_sequence, sample_rate: int = 22050) -> bytes:
    """16-bit mono WAV of a NoteSequence, synthesized with pretty_midi (sine waves; no soundfont needed)."""

    pm = note_sequence_to_pretty_midi(note_sequence)
    audio = pm.synthesize(fs=sample_rate)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = audio / peak * 0.8
    pcm = (audio * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def wav_file(note_sequence, path, sample_rate: int = 22050) -> None:
    atomic.write_bytes(path, wav_bytes(note_sequence, sample_rate))


def read_metrics(path) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line torn by a kill
    except FileNotFoundError:
        pass
    return rows


def training_curve(metrics_path, path) -> bool:
    """Loss and bits-per-note curves (train and eval) from metrics.jsonl. Returns False if there is nothing yet."""
    rows = read_metrics(metrics_path)
    if not rows:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "loss", "loss (nats/token)"), (axes[1], "bits_per_note", "bits per note")):
        for split, style in (("train", "-"), ("eval", "--")):
            points = [(r["step"], r[split][key]) for r in rows if r.get(split)]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return True
