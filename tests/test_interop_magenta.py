"""The plugin run by Magenta 2.1.4's own code: DAG pipelines, extractors, generator options, readers, converters.

Marked `magenta`: skipped when Magenta is not installed (.ci/run's extras pass installs it and runs them).
Magenta's melody_rnn modules need TF_USE_LEGACY_KERAS=1, which would change Keras for every test in this
process, so the one test that imports them runs in a subprocess.
"""

import hashlib
import json
import os
import subprocess
import sys

import conftest
import pytest

pytestmark = pytest.mark.magenta
if not conftest.extra_installed("magenta"):  # collected but skipped (conftest says what to install)
    pytest.skip(f"needs the magenta extra: {conftest.EXTRAS['magenta'][1]}", allow_module_level=True)

from conftest import PHRASES, ROOT, make_sequence, pattern_notes  # noqa: E402
from magenta.common import sequence_example_lib  # noqa: E402
from magenta.models.shared import sequence_generator, sequence_generator_bundle  # noqa: E402
from magenta.pipelines import dag_pipeline, melody_pipelines, note_sequence_pipelines, pipeline, statistics  # noqa: E402
from note_seq import melodies_lib  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402
from test_interop_pipelines import melody_of  # noqa: E402

from melody_plugin.errors import MelodyPluginError  # noqa: E402
from melody_plugin.interop.graph import get_pipeline, run_pipeline_serial
from melody_plugin.interop.sequence_generator import MelodySequenceGenerator, get_generator_map
from melody_plugin.interop.units import (
    FilePartition,
    MelodyEncoder,
    MelodyExtractor,
    SequenceExampleMaker,
    note_seq_melody_to_melody,
)
from melody_plugin.io.midi import note_sequence_to_midi_file
from melody_plugin.io.tfrecord import write_note_sequence_tfrecord
from melody_plugin.model import registry
from melody_plugin.music.melody import Melody, Note
from melody_plugin.tokens import records as dataset
from melody_plugin.tokens.vocab import START, Vocabulary


def in_eval(name: str, ratio: float) -> bool:
    """The documented split rule, computed here: sha1 of the file name, first 12 hex digits / 16**12 < ratio."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / 16**12 < ratio


def tunes(count):
    """`count` NoteSequences whose melodies differ: tune i is the 4/4 phrase moved up i semitones."""
    out = []
    for i in range(count):
        notes = [(p + i, s, e) for p, s, e in pattern_notes(PHRASES[(4, 4)], 2)]
        out.append(make_sequence(notes, filename=f"tune_{i:02d}.mid"))
    return out


def tune_melody(i) -> Melody:
    return melody_of([(p if p is None else p + i, q) for p, q in PHRASES[(4, 4)]], 2)


def counter_values(stats) -> dict:
    return {s.name: s.count for s in stats if isinstance(s, statistics.Counter)}


def dataset_dag(vocab, eval_ratio):
    """Magenta's melody_rnn graph with the plugin's units after Magenta's TimeChangeSplitter and Quantizer."""
    partition = FilePartition(eval_ratio)
    dag = {partition: dag_pipeline.DagInput(music_pb2.NoteSequence)}
    for mode in ("eval", "training"):
        splitter = note_sequence_pipelines.TimeChangeSplitter(name=f"TimeChangeSplitter_{mode}")
        quantizer = note_sequence_pipelines.Quantizer(steps_per_quarter=12, name=f"Quantizer_{mode}")
        extractor = MelodyExtractor(min_notes=2, name=f"MelodyExtractor_{mode}")
        encoder = MelodyEncoder(vocab, name=f"MelodyEncoder_{mode}")
        maker = SequenceExampleMaker(name=f"SequenceExampleMaker_{mode}")
        dag[splitter] = partition[f"{mode}_melodies"]
        dag[quantizer] = splitter
        dag[extractor] = quantizer
        dag[encoder] = extractor
        dag[maker] = encoder
        dag[dag_pipeline.DagOutput(f"{mode}_melodies")] = maker
    return dag_pipeline.DAGPipeline(dag)


# --- pipelines


