"""Pipeline units, the dataset graph, record formats and bundles, with or without Magenta installed.

The tests of Magenta's own code running the plugin are in test_interop_magenta.py.
"""

import hashlib
import subprocess
import sys

import pytest
from conftest import PHRASES, ROOT, make_sequence, pattern_notes

from melody_plugin.errors import MelodyPluginError
from melody_plugin.interop.graph import Chain, get_pipeline, run_pipeline_serial
from melody_plugin.interop.magenta import Counter, merge_statistics
from melody_plugin.interop.units import (
    GridError,
    KeyTransposer,
    MelodyEncoder,
    MelodyExtractor,
    Quantizer,
    note_seq_melody_to_melody,
)
from melody_plugin.io import tfrecord as midi_io
from melody_plugin.model import registry
from melody_plugin.music.melody import REST, Melody, Note
from melody_plugin.tokens import records as dataset
from melody_plugin.tokens.vocab import START, Vocabulary


def config(**kw):
    return registry.with_hparams(registry.get_config("char_lstm"), {"min_notes": 2, **kw})


def melody_of(pattern, repeats=1, steps_per_quarter=12, time_signature=(4, 4)) -> Melody:
    """The Melody a (pitch or None, quarters) pattern should give, rests cut at bar lines, written out by hand."""
    spb = time_signature[0] * steps_per_quarter * 4 // time_signature[1]
    notes, step = [], 0
    for _ in range(repeats):
        for pitch, quarters in pattern:
            steps = int(quarters * steps_per_quarter)
            if pitch is None:
                while steps:
                    part = min(steps, spb - step % spb)
                    notes.append(Note(REST, part))
                    step, steps = step + part, steps - part
            else:
                notes.append(Note(pitch, steps))
                step += steps
    return Melody(tuple(notes), steps_per_quarter, time_signature)


