"""The shared data path: files and NoteSequence TFRecords -> split melodies -> datasets and their report."""

import hashlib
import json

import conftest
import pytest
from conftest import PHRASES, pattern_notes, write_midi

from melody_plugin.errors import InputFileError
from melody_plugin.io import music21_score
from melody_plugin.io.files import READER_ENV, read_music_file
from melody_plugin.io.tfrecord import write_note_sequence_tfrecord
from melody_plugin.model import registry
from melody_plugin.tokens import corpus
from melody_plugin.tokens import records as dataset
from melody_plugin.tokens.vocab import Vocabulary

ONE_SPLIT = corpus.Reading(eval_ratio=0.0, progress=False)  # every melody in the train split


def config(**kw):
    return registry.with_hparams(registry.get_config("char_lstm"), {"min_notes": 2, **kw})


def in_eval(name: str, ratio: float) -> bool:
    """The documented split rule, computed here: sha1 of the file name, first 12 hex digits / 16**12 < ratio."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / 16**12 < ratio


def distinct_tunes(folder, count):
    """`count` files whose melodies differ (tune i is the 4/4 phrase moved up i semitones)."""
    folder.mkdir()
    for i in range(count):
        notes = [(p + i, s, e) for p, s, e in pattern_notes(PHRASES[(4, 4)], 2)]
        write_midi(folder / f"tune_{i:02d}.mid", notes)
    return folder


def test_create_dataset_report_is_accurate_with_broken_files(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        write_midi(folder / f"good{i}.mid", pattern_notes(PHRASES[(3, 4)], 3), time_signature=(3, 4))
    (folder / "empty.mid").write_bytes(b"")
    (folder / "text.mid").write_text("hello, I am not a MIDI file\n")
    (folder / "random.MID").write_bytes(bytes(range(256)) * 3)
    write_midi(folder / "drums.mid", [(36, 0, 1), (38, 1, 2)], is_drum=True, instrument=9)
    write_midi(folder / "short.mid", [(60, 0, 1)])
    report = corpus.create_dataset(folder, tmp_path / "ds", config(min_notes=4), corpus.Reading(0.2, progress=False))
    assert report["files_read"] == 11
    assert report["files_used"] == 6 and report["files_skipped"] == 5
    reasons = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in report["skipped"]}
    assert reasons["empty.mid"] == "empty file"
    assert "it is text" in reasons["text.mid"]
    assert "not a MIDI file" in reasons["random.MID"]
    assert reasons["drums.mid"] == "drums only"
    assert reasons["short.mid"] == "too short (fewer than 4 notes)"  # min_notes=4 above
    assert report["melodies_train"] + report["melodies_eval"] == 6
    assert report["melodies_eval"] == sum(in_eval(f"good{i}.mid", 0.2) for i in range(6))
    assert report["coverage_train"] == 1.0
    assert report["vocab_size"] == len(Vocabulary.load(tmp_path / "ds" / "vocab.json"))
    saved = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert saved["files_skipped"] == 5
    train = dataset.read_ids(tmp_path / "ds" / "train.tfrecord")
    assert len(train) == report["melodies_train"]
    assert sum(len(s) - 1 for s in train) == report["tokens_train"]
    text = corpus.format_report(report)
    assert "skipped: 5" in text and "empty.mid: empty file" in text
    # the reasons line: each count before its reason (a reason may hold numbers of its own), counted from the report
    reasons = next(line for line in text.splitlines() if line.startswith("skipped: ") and " x " in line)
    assert reasons == "skipped: " + "; ".join(f"{n} x {why}" for why, n in saved["skipped_by_reason"].items())
    assert sum(saved["skipped_by_reason"].values()) == 5
    # the conversion line is in words, a count before each ("key estimated 33" read like a key)
    conversion = next(line for line in text.splitlines() if line.startswith("conversion: "))
    assert "_" not in conversion and conversion != "conversion: "
    assert all(f"{count} " in conversion for count in report["conversion"].values() if count)


def test_augmentation_only_in_training_split(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(12):
        write_midi(folder / f"t{i}.mid", pattern_notes(PHRASES[(4, 4)], 2))
    report = corpus.create_dataset(folder, tmp_path / "ds", config(augment_transpositions="[-2,2]"),
                                   corpus.Reading(0.3, progress=False))
    train = dataset.read_ids(tmp_path / "ds" / "train.tfrecord")
    evals = dataset.read_ids(tmp_path / "ds" / "eval.tfrecord")
    assert len(train) == 5 * report["melodies_train"]
    assert len(evals) == report["melodies_eval"] == sum(in_eval(f"t{i}.mid", 0.3) for i in range(12))
    vocab = json.loads((tmp_path / "ds" / "vocab.json").read_text())
    assert vocab["augment_transpositions"] == [-2, 2]


def test_tfrecord_splits_by_each_note_sequences_file_name_like_the_folder(tmp_path):
    folder = distinct_tunes(tmp_path / "tunes", 30)
    sequences = []
    for path in sorted(folder.iterdir()):
        ns = read_music_file(path).sequences[0]
        ns.filename = f"sub/{path.name}"  # a relative path, as convert_dir_to_note_sequences writes it
        sequences.append(ns)
    write_note_sequence_tfrecord(sequences, tmp_path / "ns.tfrecord")
    expected_eval = sum(in_eval(f"tune_{i:02d}.mid", 0.1) for i in range(30))
    conftest.assert_same_split(folder, tmp_path / "ns.tfrecord", tmp_path, config(), expected_eval, 30)


@pytest.mark.parametrize("names, pattern", [
    (["ns-00000-of-00002.tfrecord", "ns-00001-of-00002.tfrecord"], "ns-*-of-*.tfrecord"),
    (["ns.tfrecord-00000-of-00002", "ns.tfrecord-00001-of-00002"], "ns.tfrecord-*"),
])
def test_sharded_tfrecords_and_globs_are_read(tmp_path, names, pattern):
    from conftest import make_sequence

    for shard, name in enumerate(names):
        write_note_sequence_tfrecord(
            [make_sequence(pattern_notes(PHRASES[(4, 4)], 2), filename=f"s{shard}_{i}.mid") for i in range(3)],
            tmp_path / name)
    assert len(corpus.collect_melodies(tmp_path / names[1], config(), ONE_SPLIT).train) == 3
    assert len(corpus.collect_melodies(str(tmp_path / pattern), config(), ONE_SPLIT).train) == 6
    with pytest.raises(InputFileError, match="no MIDI, MusicXML, ABC or TFRecord files match"):
        corpus.collect_melodies(str(tmp_path / "nothing-*.tfrecord"), config(), ONE_SPLIT)


def test_magenta_format_dataset_trains_the_same_ids(tmp_path, tiny_corpus):
    plugin = corpus.create_dataset(tiny_corpus, tmp_path / "p", config(), ONE_SPLIT)
    magenta = corpus.create_dataset(tiny_corpus, tmp_path / "m", config(), ONE_SPLIT, sequence_format="magenta")
    assert magenta["sequence_format"] == "magenta" and plugin["tokens_train"] == magenta["tokens_train"]
    a = [s.tolist() for s in dataset.read_ids(tmp_path / "p" / "train.tfrecord")]
    b = [s.tolist() for s in dataset.read_ids(tmp_path / "m" / "train.tfrecord")]
    assert a == b


def test_skip_reasons_are_grouped_without_their_details_and_keep_words_with_digits():
    both = ("music21: unreadable MusicXML (limit on input amplification factor (from DTD and entities) breached: "
            "line 1, column 0); note-seq: unreadable MusicXML (ParseError: junk)")
    assert corpus._reason_kind(both) == "music21: unreadable MusicXML; note-seq: unreadable MusicXML"
    assert corpus._reason_kind("events at tick 900 (45 quarter notes) exceed the length limit; refused") == (
        "events at tick N exceed the length limit; refused")
    # a reason cut short by the report's 200 characters loses its unclosed detail
    assert corpus._reason_kind("no readable ABC tune: music21 cannot read it (ValueError: bad X:3...") == (
        "no readable ABC tune: music21 cannot read it")


def test_music21_asked_for_but_not_installed_says_so_and_how_to_install_it(tmp_path, monkeypatch):
    from melody_plugin.errors import MelodyPluginError

    monkeypatch.setattr(music21_score, "available", lambda: False)
    monkeypatch.setenv(READER_ENV, "music21")
    folder = tmp_path / "scores"
    folder.mkdir()
    (folder / "a.abc").write_text("X:1\nT:A\nM:2/4\nL:1/8\nK:C\nCDEF|G4|\n")
    (folder / "b.abc").write_text("X:1\nT:B\nM:2/4\nL:1/8\nK:C\nGABc|d4|\n")
    (folder / "c.musicxml").write_text('<?xml version="1.0"?><score-partwise version="3.1"/>')
    hint = 'the music21 reader is not installed (pip install "melody_plugin[music21]")'
    results = corpus.collect_melodies(folder, config(), ONE_SPLIT).results
    assert [(r.path.rsplit("/", 1)[-1], r.error) for r in results] == [("a.abc", hint), ("b.abc", hint),
                                                                       ("c.musicxml", hint)]
    with pytest.raises(MelodyPluginError) as refused:
        corpus.encode_corpus(folder, config(), ONE_SPLIT)
    assert str(refused.value) == (f"{folder}: no usable melody in the training split (3 files read, all skipped "
                                  f"or in eval; 3 skipped like a.abc: {hint})")