def test_units_run_in_magentas_dag_through_its_run_pipeline_serial_and_load_pipeline(tmp_path):
    sequences = tunes(12) + [make_sequence([(36, 0, 1)], is_drum=True, filename="drums.mid")]
    vocab = Vocabulary.build([tune_melody(i) for i in range(12)])
    dag = dataset_dag(vocab, 0.25)
    assert isinstance(MelodyExtractor(), pipeline.Pipeline)
    expected = {"eval_melodies": [], "training_melodies": []}
    for i in range(12):
        split = "eval_melodies" if in_eval(f"tune_{i:02d}.mid", 0.25) else "training_melodies"
        expected[split].append([START] + vocab.encode(tune_melody(i)))
    assert expected["eval_melodies"] and expected["training_melodies"]

    pipeline.run_pipeline_serial(dag, iter(sequences), str(tmp_path / "magenta"))
    for name, seqs in expected.items():
        written = [s.tolist() for s in dataset.read_ids(tmp_path / "magenta" / f"{name}.tfrecord")]
        assert sorted(written) == sorted(seqs)

    loaded = pipeline.load_pipeline(dag, iter(sequences))
    for name, seqs in expected.items():
        assert sorted(dataset.example_to_ids(e).tolist() for e in loaded[name]) == sorted(seqs)

    # Magenta's own merging loop: statistics of each call, merged, count every input once
    stats = []
    for ns in sequences:
        dag.transform(ns)
        stats = statistics.merge_statistics(stats + dag.get_stats())
    counts = counter_values(stats)
    assert counts.get("DAGPipeline_MelodyExtractor_training_melodies", 0) == len(expected["training_melodies"])
    assert counts.get("DAGPipeline_MelodyExtractor_eval_melodies", 0) == len(expected["eval_melodies"])
    drums = "DAGPipeline_MelodyExtractor_" + ("eval" if in_eval("drums.mid", 0.25) else "training") + "_drums_only"
    assert counts[drums] == 1
    assert (counts.get("DAGPipeline_FilePartition_eval_melodies_count", 0)
            + counts.get("DAGPipeline_FilePartition_training_melodies_count", 0)) == 13

    # the plugin's run_pipeline_serial takes the Magenta DAG too, and reports the same merged counts
    ours = run_pipeline_serial(dag, iter(sequences), tmp_path / "ours")
    assert {k: v for k, v in ours.items() if k in counts} == counts
    assert ours["written_eval_melodies"] == len(expected["eval_melodies"])


def test_get_pipeline_runs_in_magentas_run_pipeline_serial(tmp_path):
    sequences = tunes(10)
    write_note_sequence_tfrecord(sequences, tmp_path / "ns.tfrecord")
    graph = get_pipeline("char_lstm", 0.3, sequence_format="magenta")
    assert graph["training_melodies"].output_type is graph.output_type["training_melodies"]
    records = pipeline.tf_record_iterator(str(tmp_path / "ns.tfrecord"), music_pb2.NoteSequence)
    pipeline.run_pipeline_serial(graph, records, str(tmp_path / "out"), output_file_base="folk")
    evals = sum(in_eval(f"tune_{i:02d}.mid", 0.3) for i in range(10))
    assert len(dataset.read_ids(tmp_path / "out" / "folk_eval_melodies.tfrecord")) == evals
    assert len(dataset.read_ids(tmp_path / "out" / "folk_training_melodies.tfrecord")) == 10 - evals


def test_get_pipeline_takes_melody_rnns_positional_transposition_range(tmp_path):
    # Magenta's melody_rnn_pipeline.get_pipeline(config, transposition_range=(0,), eval_ratio=0.0), positionally
    sequences = tunes(10)
    evals = sum(in_eval(f"tune_{i:02d}.mid", 0.3) for i in range(10))
    for graph in (get_pipeline("char_lstm", range(-2, 3), 0.3),
                  get_pipeline("char_lstm", transposition_range=(-2, -1, 0, 1, 2), eval_ratio=0.3)):
        out = {"eval_melodies": 0, "training_melodies": 0}
        for ns in sequences:
            for name, examples in graph.transform(ns).items():
                out[name] += len(examples)
        assert out == {"eval_melodies": evals, "training_melodies": 5 * (10 - evals)}  # 5 shifts, training only
    with pytest.raises(MelodyPluginError, match="run of semitone shifts holding 0"):
        get_pipeline("char_lstm", (1, 2), 0.3)


