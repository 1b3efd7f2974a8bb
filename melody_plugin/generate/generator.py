"""`MelodyGenerator`: a run dir or bundle + a primer -> continued melodies that end on a bar line."""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path

import numpy as np

from melody_plugin.errors import InputFileError, MelodyPluginError, ModelLoadError
from melody_plugin.generate import bundle, endings, sampler_tf
from melody_plugin.generate.sampler import (
    Constraints,
    DecodeStart,
    History,
    SampleResult,
    SamplingError,
    SamplingOptions,
    TokenTable,
    sample,
    scale_key,
)
from melody_plugin.io.files import read_music_file
from melody_plugin.model.checkpoint import load_run_weights
from melody_plugin.model.numpy_model import (
    NumpyLSTM,
    weights_to_keras_model,
)
from melody_plugin.model.registry import ModelConfig
from melody_plugin.model.rundir import RunDir
from melody_plugin.music.extract import melody_to_note_sequence, note_sequence_to_melodies, note_sequence_to_melody
from melody_plugin.music.key import doubted_signature, estimate_key, key_scale, outside_share, relative_keys
from melody_plugin.music.melody import REST, Melody, MelodyError, Note, text_to_melody
from melody_plugin.runtime import atomic
from melody_plugin.runtime.quiet import filtered_stderr, import_tensorflow
from melody_plugin.tokens.form import FINAL_OPEN, OPEN_COUNTDOWN, bars_left
from melody_plugin.tokens.vocab import (
    METER_FEATURE_SIZE,
    START,
    UNK,
    OovChange,
    Vocabulary,
    key_shift,
    meter_features,
    token_durations,
)

DEFAULT_MODEL_DIR = Path(__file__).parents[1] / "data" / "default_model"


MODE_ROUNDS = 16  # draws `generate_in_mode` makes at most to find outputs in the mode asked for

EXAMPLE_PRIMER = Path(__file__).parents[1] / "data" / "examples" / "seed.mid"


class PrimerError(MelodyPluginError):
    """A primer that cannot be used: unreadable, no notes, drums only..."""


@dataclasses.dataclass
class Generation:
    """One output: the melody (primer included unless continuation_only), its NoteSequence and its scores."""

    melody: Melody
    note_sequence: object
    primer_steps: int  # steps of `melody` that come from the primer (or leading rest when continuation_only)
    continuation_ids: list[int]
    log_likelihoods: list[float]  # natural log, one per continuation token
    num_bars: int  # bars after the primer's last complete bar
    total_bars: int
    oov_changes: list[OovChange]
    seed: int
    continuation: tuple = ()  # the sampled notes (sounding pitches), one per id of continuation_ids
    unfilled_steps: int = 0  # silence added at the end where no token could fill the last steps (rare)
    ending: str = "open"  # "tune": told where to end and ended there; "open": cut off where the bars ran out
    end_log_likelihood: float | None = None  # natural log of the end token after the last note ("tune" only)
    final_pitch_class: int | None = None  # 0-11: the pitch class a final-pitch model was told to end on ("tune")

    @property
    def continuation_notes(self) -> list[dict]:
        """Each continuation token with its pitch, duration and log-likelihood (for the sidecar JSON)."""
        notes, step = [], self.primer_steps
        for note, ll in zip(self.continuation, self.log_likelihoods):
            notes.append({"pitch": None if note.is_rest else note.pitch, "start_step": step,
                          "duration_steps": note.duration_steps, "log_likelihood": round(ll, 5)})
            step += note.duration_steps
        return notes


def _continued(primer: Melody, new: tuple[Note, ...], continuation_only: bool, keys=None) -> tuple[Melody, int]:
    """The output melody and how many of its steps come before `new` (the primer, or a leading rest). Without
    primer notes the key is the melody's own (Krumhansl-Schmuckler on what was generated, among `keys` when
    given): there is none to keep."""
    if not primer.notes:
        key, minor = estimate_key(new, keys=keys)
        primer = dataclasses.replace(primer, key=key, minor=minor)
    if continuation_only:
        lead = primer.total_steps % primer.steps_per_bar  # keeps the bar lines where they were
        notes = ((Note(REST, lead),) if lead else ()) + new
        return primer.with_tempo(primer.final_qpm).with_notes(notes), lead
    # the primer's tempo map; the continuation keeps its last
    return primer.with_notes(primer.notes + new), primer.total_steps


