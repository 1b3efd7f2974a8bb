"""Magenta's generator contract: `MelodySequenceGenerator` and `get_generator_map()`."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from pathlib import Path

from melody_plugin.io import protos
from melody_plugin.generate.bundle import bundle_meta, bundle_proto, bundle_to_model
from melody_plugin.generate.generator import MelodyGenerator, ModelLoadError
from melody_plugin.generate.sampler import SamplingError, SamplingOptions
from melody_plugin.interop.magenta import _ErrorBases, _GeneratorBase
from melody_plugin.interop.units import _rests
from melody_plugin.model.registry import ModelConfig, get_config, list_configs
from melody_plugin.model.rundir import RunDir
from melody_plugin.music.melody import Melody, MelodyError, Note
from melody_plugin.io.tempo_map import TempoMap
from melody_plugin.music.timing import meter_change_times
from melody_plugin.runtime.quiet import import_note_seq, quiet_third_party


class SequenceGeneratorError(*_ErrorBases):
    """A generate request the model cannot serve (Magenta's `SequenceGeneratorError` too, when installed)."""


def _run_dir_of(checkpoint) -> Path:
    """The run dir of a checkpoint argument: the run dir itself, a folder in it (Magenta passes run_dir/train),
    or a checkpoint file in its checkpoints/ folder."""
    path = Path(checkpoint).expanduser()
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelLoadError(f"{checkpoint}: not a melody_plugin run dir nor inside one (no config.json)")


def _generate_args(args) -> dict:
    """GeneratorOptions.args understood here, with their types; others are ignored, as Magenta does."""
    kinds = {"temperature": float, "beam_size": int, "branch_factor": int, "steps_per_iteration": int,
             "top_k": int, "top_p": float, "repetition": float, "repetition_bars": int, "seed": int,
             "snap_to_bar": bool, "ending": str}
    out = {}
    for name, kind in kinds.items():
        if name not in args:
            continue
        value = args[name]
        field = value.WhichOneof("kind")
        if field is None:
            continue
        raw = getattr(value, field)
        if kind is str:
            out[name] = raw.decode() if isinstance(raw, bytes) else str(raw)
            continue
        if kind is bool and isinstance(raw, (str, bytes)):
            raw = (raw.decode() if isinstance(raw, bytes) else raw).lower() in ("1", "true", "yes")
        try:
            out[name] = kind(raw.decode() if isinstance(raw, bytes) else raw)
            if kind is int and out[name] != float(raw):
                raise ValueError("not a whole number")
        except (TypeError, ValueError):
            raise SequenceGeneratorError(f"args[{name!r}] must be {'a whole number' if kind is int else 'a number'}"
                                         f", got {raw!r}") from None
    return out


def _cut(notes, steps: int) -> list[Note]:
    """The first `steps` steps of `notes` (the last note shortened)."""
    out, step = [], 0
    for n in notes:
        if step >= steps:
            break
        out.append(Note(n.pitch, min(n.duration_steps, steps - step)))
        step += out[-1].duration_steps
    return out


class MelodySequenceGenerator(_GeneratorBase):
    """Magenta's `BaseSequenceGenerator` contract over a `MelodyGenerator` (and one, when Magenta is installed).

    `generate(input_sequence, generator_options)` continues the melody of `input_sequence` (or of its one input
    section) from the grid step of the generate section's `start_time` (a rest fills the gap) to its
    `end_time` quantized down; the output's `total_time` is `end_time`. `snap_to_bar` (constructor, or
    `args["snap_to_bar"]`) ends it on the last bar line at or before `end_time` instead. Default: not snapped.
    `args` read: temperature, beam_size, branch_factor, steps_per_iteration (Magenta's), top_k, top_p,
    repetition, repetition_bars, seed (default: a fresh one per call), snap_to_bar, ending ("tune": the section
    ends as a tune, needs a model with an end token; "open"; default: tune with no primer notes and an end token).
    """

    def __init__(self, model: MelodyGenerator | None = None, details=None, checkpoint=None, bundle=None,
                 snap_to_bar: bool = False):
        """Args:
          model: a loaded MelodyGenerator; or leave None and give exactly one of:
          checkpoint: a run dir or a folder in it (Magenta's run_dir/train): its best checkpoint (lowest eval
            bits/note), else its latest, is loaded by `initialize()`; or one checkpoint, by its prefix
            (checkpoints/ckpt-20) or one of its files (ckpt-20.index): that one.
          bundle: a GeneratorBundle proto (what Magenta's `read_bundle_file` returns) or a .mag path.
          details: a GeneratorDetails; default: the model's config name and description.
        """
        if model is None and checkpoint is None and bundle is None:
            raise SequenceGeneratorError("Either checkpoint or bundle must be set")
        if checkpoint is not None and bundle is not None:
            raise SequenceGeneratorError("Checkpoint and bundle cannot both be set")
        quiet_third_party()
        generator_pb2 = protos.generator_pb2()


        self._model, self._owns_model = model, model is None
        self._checkpoint_file = "best"  # the run's best checkpoint, else its latest
        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
            prefix = re.fullmatch(r"(ckpt-\d+)\.(index|data-\d+-of-\d+)", path.name)
            if prefix and path.is_file():  # one of a checkpoint's files names the checkpoint
                path = path.with_name(prefix.group(1))
            if Path(f"{path}.index").is_file():  # a checkpoint named by its prefix, as tf.train lists them
                self._checkpoint_file = str(path)
            elif not path.is_dir() and (re.fullmatch(r"ckpt-\d+", path.name) or not path.parent.is_dir()):
                # (a folder that is not there, such as Magenta's run_dir/train, still names its run dir)
                raise SequenceGeneratorError(f"Checkpoint path does not exist: {checkpoint}")
            try:
                checkpoint = _run_dir_of(path)
            except ModelLoadError as e:
                raise SequenceGeneratorError(str(e)) from None
        self._checkpoint = checkpoint
        try:  # Magenta's callers catch SequenceGeneratorError: an unreadable bundle or run dir is one too
            self._bundle = bundle_proto(bundle) if bundle is not None else None
            if model is not None:
                self.config = model.config
            elif self._checkpoint is not None:
                self.config = RunDir(self._checkpoint).load_config()
            else:
                self.config = ModelConfig.from_json(bundle_meta(self._bundle)["config"])
        except ModelLoadError as e:
            raise SequenceGeneratorError(str(e)) from None
        self._details = details or generator_pb2.GeneratorDetails(
            id=self.config.name, description=self.config.description or self.config.name)
        if self._bundle is not None and self._bundle.generator_details.id != self._details.id:
            raise SequenceGeneratorError(f"Generator id in bundle ({self._bundle.generator_details.id}) does not "
                                         f"match this generator's id ({self._details.id})")
        self.snap_to_bar = snap_to_bar
        self._initialized = model is not None

    @property
    def details(self):
        return self._details

    @property
    def bundle_details(self):
        """The bundle's BundleDetails, or None when loaded from a checkpoint (as Magenta's)."""
        return self._bundle.bundle_details if self._bundle is not None else None

    @property
    def steps_per_quarter(self) -> int:
        return self._model.vocab.steps_per_quarter if self._model else self.config.steps_per_quarter

    @property
    def model(self) -> MelodyGenerator:
        self.initialize()
        return self._model

    def initialize(self) -> None:
        """Loads the weights (numpy; no TensorFlow session). A no-op when already loaded."""
        if self._initialized:
            return
        try:
            if self._checkpoint is not None:
                self._model = MelodyGenerator.from_run_dir(self._checkpoint, self._checkpoint_file)
            else:
                config, vocab, weights, step, source = bundle_to_model(self._bundle)
                self._model = MelodyGenerator(config, vocab, weights, source, step)
        except ModelLoadError as e:  # Magenta's callers catch SequenceGeneratorError
            raise SequenceGeneratorError(str(e)) from None
        self._initialized = True

    def close(self) -> None:
        """Drops weights loaded from a checkpoint or bundle (a model passed in is kept)."""
        if self._initialized and self._owns_model:
            self._model, self._initialized = None, False

    def __enter__(self):
        self.initialize()
        return self

    def __exit__(self, *args):
        self.close()

    def create_bundle_file(self, bundle_file, bundle_description=None) -> None:
        if not bundle_file:
            raise SequenceGeneratorError("Bundle file location not specified.")
        self.initialize()
        self._model.save_bundle(bundle_file, bundle_description or "")

    def generate(self, input_sequence, generator_options):
        """Magenta's `generate`: initializes, then continues `input_sequence` over the one generate section.

        Raises:
          SequenceGeneratorError: for more than one input section, not exactly one generate section, a section
            that ends before it starts or holds no grid step, a start before the primer's last note ends, an
            input section overlapping the generate section, or a meter change after the primer's first note (a
            primer whose notes all begin after the last change is read from the change, in its meter).
        """
        self.initialize()
        return self._generate(input_sequence, generator_options)

    def _generate(self, input_sequence, generator_options):
        quiet_third_party()
        sequences_lib = import_note_seq("sequences_lib")
        music_pb2 = protos.music_pb2()

        options = generator_options
        if len(options.input_sections) > 1:
            raise SequenceGeneratorError(f"This model supports at most one input_sections message, but got "
                                         f"{len(options.input_sections)}")
        if len(options.generate_sections) != 1:
            raise SequenceGeneratorError(f"This model supports only 1 generate_sections message, but got "
                                         f"{len(options.generate_sections)}")
        section = options.generate_sections[0]
        start_time, end_time = section.start_time, section.end_time
        if not end_time > start_time:
            raise SequenceGeneratorError(f"generate section ends at {end_time} s, not after its start "
                                         f"({start_time} s)")
        primer_ns = music_pb2.NoteSequence()
        if input_sequence is not None:
            primer_ns.CopyFrom(input_sequence)
        if options.input_sections:
            inp = options.input_sections[0]
            if inp.end_time > start_time + 1e-9 and inp.start_time < end_time:
                raise SequenceGeneratorError(f"input section {inp.start_time}-{inp.end_time} s overlaps the generate "
                                             f"section {start_time}-{end_time} s; this model can only extend sequences")
            primer_ns = sequences_lib.trim_note_sequence(primer_ns, inp.start_time, inp.end_time)
        last_end = max((n.end_time for n in primer_ns.notes), default=0.0)
        if last_end > start_time:
            raise SequenceGeneratorError(
                "Got GenerateSection request for section that is before the end of the NoteSequence. This model "
                f"can only extend sequences. Requested start time: {start_time}, Final note end time: {last_end}")
        # the primer is what comes before start_time; later tempo and meter events belong to the generated part
        for events in (primer_ns.tempos, primer_ns.time_signatures, primer_ns.key_signatures):
            kept = [e for e in events if e.time < start_time or e.time == 0]
            del events[:]
            events.extend(kept)
        primer_ns.total_time = min(primer_ns.total_time, start_time)
        # a primer whose notes all begin after its last meter change is read from the change, in that meter
        changes, offset = meter_change_times(primer_ns), 0.0
        if changes:
            first_note = min((n.start_time for n in primer_ns.notes), default=start_time)
            if first_note < changes[-1] - 1e-9:
                raise SequenceGeneratorError(
                    f"the time signature changes at {changes[-1]:.3f} s, after the primer's first note "
                    f"({first_note:.3f} s); give an input section that starts at or after the change")
            offset, whole = changes[-1], primer_ns
            whole.total_time = start_time  # the primer lasts to the generate section (a rest where nothing sounds)
            primer_ns = sequences_lib.extract_subsequence(whole, offset, start_time)
            primer_ns.ClearField("subsequence_info")
            start_time, end_time = start_time - offset, end_time - offset

        args = _generate_args(options.args)
        snap = args.get("snap_to_bar", self.snap_to_bar)
        spq = self.steps_per_quarter
        tempo_map = TempoMap(primer_ns.tempos)
        start_step = math.ceil(tempo_map.quarters_at(start_time) * spq - 1e-6)  # no new note before start_time
        end_step = math.floor(tempo_map.quarters_at(end_time) * spq + 1e-6)
        primer = self._primer(primer_ns, start_step, tempo_map)
        if snap:
            end_step -= end_step % primer.steps_per_bar
        if end_step <= start_step:
            raise SequenceGeneratorError(f"generate section {start_time}-{end_time} s holds no grid step"
                                         f"{' up to a bar line' if snap else ''} after its start (step {start_step} "
                                         f"of {spq} per quarter)")

        try:  # Magenta's callers catch SequenceGeneratorError: bad args are one
            sampling = SamplingOptions(
                temperature=args.get("temperature", 1.0), beam_size=args.get("beam_size", 1),
                branch_factor=args.get("branch_factor", 1), steps_per_iteration=args.get("steps_per_iteration", 1),
                top_k=args.get("top_k", 0), top_p=args.get("top_p", 1.0), repetition=args.get("repetition", 0.0),
                repetition_bars=args.get("repetition_bars", 2), seed=args.get("seed", secrets.randbelow(2**31)),
                ending=args.get("ending"))
            generation = self._model.generate(primer, end_step=end_step, sampling=sampling)[0]
        except SamplingError as e:
            raise SequenceGeneratorError(f"generator args: {e}") from None
        ns = generation.note_sequence
        end = ns.total_time if snap else end_time
        for note in ns.notes:  # float steps must not poke past the end
            note.end_time = min(note.end_time, end)
        ns.total_time = end
        if offset:  # back to the input's clock, with its tempo and meter events before the change
            ns = sequences_lib.shift_sequence_times(ns, offset)
            start, ns.total_time = start_time + offset, end + offset if snap else section.end_time
            for note in ns.notes:  # adding the offset back must not move a new note before start_time
                if abs(note.start_time - start) < 1e-6:
                    note.start_time = max(note.start_time, section.start_time)
                note.end_time = min(note.end_time, ns.total_time)
            for name in ("tempos", "time_signatures", "key_signatures"):
                earlier = [e for e in getattr(whole, name) if e.time < offset]
                getattr(ns, name).extend(earlier)
                getattr(ns, name).sort(key=lambda e: e.time)
        return ns

    def _primer(self, primer_ns, start_step: int, tempo_map) -> Melody:
        """The primer's melody on the model's grid, lasting exactly to `start_step` (a rest fills the gap)."""
        spq = self.steps_per_quarter
        try:
            melody = self._model.primer_from_note_sequence(primer_ns, "highest")
        except MelodyError as e:
            if e.reason not in ("no_notes", "drums_only"):
                raise
            ts = sorted(primer_ns.time_signatures, key=lambda t: t.time)
            meter = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
            melody = Melody((), spq, meter)
        notes = list(melody.notes)
        if melody.total_steps > start_step:
            notes = _cut(notes, start_step)
        elif melody.total_steps < start_step:
            notes += _rests(melody.total_steps, start_step - melody.total_steps, melody.steps_per_bar)
        # the tempo map up to start_step, rests included (the melody keeps only the changes up to its end)
        tempos = tempo_map.tempo_steps(spq)
        qpm, changes = tempos[0][1], []
        for step, change_qpm in tempos[1:]:
            if 0 < step < start_step and change_qpm != (changes[-1][1] if changes else qpm):
                changes.append((step, change_qpm))
        return dataclasses.replace(melody, notes=tuple(notes), qpm=qpm, tempo_changes=tuple(changes))


def get_generator_map() -> dict:
    """{config name: factory} for every registered config, like Magenta's melody_rnn `get_generator_map()`.

    A factory takes `checkpoint=` (a run dir, or a folder or checkpoint in it) or `bundle=` (a GeneratorBundle
    proto or a .mag path), and optionally `snap_to_bar=True`, and returns a `MelodySequenceGenerator`; the model
    there must have been trained with that config.
    """
    quiet_third_party()
    generator_pb2 = protos.generator_pb2()

    def factory_for(name):
        config = get_config(name)

        def create_sequence_generator(checkpoint=None, bundle=None, snap_to_bar=False):
            details = generator_pb2.GeneratorDetails(id=name, description=config.description or name)
            generator = MelodySequenceGenerator(None, details, checkpoint, bundle, snap_to_bar)
            if generator.config.name != name:
                raise SequenceGeneratorError(f"{checkpoint or 'bundle'}: trained with config "
                                             f"{generator.config.name!r}, not {name!r}")
            return generator

        create_sequence_generator.config = config
        return create_sequence_generator

    return {name: factory_for(name) for name in list_configs()}