def test_magentas_melody_extractor_feeds_the_plugins_encoder():
    vocab = Vocabulary.build([tune_melody(i) for i in range(3)])
    quantizer = note_sequence_pipelines.Quantizer(steps_per_quarter=4)
    extractor = melody_pipelines.MelodyExtractor(min_bars=1, min_unique_pitches=1, gap_bars=1.0,
                                                 ignore_polyphonic_notes=True)
    encoder = MelodyEncoder(vocab, input_type=melodies_lib.Melody, name="Encoder")
    maker = SequenceExampleMaker()
    dag = dag_pipeline.DAGPipeline({quantizer: dag_pipeline.DagInput(music_pb2.NoteSequence),
                                    extractor: quantizer, encoder: extractor, maker: encoder,
                                    dag_pipeline.DagOutput("melodies"): maker})
    for i, ns in enumerate(tunes(3)):
        out = dag.transform(ns)["melodies"]
        # Magenta's melody on 4 steps per quarter, moved onto the vocabulary's 12
        assert [dataset.example_to_ids(e).tolist() for e in out] == [[START] + vocab.encode(tune_melody(i))]
        assert counter_values(dag.get_stats())["DAGPipeline_Encoder_note_seq_melodies_converted"] == 1


def test_magentas_get_padded_batch_reads_magenta_format_examples(tmp_path):
    import tensorflow as tf

    seqs = [[START, 5, 6, 7, 3], [START, 8, 2]]
    dataset.write_ids(seqs, tmp_path / "m.tfrecord", one_hot_size=10)
    with tf.Graph().as_default():
        # one reader thread, so the batch holds each record once in file order (with the default four it failed twice
        # on a busy machine)
        inputs, labels, lengths = sequence_example_lib.get_padded_batch([str(tmp_path / "m.tfrecord")], 2, 10,
                                                                        num_enqueuing_threads=1)
        with tf.compat.v1.Session() as sess:
            coord = tf.compat.v1.train.Coordinator()
            threads = tf.compat.v1.train.start_queue_runners(sess, coord)
            inputs, labels, lengths = sess.run([inputs, labels, lengths])
            coord.request_stop()
            coord.join(threads)
    # Magenta's reader threads may batch the records in either order: each row is matched by its length
    assert inputs.shape == (2, 4, 10) and sorted(lengths.tolist()) == [2, 4]
    for row, n in enumerate(lengths.tolist()):
        seq = next(s for s in seqs if len(s) - 1 == n)
        assert inputs[row, :n].argmax(-1).tolist() == seq[:-1]
        assert inputs[row, :n].sum(-1).tolist() == [1.0] * n
        assert labels[row, :n].tolist() == seq[1:]


def test_convert_dir_to_note_sequences_tfrecord_splits_like_the_midi_folder(tmp_path):
    import pretty_midi
    from magenta.scripts import convert_dir_to_note_sequences

    folder = tmp_path / "tunes"
    folder.mkdir()
    for i in range(30):  # 30 distinct two-bar tunes at 120 qpm, written with pretty_midi
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        piano = pretty_midi.Instrument(program=0)
        for pitch, start, end in pattern_notes(PHRASES[(4, 4)], 2):
            piano.notes.append(pretty_midi.Note(80, pitch + i, start * 0.5, end * 0.5))
        pm.instruments.append(piano)
        pm.write(str(folder / f"tune_{i:02d}.mid"))
    convert_dir_to_note_sequences.convert_directory(str(folder), str(tmp_path / "notesequences.tfrecord"))
    cfg = registry.get_config("char_lstm")
    evals = sum(in_eval(f"tune_{i:02d}.mid", 0.1) for i in range(30))
    conftest.assert_same_split(folder, tmp_path / "notesequences.tfrecord", tmp_path, cfg, evals, 30)


# --- the sequence generator


def options(start, end, input_section=None, **args):
    opts = generator_pb2.GeneratorOptions()
    if input_section:
        opts.input_sections.add(start_time=input_section[0], end_time=input_section[1])
    opts.generate_sections.add(start_time=start, end_time=end)
    for name, value in args.items():
        field = {bool: "bool_value", int: "int_value", float: "float_value"}[type(value)]
        setattr(opts.args[name], field, value)
    return opts


