"""Pipelines and datasets: typed transforms with counters, the train/eval graph, TFRecords, dataset creation."""

import json

import numpy as np
import pytest

from conftest import PHRASES, make_sequence, pattern_notes, write_midi
from melody_plugin import dataset, midi_io, pipelines, registry
from melody_plugin.errors import MelodyPluginError
from melody_plugin.melody import Melody, Note
from melody_plugin.vocab import START, Vocabulary


def config(**kw):
    return registry.with_hparams(registry.get_config("char_lstm"), {"min_notes": 2, **kw})


def test_sequence_example_round_trip():
    example = dataset.sequence_to_example([START, 5, 6, 7])
    lists = example.feature_lists.feature_list
    assert [f.int64_list.value[0] for f in lists["inputs"].feature] == [START, 5, 6]
    assert [f.int64_list.value[0] for f in lists["labels"].feature] == [5, 6, 7]
    assert dataset.example_to_sequence(example).tolist() == [START, 5, 6, 7]


def test_make_dataset_windows_are_shifted_by_one():
    seqs = [np.array([START] + list(range(10, 30)))]
    ds = dataset.make_dataset(seqs, window_size=4, batch_size=3, shuffle=False, repeat=False)
    batches = list(ds.as_numpy_iterator())
    x, y = batches[0]
    assert x.shape == (3, 4) and y.shape == (3, 4)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal(x[0], [START, 10, 11, 12])
    assert sum(len(b[0]) for b in batches) == dataset.num_windows(21, 4, 1) // 3 * 3
    with pytest.raises(dataset.DatasetError, match="fewer than one window"):
        dataset.make_dataset([np.array([START, 5])], window_size=4, batch_size=2)


def test_chain_checks_types():
    vocab = Vocabulary.build([Melody((Note(60, 12),))])
    with pytest.raises(MelodyPluginError, match="outputs .* but MelodyExtractor takes"):
        pipelines.Chain([pipelines.MelodyEncoder(vocab), pipelines.MelodyExtractor()])


def test_pipeline_graph_turns_note_sequence_tfrecord_into_sequence_examples(tmp_path):
    sequences = []
    for i in range(10):
        sequences.append(make_sequence(pattern_notes(PHRASES[(4, 4)], 2), filename=f"tune{i}.mid"))
    sequences.append(make_sequence([(36, 0, 1)], is_drum=True, filename="drums.mid"))
    sequences.append(make_sequence([], filename="empty.mid"))
    sequences.append(make_sequence([(60, 0, 2), (64, 1, 2)], filename="poly.mid"))
    split = make_sequence(pattern_notes([(60, 1)], 8), filename="split.mid")
    split.time_signatures.add(time=4.0, numerator=3, denominator=4)
    split.notes.add(pitch=67, start_time=4.0, end_time=4.5, velocity=80)
    split.notes.add(pitch=69, start_time=4.5, end_time=5.0, velocity=80)
    split.total_time = 5.0
    sequences.append(split)
    source = tmp_path / "notesequences.tfrecord"
    midi_io.write_note_sequence_tfrecord(sequences, source)
    cfg = config(polyphony_policy="reject")
    melodies = [m for ns in sequences for m in pipelines.melody_pipeline(cfg).transform(ns)]
    vocab = Vocabulary.build(melodies)
    graph = pipelines.get_pipeline(cfg, eval_ratio=0.3, vocab=vocab)
    stats = pipelines.run_pipeline_serial(graph, source, tmp_path / "out")
    assert stats["TimeChangeSplitter_drums_only"] == 1
    assert stats["TimeChangeSplitter_no_notes"] == 1
    assert stats["TimeChangeSplitter_time_change_splits"] == 1
    assert stats["MelodyExtractor_polyphony_rejected"] == 1
    assert stats["MelodyExtractor_melodies"] == 12  # 10 tunes + 2 parts of the split one
    written = stats["written_training"] + stats["written_eval"]
    assert written == 12 and stats["written_eval"] >= 1
    assert stats["Partition_training_sequences"] + stats["Partition_eval_sequences"] == len(sequences)
    back = dataset.read_sequences(tmp_path / "out" / "training.tfrecord")
    assert all(s[0] == START for s in back)
    decoded = vocab.decode(back[0])
    assert decoded.num_pitched > 0