def in_eval(name: str, ratio: float) -> bool:
    """The documented split rule, computed here: sha1 of the file name, first 12 hex digits / 16**12 < ratio."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / 16**12 < ratio


def counts(stats) -> dict:
    return {s.name: s.count for s in stats}


# --- record formats


def test_sequence_example_round_trip_in_both_formats():
    example = dataset.ids_to_example([START, 5, 6, 7])
    lists = example.feature_lists.feature_list
    assert [f.int64_list.value[0] for f in lists["inputs"].feature] == [START, 5, 6]
    assert [f.int64_list.value[0] for f in lists["labels"].feature] == [5, 6, 7]
    assert dataset.example_to_ids(example).tolist() == [START, 5, 6, 7]

    magenta = dataset.ids_to_example([START, 5, 6, 7], one_hot_size=9)
    lists = magenta.feature_lists.feature_list
    inputs = [list(f.float_list.value) for f in lists["inputs"].feature]
    assert inputs == [[1.0 if i == t else 0.0 for i in range(9)] for t in (START, 5, 6)]
    assert [f.int64_list.value[0] for f in lists["labels"].feature] == [5, 6, 7]
    assert dataset.example_to_ids(magenta).tolist() == [START, 5, 6, 7]


def test_magenta_format_files_read_back_and_bad_records_are_clear_errors(tmp_path):
    seqs = [[START, 3, 4, 5], [START, 8, 2]]
    assert dataset.write_ids(seqs, tmp_path / "m.tfrecord", one_hot_size=10) == 2
    assert [s.tolist() for s in dataset.read_ids(tmp_path / "m.tfrecord")] == seqs

    import tensorflow as tf

    two_hot = dataset.ids_to_example([START, 3], one_hot_size=5)
    two_hot.feature_lists.feature_list["inputs"].feature[0].float_list.value[4] = 1.0
    no_labels = tf.train.SequenceExample()
    no_labels.feature_lists.feature_list["inputs"].feature.add().int64_list.value.append(1)
    for name, example in (("two_hot", two_hot), ("no_labels", no_labels)):
        dataset.write_examples([example], tmp_path / f"{name}.tfrecord")
        with pytest.raises(dataset.DatasetError, match=rf"{name}.tfrecord: record 0: "):
            dataset.read_ids(tmp_path / f"{name}.tfrecord")
    with pytest.raises(dataset.DatasetError, match="ids must be in"):
        dataset.ids_to_example([START, 12], one_hot_size=5)


# --- units


def test_chain_checks_types():
    vocab = Vocabulary.build([Melody((Note(60, 12),))])
    with pytest.raises(MelodyPluginError, match="outputs .* but MelodyExtractor takes"):
        Chain([MelodyEncoder(vocab), MelodyExtractor()])


def test_units_are_typed_with_classes_and_partition_outputs_are_a_dict_of_classes():
    import tensorflow as tf
    from note_seq.protobuf import music_pb2

    graph = get_pipeline(config(), 0.2)
    assert graph.input_type is music_pb2.NoteSequence
    assert graph.output_type == {"eval_melodies": tf.train.SequenceExample,
                                 "training_melodies": tf.train.SequenceExample}
    assert graph.output_type_as_dict == graph.output_type
    assert graph.partition["training_melodies"].output_type is music_pb2.NoteSequence
    assert MelodyExtractor().output_type is Melody


def test_statistics_are_counters_of_the_last_call_and_merge_to_the_sum():
    extractor = MelodyExtractor(min_notes=2, name="X")
    quantizer = Quantizer(12)
    tune = quantizer.transform(make_sequence(pattern_notes(PHRASES[(4, 4)], 2)))[0]
    drums = quantizer.transform(make_sequence([(36, 0, 1)], is_drum=True))[0]
    merged = []
    for qns, expected in ((tune, {"X_melodies": 1}), (drums, {"X_drums_only": 1}), (tune, {"X_melodies": 1})):
        assert len(extractor.transform(qns)) == expected.get("X_melodies", 0)
        stats = extractor.get_stats()
        assert all(isinstance(s, Counter) for s in stats)
        assert {k: v for k, v in counts(stats).items() if k in ("X_melodies", "X_drums_only")} == expected
        merged = merge_statistics(merged + [s.copy() for s in stats])
    assert counts(merged)["X_melodies"] == 2 and counts(merged)["X_drums_only"] == 1


def test_pipeline_graph_turns_note_sequence_tfrecord_into_sequence_examples(tmp_path):
    names = [f"tune{i}.mid" for i in range(10)]
    sequences = [make_sequence(pattern_notes(PHRASES[(4, 4)], 2), filename=n) for n in names]
    sequences.append(make_sequence([(36, 0, 1)], is_drum=True, filename="drums.mid"))
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
    vocab = Vocabulary.build([melody_of(PHRASES[(4, 4)], 2), melody_of([(60, 1)], 8),
                              Melody((Note(67, 6), Note(69, 6)), time_signature=(3, 4))])
    graph = get_pipeline(cfg, eval_ratio=0.3, vocab=vocab)
    stats = run_pipeline_serial(graph, source, tmp_path / "out")

    def total(unit, stat):  # units are named per partition, as in Magenta's melody_rnn graph
        return stats.get(f"{unit}_training_{stat}", 0) + stats.get(f"{unit}_eval_{stat}", 0)

    assert total("TimeChangeSplitter", "drums_only") == 1
    assert total("TimeChangeSplitter", "time_change_splits") == 1
    assert total("MelodyExtractor", "polyphony_rejected") == 1
    assert total("MelodyExtractor", "melodies") == 12  # 10 tunes + 2 parts of the split one
    evals = [n for n in names + ["split.mid"] if in_eval(n, 0.3)]
    assert stats["written_eval_melodies"] == len(evals) + ("split.mid" in evals)
    assert stats["written_training_melodies"] + stats["written_eval_melodies"] == 12
    assert stats["FilePartition_eval_melodies_count"] + stats["FilePartition_training_melodies_count"] == 13
    back = dataset.read_ids(tmp_path / "out" / "training_melodies.tfrecord")
    expected = [START] + vocab.encode(melody_of(PHRASES[(4, 4)], 2))
    assert expected in [s.tolist() for s in back]


def test_partition_is_deterministic_by_file_name():
    graph = get_pipeline(config(), 0.5)
    names = [f"dir/file{i}.mid" for i in range(40)]
    parts = [graph.partition_of(make_sequence([(60, 0, 1)], filename=n)) for n in names]
    assert parts == ["eval_melodies" if in_eval(n.split("/")[1], 0.5) else "training_melodies" for n in names]


def test_transposition_and_key_normalisation():
    m = Melody((Note(62, 12), Note(66, 12)), key=2)
    out = KeyTransposer(to_key=True, transpositions=(-1, 1)).transform(m)
    assert [n.notes[0].pitch for n in out] == [59, 60, 61]
    assert out[1].key == 0


def test_note_seq_melody_converts_onto_the_vocabulary_grid():
    from note_seq import melodies_lib

    # 4 steps per quarter, 4/4: C for a quarter, rest of 1.5 bars (crosses a bar line), D for a 16th, held E
    events = [60, -2, -2, -2, -1] + [-2] * 19 + [62, 64, -2]
    ns_melody = melodies_lib.Melody(events, steps_per_quarter=4, steps_per_bar=16)
    expected = (Note(60, 12), Note(REST, 36), Note(REST, 24), Note(62, 3), Note(64, 6))
    melody = note_seq_melody_to_melody(ns_melody, steps_per_quarter=12)
    assert melody.notes == expected and melody.time_signature == (4, 4)
    vocab = Vocabulary.build([Melody(expected)])
    encoder = MelodyEncoder(vocab, input_type=melodies_lib.Melody)
    assert encoder.input_type is melodies_lib.Melody
    assert encoder.transform(ns_melody) == [[START] + vocab.encode(Melody(expected))]
    assert counts(encoder.get_stats())["MelodyEncoder_note_seq_melodies_converted"] == 1
    with pytest.raises(GridError, match="5 steps per quarter does not fit a grid of 12"):
        encoder.transform(melodies_lib.Melody([60, -2], steps_per_quarter=5, steps_per_bar=20))
    six_eight = melodies_lib.Melody([60, -2, -2], steps_per_quarter=4, steps_per_bar=12)
    assert note_seq_melody_to_melody(six_eight).steps_per_bar == 12


def test_get_pipeline_has_magentas_signature_and_a_shipped_default_vocabulary(tmp_path):
    from melody_plugin.generate.generator import DEFAULT_MODEL_DIR

    shipped = Vocabulary.load(DEFAULT_MODEL_DIR / "vocab.json")
    graph = get_pipeline("char_lstm", 0.1)
    assert graph.chain.pipelines[-2].vocab == shipped
    own = Vocabulary.build([Melody((Note(60, 12),))])
    own.save(tmp_path / "vocab.json")
    assert get_pipeline("char_lstm", 0.1, vocab=tmp_path).chain.pipelines[-2].vocab == own
    coarse = Vocabulary.build([Melody((Note(60, 4),), steps_per_quarter=4)])
    with pytest.raises(GridError, match="4 steps per quarter, config char_lstm on 12"):
        get_pipeline("char_lstm", 0.1, vocab=coarse)


def test_the_package_works_without_magenta(tmp_path):
    code = f"""