def primer_of(meter=(4, 4), qpm=120.0):
    return make_sequence(pattern_notes(PHRASES[meter], 1), time_signature=meter, qpm=qpm)


@pytest.mark.parametrize("meter, start, end", [
    ((4, 4), 4.0, 12.0),  # bar lines
    ((4, 4), 4.25, 7.0),  # 7.0 s is no bar line at 120 qpm in 4/4
    ((3, 4), 3.5, 7.3),  # end off the grid: the notes stop at the grid step below it
    ((6, 8), 3.1, 5.55),  # start off the grid: a rest to the next step
])
def test_generated_sequence_lasts_exactly_to_end_time_and_starts_no_note_before_start_time(
        tiny_run_dir, meter, start, end):
    generator = get_generator_map()["char_lstm"](checkpoint=tiny_run_dir)
    assert isinstance(generator, sequence_generator.BaseSequenceGenerator)
    primer = primer_of(meter)
    ns = generator.generate(primer, options(start, end, temperature=1.0, seed=3))
    assert ns.total_time == pytest.approx(end, abs=1e-9)
    assert (ns.total_time - end) <= 1e-5  # Magenta's own assertion
    primer_notes = [(n.pitch, round(n.start_time, 6), round(n.end_time, 6)) for n in primer.notes]
    out_notes = sorted(((n.pitch, round(n.start_time, 6), round(n.end_time, 6)) for n in ns.notes),
                       key=lambda n: (n[1], n[0]))
    assert out_notes[:len(primer_notes)] == primer_notes
    new = out_notes[len(primer_notes):]
    assert new and all(s >= start - 1e-9 for _, s, _ in new)
    assert all(e <= end + 1e-9 for _, _, e in out_notes)


def test_magentas_melody_rnn_generate_drives_the_generator(tiny_run_dir, tmp_path):
    """melody_rnn_generate.run_with_flags builds the GeneratorOptions and calls generate, num_outputs times."""
    note_sequence_to_midi_file(primer_of((3, 4)), tmp_path / "primer.mid")
    code = f"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Magenta's melody_rnn modules are tf_keras code
from magenta.models.melody_rnn import melody_rnn_generate as mg
from melody_plugin.pipelines import get_generator_map

generator = get_generator_map()["char_lstm"](checkpoint={str(tiny_run_dir / "train")!r})  # Magenta's run_dir/train
records, generate = [], generator.generate

def recording(input_sequence, options):
    out = generate(input_sequence, options)
    s = options.generate_sections[0]
    records.append(dict(start=s.start_time, end=s.end_time, total=out.total_time,
                        primer=[(n.pitch, n.start_time, n.end_time) for n in input_sequence.notes],
                        notes=[(n.pitch, n.start_time, n.end_time) for n in out.notes]))
    return out

generator.generate = recording
mg.FLAGS(["melody_rnn_generate"])
cases = [dict(primer_midi={str(tmp_path / "primer.mid")!r}, num_steps=200),
         dict(primer_melody="[60, -2, 62, -2, -2, 64]", num_steps=130),
         dict(num_steps=77)]
for i, case in enumerate(cases):
    mg.FLAGS.primer_midi = case.get("primer_midi", "")
    mg.FLAGS.primer_melody = case.get("primer_melody", "")
    mg.FLAGS.num_steps = case["num_steps"]
    mg.FLAGS.num_outputs = 2
    mg.FLAGS.output_dir = os.path.join({str(tmp_path)!r}, f"out{{i}}")
    mg.run_with_flags(generator)
print("RECORDS" + json.dumps(records))
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = json.loads(proc.stdout.split("RECORDS", 1)[1])
    assert len(records) == 6
    seconds_per_step = 60.0 / 120.0 / 12
    for record, num_steps in zip(records, [200, 200, 130, 130, 77, 77]):
        assert record["end"] == pytest.approx(num_steps * seconds_per_step)
        assert record["total"] == pytest.approx(record["end"], abs=1e-9)
        new = record["notes"][len(record["primer"]):]
        assert [tuple(n) for n in record["notes"][:len(record["primer"])]] == \
            [pytest.approx(tuple(n)) for n in record["primer"]]
        assert all(start >= record["start"] - 1e-9 for _, start, _ in new)
        assert all(end <= record["end"] + 1e-9 for _, _, end in record["notes"])
    for i in range(3):
        assert len(list((tmp_path / f"out{i}").glob("*.mid"))) == 2


