"""Pictures and sound: piano-roll PNGs, WAV files, and the training curve.

Entry points: `piano_roll_png(melody, path, primer_steps=...)`, `wav_file(note_sequence, path)`,
`training_curve(metrics_jsonl, path)`. matplotlib draws (Agg backend, no screen needed); pretty_midi's
synthesizer makes the sound. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import wave

import numpy as np

from melody_plugin import atomic
from melody_plugin.melody import Melody


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def piano_roll_png(melody: Melody, path, primer_steps: int = 0, title: str = "") -> None:
    """Draws the melody as a piano roll: primer in grey-blue, continuation in orange, bar lines, meter."""
    plt = _pyplot()
    spb, total = melody.steps_per_bar, max(melody.total_steps, 1)
    fig, ax = plt.subplots(figsize=(min(4 + total / spb * 0.9, 24), 4))
    step, pitches = 0, []
    for note in melody.notes:
        if not note.is_rest:
            color = "#4c72b0" if step < primer_steps else "#dd8452"
            ax.add_patch(plt.Rectangle((step / spb, note.pitch - 0.4), note.duration_steps / spb, 0.8,
                                       facecolor=color, edgecolor="black", linewidth=0.4))
            pitches.append(note.pitch)
        step += note.duration_steps
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (58, 74)
    for bar in range(int(np.ceil(total / spb)) + 1):
        ax.axvline(bar, color="black" if bar % 4 == 0 else "#999999", linewidth=0.8 if bar % 4 == 0 else 0.5)
    if primer_steps:
        ax.axvline(primer_steps / spb, color="#c44e52", linewidth=1.5, linestyle="--")
    ax.set_xlim(0, max(total / spb, 1))
    ax.set_ylim(lo, hi)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from melody_plugin.vocab import pitch_name

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: pitch_name(int(value))))
    ax.set_xlabel(f"bar ({melody.time_signature[0]}/{melody.time_signature[1]}, {melody.qpm:g} qpm)")
    ax.set_ylabel("pitch")
    legend = [plt.Rectangle((0, 0), 1, 1, facecolor="#dd8452", label="continuation")]
    if primer_steps:
        legend.insert(0, plt.Rectangle((0, 0), 1, 1, facecolor="#4c72b0", label="primer"))
    ax.legend(handles=legend, loc="upper right", fontsize=8)
    ax.set_title(title or f"{melody.time_signature[0]}/{melody.time_signature[1]} in {melody.key_name}")
    fig.tight_layout()
    _save(fig, path)


def wav_bytes(note_sequence, sample_rate: int = 22050) -> bytes:
    """16-bit mono WAV of a NoteSequence, synthesized with pretty_midi (sine waves; no soundfont needed)."""
    from note_seq import midi_io as ns_midi_io

    pm = ns_midi_io.note_sequence_to_pretty_midi(note_sequence)
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