def test_partition_is_deterministic_by_file():
    graph = pipelines.get_pipeline(config(), 0.5, Vocabulary.build([Melody((Note(60, 12),))]))
    names = [f"file{i}.mid" for i in range(40)]
    parts = [graph.partition_of(make_sequence([(60, 0, 1)], filename=n)) for n in names]
    assert parts == [graph.partition_of(make_sequence([(60, 0, 1)], filename=n)) for n in names]
    assert 5 < parts.count("eval") < 35


def test_transposition_and_key_normalisation():
    m = Melody((Note(62, 12), Note(66, 12)), key=2)
    out = pipelines.KeyTransposer(to_key=True, transpositions=(-1, 1)).transform(m)
    assert [n.notes[0].pitch for n in out] == [59, 60, 61]
    assert out[1].key == 0


def test_create_dataset_report_is_accurate_with_broken_files(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        write_midi(corpus / f"good{i}.mid", pattern_notes(PHRASES[(3, 4)], 3), time_signature=(3, 4))
    (corpus / "empty.mid").write_bytes(b"")
    (corpus / "text.mid").write_text("hello, I am not a MIDI file\n")
    (corpus / "random.MID").write_bytes(bytes(range(256)) * 3)
    write_midi(corpus / "drums.mid", [(36, 0, 1), (38, 1, 2)], is_drum=True, instrument=9)
    write_midi(corpus / "short.mid", [(60, 0, 1)])
    report = pipelines.create_dataset(corpus, tmp_path / "ds", config(min_notes=4), eval_ratio=0.2,
                                      progress=False)
    assert report["files_read"] == 11
    assert report["files_used"] == 6 and report["files_skipped"] == 5
    reasons = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in report["skipped"]}
    assert reasons["empty.mid"] == "empty file"
    assert "it is text" in reasons["text.mid"]
    assert "not a MIDI file" in reasons["random.MID"]
    assert reasons["drums.mid"] == "drums only"
    assert reasons["short.mid"] == "too short"
    assert report["melodies_train"] + report["melodies_eval"] == 6
    assert report["coverage_train"] == 1.0
    assert report["vocab_size"] == len(Vocabulary.load(tmp_path / "ds" / "vocab.json"))
    saved = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert saved["files_skipped"] == 5
    train = dataset.read_sequences(tmp_path / "ds" / "train.tfrecord")
    assert len(train) == report["melodies_train"]
    assert sum(len(s) - 1 for s in train) == report["tokens_train"]
    text = pipelines.format_report(report)
    assert "skipped: 5" in text and "empty.mid: empty file" in text


def test_create_dataset_reads_a_note_sequence_tfrecord(tmp_path):
    source = tmp_path / "ns.tfrecord"
    midi_io.write_note_sequence_tfrecord(
        [make_sequence(pattern_notes(PHRASES[(6, 8)], 3), time_signature=(6, 8), filename=f"t{i}") for i in range(5)],
        source)
    report = pipelines.create_dataset(source, tmp_path / "ds", config(), eval_ratio=0.0, progress=False)
    assert report["files_read"] == 5 and report["melodies_train"] == 5


def test_augmentation_only_in_training_split(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(12):
        write_midi(corpus / f"t{i}.mid", pattern_notes(PHRASES[(4, 4)], 2))
    report = pipelines.create_dataset(corpus, tmp_path / "ds", config(augment_transpositions="[-2,2]"),
                                      eval_ratio=0.3, progress=False)
    train = dataset.read_sequences(tmp_path / "ds" / "train.tfrecord")
    evals = dataset.read_sequences(tmp_path / "ds" / "eval.tfrecord")
    assert len(train) == 5 * report["melodies_train"]
    assert len(evals) == report["melodies_eval"]
    vocab = json.loads((tmp_path / "ds" / "vocab.json").read_text())
    assert vocab["augment_transpositions"] == [-2, 2]