def test_input_section_is_the_primer(tiny_generator):
    song = make_sequence([(60, 0, 2), (62, 2, 4), (64, 4, 6), (65, 6, 8)])  # C D E F, one a second
    generator = MelodySequenceGenerator(tiny_generator)
    ns = generator.generate(song, options(8.0, 12.0, input_section=(0.0, 2.0), seed=1))
    pitches_before_8 = [(n.pitch, n.start_time) for n in ns.notes if n.start_time < 8.0]
    assert pitches_before_8 == [(60, 0.0), (62, 1.0)]  # E and F lay outside the input section
    whole = generator.generate(song, options(8.0, 12.0, seed=1))
    assert [n.pitch for n in whole.notes if n.start_time < 8.0] == [60, 62, 64, 65]


def test_magentas_errors_for_bad_sections(tiny_generator):
    generator = MelodySequenceGenerator(tiny_generator)
    primer = primer_of()  # ends at 4.0 s
    bad = [
        (options(3.5, 8.0), "before the end of the NoteSequence"),
        (options(4.0, 8.0, input_section=(0.0, 6.0)), "overlaps the generate section"),
        (options(4.0, 4.01), "holds no grid step"),
        (options(8.0, 4.0), "not after its start"),
    ]
    two = options(4.0, 8.0)
    two.generate_sections.add(start_time=8.0, end_time=12.0)
    bad.append((two, "only 1 generate_sections message, but got 2"))
    two_inputs = options(4.0, 8.0, input_section=(0.0, 2.0))
    two_inputs.input_sections.add(start_time=2.0, end_time=4.0)
    bad.append((two_inputs, "at most one input_sections message, but got 2"))
    for opts, message in bad:
        with pytest.raises(sequence_generator.SequenceGeneratorError, match=message):
            generator.generate(primer, opts)


def test_an_input_section_after_a_meter_change_is_read_in_the_new_meter(tiny_generator):
    # 4/4 until 4.0 s, then 3/4 (120 qpm: bars of 1.5 s from 4.0 s, so bar lines at 5.5, 7.0, 8.5, 10.0, 11.5)
    song = make_sequence([(60 + i % 5, i, i + 1) for i in range(14)])  # quarters: one note every 0.5 s to 7.0 s
    song.time_signatures.add(time=4.0, numerator=3, denominator=4)
    generator = MelodySequenceGenerator(tiny_generator)
    ns = generator.generate(song, options(7.0, 10.0, input_section=(4.5, 7.0), seed=1))
    assert ns.total_time == 10.0
    assert [(n.pitch, n.start_time) for n in ns.notes if n.start_time < 7.0] == [
        (60 + i % 5, i * 0.5) for i in range(9, 14)]  # the input section's notes, where they were
    assert min(n.start_time for n in ns.notes if n.start_time >= 7.0 - 1e-9) >= 7.0
    assert [(t.time, t.numerator, t.denominator) for t in ns.time_signatures] == [(0.0, 4, 4), (4.0, 3, 4)]
    snapped = generator.generate(song, options(7.0, 11.0, input_section=(4.5, 7.0), seed=1, snap_to_bar=True))
    assert snapped.total_time == pytest.approx(10.0)  # the last 3/4 bar line at or before 11.0 s
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="input section that starts at or after"):
        generator.generate(song, options(7.0, 10.0, input_section=(3.0, 7.0)))


def test_bad_generator_args_are_magentas_error_naming_the_arg(tiny_generator):
    generator = MelodySequenceGenerator(tiny_generator)
    bad = options(4.0, 8.0)
    bad.args["repetition"].string_value = "x"
    with pytest.raises(sequence_generator.SequenceGeneratorError, match=r"args\['repetition'\] must be a number"):
        generator.generate(primer_of(), bad)
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="must be a whole number, got 1.5"):
        generator.generate(primer_of(), options(4.0, 8.0, repetition_bars=1.5))
    with pytest.raises(sequence_generator.SequenceGeneratorError, match=r"repetition must be in \[-100, 100\]"):
        generator.generate(primer_of(), options(4.0, 8.0, repetition=1000.0))
    ns = generator.generate(primer_of(), options(4.0, 8.0, repetition=3.0, repetition_bars=1, seed=1))
    assert ns.total_time == 8.0


