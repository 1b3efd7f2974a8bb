"""Piano roll: one row per semitone, octave lines and C labels, key/meter/tempo in the title, legend off the notes."""

import pytest

from melody_plugin.generate import render
from melody_plugin.music.melody import REST, Melody, Note

# a 6/8 phrase in D major at 96 qpm, 12 steps per quarter (a bar is 36 steps); the last two notes cross C5
PHRASE = [(62, 18), (64, 6), (66, 6), (67, 6), (69, 18), (REST, 18), (74, 12), (73, 6), (71, 12), (72, 6)]
SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


@pytest.fixture
def figure():
    melody = Melody(tuple(Note(p, d) for p, d in PHRASE), 12, (6, 8), 96.0, key=2)
    fig = render.piano_roll_figure(melody, primer_steps=72, title="tune_001.mid")
    yield fig
    import matplotlib.pyplot as plt

    plt.close(fig)


def note_patches(ax):
    from matplotlib.patches import Rectangle

    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0 and p.get_height() < 1]


def test_one_labelled_row_per_semitone_with_c_labels_carrying_the_octave(figure):
    ax = figure.axes[0]
    ticks = [int(t) for t in ax.get_yticks()]
    assert ticks == list(range(ticks[0], ticks[-1] + 1))  # every semitone, none skipped
    assert ticks[0] <= 62 and ticks[-1] >= 74
    labels = dict(zip(ticks, (t.get_text() for t in ax.get_yticklabels())))
    assert labels[60] == "C4" and labels[72] == "C5"  # MIDI 60 is middle C, C4
    for pitch in ticks:
        if pitch % 12:
            assert labels[pitch] == SHARP_NAMES[pitch % 12]
    lo, hi = ax.get_ylim()
    assert (lo, hi) == (ticks[0] - 0.5, ticks[-1] + 0.5)  # rows are whole semitones, centred on their pitch


def test_every_note_sits_in_the_middle_of_its_own_row(figure):
    ax = figure.axes[0]
    drawn = sorted((round(p.get_x() * 36), round(p.get_y() + p.get_height() / 2, 6)) for p in note_patches(ax))
    expected, step = [], 0
    for pitch, duration in PHRASE:
        if pitch != REST:
            expected.append((step, float(pitch)))
        step += duration
    assert drawn == expected


def test_octave_lines_lie_below_each_c(figure):
    ax = figure.axes[0]
    horizontal = {}
    for line in ax.get_lines():
        ys = line.get_ydata()
        if len(set(ys)) == 1 and line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 1:  # an axhline
            horizontal[float(ys[0])] = line.get_linewidth()
    octave = max(horizontal.values())
    assert sorted(y for y, width in horizontal.items() if width == octave) == [59.5, 71.5]


def test_title_names_key_meter_and_tempo(figure):
    title = figure.axes[0].get_title()
    assert title.startswith("tune_001.mid") and "D major" in title and "6/8" in title and "96 qpm" in title


def test_legend_never_covers_a_note(figure):
    figure.canvas.draw()
    ax = figure.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())  # beside the axes, so no note can be under it
    assert not any(legend.overlaps(p.get_window_extent()) for p in note_patches(ax))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["primer", "continuation"]


def test_piano_roll_png_writes_the_picture_with_its_legend(tmp_path):
    melody = Melody(tuple(Note(p, d) for p, d in PHRASE), 12, (6, 8), 96.0, key=2)
    path = tmp_path / "roll.png"
    render.piano_roll_png(melody, path, primer_steps=72)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    figure_width = render.piano_roll_figure(melody).get_size_inches()[0] * 110
    assert width > figure_width * 0.9  # the legend beside the axes was kept, not cropped off


def test_rows_are_spelled_as_the_key_signature_spells_them():
    import matplotlib.pyplot as plt

    notes = tuple(Note(p, 12) for p in (67, 70, 69, 66, 67))  # G Bb A F# G
    for key, minor, expected in ((7, True, "Bb"), (10, False, "Bb"), (11, False, "A#"), (2, False, "A#")):
        fig = render.piano_roll_figure(Melody(notes, 12, (4, 4), 120.0, key=key, minor=minor))
        ax = fig.axes[0]
        labels = dict(zip((int(t) for t in ax.get_yticks()), (t.get_text() for t in ax.get_yticklabels())))
        assert labels[70] == expected, (key, minor)
        plt.close(fig)