import sys
sys.modules["magenta"] = None  # as if not installed
from melody_plugin import pipelines
from melody_plugin.generator import MelodyGenerator, get_generator_map
sys.path.insert(0, {str(ROOT / 'tests')!r})
from conftest import PHRASES, make_sequence, pattern_notes
assert not pipelines.MAGENTA and pipelines.Pipeline is pipelines._Pipeline
graph = pipelines.get_pipeline("char_lstm", 0.0)
out = graph.transform(make_sequence(pattern_notes(PHRASES[(4, 4)], 2), filename="a.mid"))
assert len(out["training_melodies"]) == 1 and out["eval_melodies"] == []
stats = {{s.name: s.count for s in graph.get_stats()}}
assert stats["MelodyExtractor_training_melodies"] == 1, stats
assert isinstance(get_generator_map()["char_lstm"], object)
print("ok", "magenta" in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok False")


def test_only_the_adapter_imports_magenta():
    """Every module outside interop/ (and the old paths that re-export them) imports neither Magenta nor interop/."""
    code = ("import importlib, pkgutil, sys, melody_plugin\n"
            "names = [m.name for m in pkgutil.walk_packages(melody_plugin.__path__, 'melody_plugin.')\n"
            "         if not m.name.startswith(('melody_plugin.interop', 'melody_plugin.pipelines',\n"
            "                                   'melody_plugin.cli', 'melody_plugin.studio'))]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted({m.split('.')[0] for m in sys.modules} & {'magenta'}), "
            "sorted(m for m in sys.modules if m.startswith('melody_plugin.interop.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, magenta, interop = proc.stdout.split(maxsplit=2)
    assert int(count) > 40 and magenta == "[]" and interop.strip() == "[]"


# --- bundles


def test_bundle_holds_no_path_and_saving_one_needs_a_run_dir(tiny_generator, tiny_run_dir, tmp_path):
    from conftest import run_cli
    from note_seq.protobuf import generator_pb2

    path = tmp_path / "tiny.mag"
    tiny_generator.save_bundle(path)
    bundle = generator_pb2.GeneratorBundle.FromString(path.read_bytes())
    assert str(tiny_run_dir) not in bundle.SerializeToString().decode("latin-1")
    assert "/" not in bundle.bundle_details.description
    proc = run_cli("melody_generate", "--save_generator_bundle", f"--bundle_file={tmp_path / 'x.mag'}", timeout=120)
    assert proc.returncode != 0 and "--save_generator_bundle needs --run_dir" in proc.stderr
    assert not (tmp_path / "x.mag").exists()


def test_melody_extractor_refuses_an_unquantized_sequence_with_a_clear_error():
    from conftest import make_sequence

    from melody_plugin.interop.units import MelodyExtractor
    from melody_plugin.music.melody import MelodyError

    with pytest.raises(MelodyError, match="not quantized: put a Quantizer before"):
        MelodyExtractor().transform(make_sequence([(60, 0, 1), (62, 1, 2)]))