def test_the_ending_arg_follows_the_rules_of_melody_generate(tiny_generator, tmp_path):
    """args["ending"]: "tune" is refused for a model without an end token (the tiny char_lstm); a model with one
    (the shipped folk_lookback) ends the section as a tune or continues it, and "x" is Magenta's error."""
    from melody_plugin.generate.generator import MelodyGenerator

    def with_ending(value, **args):
        opts = options(4.0, 12.0, **args)
        opts.args["ending"].string_value = value
        return opts

    old = MelodySequenceGenerator(tiny_generator)
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="--ending=tune needs a model trained with"):
        old.generate(primer_of(), with_ending("tune"))
    assert old.generate(primer_of(), with_ending("open", seed=1)).total_time == 12.0
    shipped = MelodyGenerator.default()
    assert shipped.vocab.end_token
    generator = MelodySequenceGenerator(shipped)
    for ending in ("tune", "open"):
        ns = generator.generate(primer_of(), with_ending(ending, seed=3))
        assert ns.total_time == 12.0 and max(n.end_time for n in ns.notes) <= 12.0 + 1e-9
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="ending must be tune or open, got 'x'"):
        generator.generate(primer_of(), with_ending("x"))


def test_snap_to_bar_ends_on_the_last_bar_line_before_end_time(tiny_generator):
    generator = MelodySequenceGenerator(tiny_generator, snap_to_bar=True)
    ns = generator.generate(primer_of(), options(4.0, 11.0, seed=2))  # bars of 2 s: the last line is 10 s
    assert ns.total_time == pytest.approx(10.0)
    assert max(n.end_time for n in ns.notes) <= 10.0 + 1e-9
    unsnapped = generator.generate(primer_of(), options(4.0, 11.0, seed=2, snap_to_bar=False))
    assert unsnapped.total_time == pytest.approx(11.0)


def test_factory_takes_a_bundle_proto_as_magenta_midi_passes_it(tiny_generator, tmp_path):
    tiny_generator.save_bundle(tmp_path / "tiny.mag", "a tiny test model")
    bundle = sequence_generator_bundle.read_bundle_file(str(tmp_path / "tiny.mag"))
    factory = get_generator_map()["char_lstm"]
    generator = factory(bundle=bundle)
    assert generator.details.id == "char_lstm" and generator.steps_per_quarter == 12
    assert generator.bundle_details.description == "a tiny test model"
    with generator as g:
        ns = g.generate(primer_of(), options(4.0, 8.0, seed=5))
    assert ns.total_time == pytest.approx(8.0)
    assert generator._model is None  # closed: weights dropped until the next generate
    assert generator.generate(primer_of(), options(4.0, 8.0, seed=5)) == ns  # same seed, same melody
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="does not match"):
        get_generator_map()["folk_lstm"](bundle=bundle)
    with pytest.raises(sequence_generator.SequenceGeneratorError, match="Either checkpoint or bundle"):
        factory()
    generator.create_bundle_file(str(tmp_path / "again.mag"), "copy")
    assert sequence_generator_bundle.read_bundle_file(str(tmp_path / "again.mag")).checkpoint_file == \
        bundle.checkpoint_file


def test_no_magenta_models_imported_here():
    # the env var Magenta's models need must not leak into this process (Keras 3 tests share it)
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    assert not any(m.startswith("magenta.models.melody_rnn") for m in sys.modules)


def test_note_seq_melody_of_magentas_extractor_round_trips_notes():
    quantized = note_sequence_pipelines.Quantizer(steps_per_quarter=4).transform(tunes(1)[0])[0]
    melodies, _ = melody_pipelines.extract_melodies(quantized, min_bars=1, min_unique_pitches=1,
                                                    ignore_polyphonic_notes=True)
    converted = note_seq_melody_to_melody(melodies[0], steps_per_quarter=12)
    assert converted.notes == tune_melody(0).notes
    assert Melody(converted.notes).total_steps == len(melodies[0]) * 3
    assert all(isinstance(n, Note) for n in converted.notes)