def _key_pair(key) -> tuple[int, bool]:
    """(tonic 0-11, minor) of an empty primer's `key`: such a pair, TONIC:MODE text or None (C major)."""
    if isinstance(key, str):
        key = scale_key(key) if ":" in key else key
    if key is None:
        return 0, False
    tonic, minor = key if isinstance(key, (tuple, list)) and len(key) == 2 else (None, None)
    if not (isinstance(tonic, numbers.Integral) and not isinstance(tonic, bool) and 0 <= tonic <= 11
            and isinstance(minor, (bool, np.bool_))):
        raise PrimerError(f"key must be (tonic pitch class 0-11, minor True/False) or TONIC:MODE text such as "
                          f"'E:minor', got {key!r}")
    return int(tonic), bool(minor)


class MelodyGenerator:
    """A trained model ready to continue melodies. The CLI `melody_generate` is a thin shell over it."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary, weights: dict, source: str = "", step=None):
        self.config, self.vocab, self.source, self.step = config, vocab, source, step
        self.weights = weights
        self.model = NumpyLSTM(weights, vocab.durations(), config.copy_bars)
        if self.model.vocab_size != len(vocab):
            raise ModelLoadError(f"{source}: weights are for {self.model.vocab_size} tokens, the vocabulary has "
                                 f"{len(vocab)}")
        self._durations = vocab.durations()
        self._pitches = vocab.pitches()

    # --- loading

    @classmethod
    def from_run_dir(cls, path, checkpoint: str = "best") -> "MelodyGenerator":
        """The run's best checkpoint by eval bits/note (its latest when it has none), or `checkpoint="latest"`."""
        run = RunDir(path).require()
        config, vocab = run.load_config(), run.load_vocab()
        weights, step = load_run_weights(run, config, vocab, checkpoint)
        return cls(config, vocab, weights, str(run.path), step)

    @classmethod
    def load(cls, run_dir=None, bundle_file=None, checkpoint: str = "best") -> "MelodyGenerator":
        """From a bundle, else a run dir (its `checkpoint`: best or latest), else the embedded default model (what
        every command's flags mean)."""
        if bundle_file:
            return cls.from_bundle(bundle_file)
        return cls.from_run_dir(run_dir, checkpoint) if run_dir else cls.default()

    @classmethod
    def default(cls) -> "MelodyGenerator":
        """The small folk model shipped inside the package."""
        if not (DEFAULT_MODEL_DIR / "weights.npz").is_file():
            raise ModelLoadError(f"{DEFAULT_MODEL_DIR}: the embedded model is missing; run "
                                 "scripts/train_default_model.py or pass --run_dir")
        return cls.from_run_dir(DEFAULT_MODEL_DIR)

    def bundle_bytes(self, description: str = "") -> bytes:
        """This model as a note-seq GeneratorBundle (`bundle.model_to_bundle_bytes`)."""
        return bundle.model_to_bundle_bytes(self.config, self.vocab, self.weights, self.step, description)

    def save_bundle(self, path, description: str = "") -> None:
        atomic.write_bytes(path, self.bundle_bytes(description))

    @classmethod
    def from_bundle(cls, path) -> "MelodyGenerator":
        config, vocab, weights, step = bundle.read_bundle_file(path)
        return cls(config, vocab, weights, str(path), step)

    # --- primers

    def primer_from_file(self, path, policy: str = "highest", track=None, program=None) -> Melody:
        """The primer melody of a MIDI/MusicXML/ABC file, through the training converters.

        Raises:
          PrimerError: naming the file and the reason.
        """
        return self.load_primer(path, policy, track, program)[0]

    def load_primer(self, path, policy: str = "highest", track=None, program=None) -> tuple[Melody, list[str]]:
        """Like `primer_from_file`, also returning what the reader noticed (each warning names the file).

        A tune of an ABC tunebook is picked by its number: `book.abc#X:9` (or `book.abc#9`); only that tune is
        read, and when it cannot be, the error gives its reason. Without one, the first readable tune is used and
        a warning names it.
        """

        if track == "all":
            raise PrimerError(f"{path}: --track=all is for training folders; a primer continues one track "
                              "(pass --track=N)")
        wanted = None
        if "#" in str(path) and not Path(path).exists():
            path, wanted = str(path).rsplit("#", 1)
            wanted = wanted[2:] if wanted.startswith("X:") else wanted
        try:
            music = read_music_file(path, tune=wanted)
            sequences = music.sequences
            extraction = note_sequence_to_melodies(sequences[0], self.vocab.steps_per_quarter,
                                                   policy, track, program)
        except InputFileError as e:
            raise PrimerError(str(e)) from None
        except MelodyError as e:
            raise PrimerError(f"{path}: {str(e).split(': ', 1)[-1]}") from None
        warnings = [f"{path}: {w}" for w in music.warnings + tuple(extraction.warnings)]
        if len(music.sequences) > 1:  # no tune named (a named one is read alone)
            tune = sequences[0].filename.rsplit("#", 1)[-1]
            title = f" {sequences[0].sequence_metadata.title!r}" if sequences[0].sequence_metadata.title else ""
            warnings.append(f"{path}: {len(music.sequences)} tunes; the primer is tune {tune}{title} (the first "
                            f"readable; pick another with {path}#X:N)")
        if len(extraction.melodies) > 1:
            last = extraction.melodies[-1]
            warnings.append(f"{path}: the time signature changes; continuing its last part "
                            f"({last.time_signature[0]}/{last.time_signature[1]})")
        if extraction.stats.get("notes_snapped_to_grid"):
            warnings.append(f"{path}: {extraction.stats['notes_snapped_to_grid']} notes snapped to the grid")
        primer = extraction.melodies[-1]
        found = doubted_signature(primer.notes, primer.key, primer.minor)
        if found is not None:  # a default or wrong key signature: the notes' key is the primer's
            share = outside_share(primer.notes, key_scale(primer.key, primer.minor))
            warnings.append(f"{path}: the key is read as {found.name}, from the notes: {share:.0%} of their time "
                            f"is outside the key signature's {primer.key_name}")
            primer = dataclasses.replace(primer, key=found.tonic, minor=found.minor)
        return primer, warnings

    def primer_from_note_sequence(self, ns, policy: str = "highest", track=None, program=None) -> Melody:
        return note_sequence_to_melody(ns, self.vocab.steps_per_quarter, policy, track, program)

    def primer_from_text(self, text: str, time_signature=(4, 4), qpm: float | None = None) -> Melody:
        """An inline primer such as "C4:1 D4:0.5 E4:0.5 R:1" on the model's grid (see `melody.text_to_melody`).

        Raises:
          PrimerError: naming the note that cannot be read.
        """
        try:
            return text_to_melody(text, self.vocab.steps_per_quarter, time_signature, qpm or 120.0)
        except MelodyError as e:
            raise PrimerError(f"primer melody: {e}") from None

    # --- generation

    def _next_logits(self, ids, state):
        return self.model.step(ids, state)

    def _metered_logits(self, steps_per_bar: int, ending: str):
        """The sampler's `next_logits(ids, state, positions[, remaining])` for a model with meter features; a
        countdown model is fed the bars left ("tune") or the open countdown ("open")."""
        bar_steps = min(steps_per_bar, METER_FEATURE_SIZE - 1)

        def next_logits(ids, state, positions, remaining=None):
            positions = np.minimum(positions, METER_FEATURE_SIZE - 1)
            countdown = None
            if self.model.countdown:
                countdown = (bars_left(remaining, steps_per_bar) if ending == "tune"
                             else np.full(len(ids), OPEN_COUNTDOWN))
            return self.model.step(ids, state, positions, np.full(len(ids), bar_steps), bars_left=countdown)

        return next_logits

    def resolve_ending(self, primer_melody: Melody, ending: str | None) -> str:
        """The ending a generation gets: `ending`, or "tune" without a primer when the model has an end token.

        Raises:
          SamplingError: "tune" asked of a model trained without an end token.
        """
        if ending is None:
            return "tune" if self.vocab.end_token and not primer_melody.notes else "open"
        if ending == "tune" and not self.vocab.end_token:
            raise SamplingError(f"{self.source or 'this model'}: --ending=tune needs a model trained with an end "
                                "token (config end_token=true, e.g. folk_lookback); this one only continues "
                                "(--ending=open)")
        return ending

    def _primer_durations(self, sequence: list[int], changes: list[OovChange]) -> np.ndarray:
        """Steps of each id of `sequence`; an `<unk>` lasts its primer note's true duration (the primer is known)."""
        durations = token_durations(sequence, self._durations).copy()
        unknown = iter(c.original[1] for c in changes if not c.replacement)  # one <unk> each, in order
        for t, token_id in enumerate(sequence):
            if token_id == UNK:
                durations[t] = next(unknown, 0)
        return durations

    def generate(self, primer=None, num_bars: int = 8, num_outputs: int = 1,
                 sampling: SamplingOptions | None = None, constraints: Constraints | None = None,
                 *, continuation_only: bool = False, end_step: int | None = None, minor=None) -> list[Generation]:
        """Continues `primer` (a Melody, a NoteSequence read with policy "highest", or None: the start token in
        4/4 at 120 qpm; another meter or tempo: `empty_primer(time_signature, qpm)`).

        The output ends exactly on the bar line `num_bars` bars after the primer's last complete bar (an
        unfinished primer bar is completed first, and counts as the first of those bars). It keeps the primer's
        meter and tempo: for another tempo pass `primer.with_tempo(qpm)`.

        Args:
          sampling: temperature, top-k/top-p, beam search, the repetition prior, seed and backend ("numpy", or
            "tf": one compiled TensorFlow loop, no beams or prior). Default: temperature 1, seed 0.
          constraints: the scale and pitch range notes must keep to, e.g. `Constraints.parse(scale="D:dorian",
            pitch_range="55:84")`; default none.
          continuation_only: each output holds only the new notes (after a rest that keeps the bar lines).
          end_step: when given, the output (primer included) ends exactly at this grid step of the primer's
            grid instead of on a bar line (`num_bars` is then ignored); Magenta's generate sections use it.
          minor: a final-pitch model draws its final as the training tunes in this mode end (True: minor); default all.

        Raises:
          PrimerError, SamplingError: a primer off the model's grid, bad counts, impossible constraints.
        """
        sampling = sampling or SamplingOptions()
        constraints = constraints or Constraints()
        if num_bars < 1:
            raise SamplingError(f"num_bars must be >= 1, got {num_bars}")
        if num_outputs < 1:
            raise SamplingError(f"num_outputs must be >= 1, got {num_outputs}")
        primer_melody = self._primer_melody(primer)
        spb, primer_steps = primer_melody.steps_per_bar, primer_melody.total_steps
        if end_step is None:
            end_step = (primer_steps // spb + num_bars) * spb
        elif end_step <= primer_steps:
            raise SamplingError(f"end_step {end_step} must be after the primer's end (step {primer_steps})")

        ending = self.resolve_ending(primer_melody, sampling.ending)
        sampling = dataclasses.replace(sampling, ending=ending)
        # --- primer -> model state; a key-normalised model works in C major / A minor (from the primer's key)
        shift = key_shift(primer_melody) if self.vocab.transpose_to_key else 0
        model_ids, changes = self.vocab.encode_with_report(primer_melody.transpose(shift))
        changes = [c.transpose(-shift) for c in changes]  # named as the primer has them
        start = self._decode_start(primer_melody, [START] + model_ids, changes, (num_outputs, end_step, minor),
                                   sampling)
        # --- sample
        tokens = TokenTable(self._durations, constraints.mask(self._pitches, shift=-shift))
        result = self._sample(start, tokens, sampling)
        outputs, end_lls = [], result.end_log_likelihoods or [None] * len(result.ids)  # --- tokens -> melodies
        told = start.state[-1][:, 0] if self.model.final_pitch and ending == "tune" else [FINAL_OPEN] * num_outputs
        # a model in one key chose between the primer's key and its relative major / minor (C major / A minor)
        mode_keys = relative_keys(primer_melody.key, primer_melody.minor) if self.vocab.transpose_to_key else None
        for ids, lls, unfilled, end_ll, final in zip(result.ids, result.log_likelihoods, result.unfilled_steps, end_lls,
                                                     told):  # a told final sounds `shift` below the model's
            sampled = self.vocab.decode(ids).transpose(-shift).notes
            out, kept = _continued(primer_melody, sampled + ((Note(REST, unfilled),) if unfilled else ()),
                                   continuation_only, mode_keys)
            outputs.append(Generation(out, melody_to_note_sequence(out), kept, list(ids), list(lls),
                                      num_bars, out.total_steps // spb, changes, sampling.seed, sampled, unfilled,
                                      ending, end_ll, int(final - shift) % 12 if final < 12 else None))
        return outputs

    def generate_in_mode(self, primer: Melody, num_bars: int = 8, num_outputs: int = 1,
                         sampling: SamplingOptions | None = None, constraints: Constraints | None = None,
                         rounds: int = MODE_ROUNDS) -> tuple[list[Generation], int]:
        """(outputs, how many are in the mode) of `generate` from an empty primer (`empty_primer(key=...)`), those in
        its mode first: a model in one key (`transpose_to_key`) chooses between major and relative minor as it writes
        (a final-pitch model draws its final as the tunes of the mode end), so outputs in the other mode are drawn
        again with the next seeds (the same seed, the same outputs), up to `rounds` draws. Each output's
        `melody.minor` says its mode. Other models and primers with notes: `generate`'s (all counted)."""
        sampling = sampling or SamplingOptions()
        if primer.notes or not self.vocab.transpose_to_key:
            return self.generate(primer, num_bars, num_outputs, sampling, constraints), num_outputs
        kept, others = [], []
        for offset in range(max(rounds, 1)):
            options = dataclasses.replace(sampling, seed=sampling.seed + offset)
            for g in self.generate(primer, num_bars, num_outputs, options, constraints, minor=primer.minor):
                (kept if g.melody.minor == primer.minor else others).append(g)
            if len(kept) >= num_outputs:
                break
        return (kept + others)[:num_outputs], min(len(kept), num_outputs)

    def empty_primer(self, time_signature=(4, 4), qpm: float | None = None, key=None) -> Melody:
        """No notes, on the model's grid: `generate` then starts from the start token in this meter and tempo.

        `key` (tonic pitch class 0-11, minor) or TONIC:MODE text ("E:minor", read by `sampler.scale_key`): a
        model trained in C major / A minor (`transpose_to_key`) writes in this key (it writes in C major / A minor
        and the notes are moved there); other models do not read it. Default: C major."""
        tonic, minor = _key_pair(key)
        return Melody((), self.vocab.steps_per_quarter, tuple(time_signature), qpm or 120.0, key=tonic, minor=minor)

    def _primer_melody(self, primer) -> Melody:
        """The primer as a Melody on the model's grid."""
        if primer is None:
            primer_melody = self.empty_primer()
        elif isinstance(primer, Melody):
            primer_melody = primer
        else:
            primer_melody = self.primer_from_note_sequence(primer)
        if primer_melody.steps_per_quarter != self.vocab.steps_per_quarter:
            raise PrimerError(f"primer has {primer_melody.steps_per_quarter} steps per quarter, the model "
                              f"{self.vocab.steps_per_quarter}")
        return primer_melody

    def _decode_start(self, primer: Melody, sequence: list[int], changes: list[OovChange], shape: tuple,
                      sampling: SamplingOptions) -> DecodeStart:
        """Each output's decoding start: the state after `sequence` ([START] + the primer's ids) but its last id, that
        id, the steps up to the end step and, for a model with meter features, the bar position.

        `shape`: (outputs, end step, `generate`'s minor). A countdown model reads the primer counting down to the end
        step (ending "tune") or with the open countdown ("open"); a final-pitch model ending a tune is told, in each
        output, the pitch class it ends on, drawn from its posterior given the primer (`endings`, seeded).
        """
        (num_outputs, end_step, minor), spb, primer_steps = shape, primer.steps_per_bar, primer.total_steps
        tune = sampling.ending == "tune"
        steps = self._primer_durations(sequence, changes)
        features = None
        if self.model.meter_features:
            countdown = bars_left(end_step - np.cumsum(steps), spb) if tune else np.full(len(steps), OPEN_COUNTDOWN)
            features = meter_features(steps, spb) + (steps, countdown)
        if self.model.final_pitch and tune:
            state = endings.told_state(self.model, sequence, features, self.vocab.final_counts, minor, num_outputs,
                                       sampling.seed)
        else:
            state = self._primer_state(sequence, num_outputs, features)
        last_ids, remaining = np.full(num_outputs, sequence[-1]), np.full(num_outputs, end_step - primer_steps)
        history = History.from_tokens(sequence, steps, spb)  # melodies start on a bar line
        if not self.model.meter_features:
            return DecodeStart(state, last_ids, remaining, history=history)
        # where the first sampled token begins in its bar
        return DecodeStart(state, last_ids, remaining, np.full(num_outputs, primer_steps % spb), spb,
                           history, self.model.countdown, self.vocab.end_id if tune else None)

    def _primer_state(self, sequence: list[int], num_outputs: int, features=None) -> list[np.ndarray]:
        """The model state after all but the last token of `sequence` (the whole primer), one row per output.

        `features`: (positions, bar_steps, durations_steps, bars_left) of every id of `sequence`, for a model with
        meter features (the durations move the rolls of a model that looks back: an `<unk>` lasts its primer
        note's length; a countdown model reads the bars left).
        """
        if len(sequence) <= 1:
            state = self.model.initial_state(1)
        elif features is None:
            state = self.model.run(np.asarray([sequence[:-1]]), outputs=False)[1]
        else:
            positions, bar_steps, steps, countdown = (f[None, :-1] for f in features)
            state = self.model.run(np.asarray([sequence[:-1]]), positions=positions, bar_steps=bar_steps,
                                   durations_steps=steps, bars_left=countdown if self.model.countdown else None,
                                   outputs=False)[1]
        return [np.repeat(s, num_outputs, axis=0) for s in state]

    def _sample(self, start: DecodeStart, tokens: TokenTable,
                options: SamplingOptions) -> SampleResult:
        """The batch sampled by the backend `options` names."""
        if options.backend == "tf":
            return self._sample_tf(start, tokens, options)
        next_logits = self._metered_logits(start.steps_per_bar, options.ending) if start.metered else self._next_logits
        return sample(next_logits, start, tokens, options)

    def _sample_tf(self, start: DecodeStart, tokens: TokenTable,
                   options: SamplingOptions) -> SampleResult:
        """The batch sampled by one compiled TensorFlow loop (sampler_tf.py), from the numpy primer state."""
        if getattr(self, "_tf_sampler", None) is None:
            sampler_tf.check_options(options)
            step_fn = sampler_tf.keras_step_fn(weights_to_keras_model(self.config, self.weights),
                                               self._durations, self.config.copy_bars)
            self._tf_sampler = sampler_tf.compiled_sampler(import_tensorflow(), step_fn)
        with filtered_stderr():  # oneDNN prints a notice on the first run of the compiled loop
            return sampler_tf.sample_batch(self._tf_sampler, start, tokens, options, len(self.model.layers))
