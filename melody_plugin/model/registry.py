"""Named `ModelConfig`s: the frozen config, its checks, `--hparams`, the TOML presets and entry-point plugins."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.resources
import json
import math
import re
import tomllib
import types
import typing

from melody_plugin.errors import ConfigError
from melody_plugin.tokens.form import MAX_COPY_BARS, MAX_COUNTDOWN

ENTRY_POINT_GROUP = "melody_plugin.configs"


DEFAULT_CONFIG = "char_lstm"


# Fields that fix the shape of the weights or the meaning of the tokens: a run dir refuses to resume if they differ.
ARCHITECTURE_FIELDS = ("embedding_size", "rnn_layer_sizes", "steps_per_quarter", "transpose_to_key",
                       "augment_transpositions", "min_token_count", "meter_features", "bar_lookback", "end_token",
                       "countdown", "copy_bars", "key_head", "key_tonic", "gate_countdown",
                       "final_pitch")


LR_DECAYS = ("none", "cosine", "linear")



@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model and how it is trained. Every field can be set with --hparams."""

    name: str
    description: str = ""
    # model
    embedding_size: int = 32  # 0 = one-hot inputs
    rnn_layer_sizes: tuple[int, ...] = (64, 64, 64)
    dropout_rate: float = 0.1  # on each LSTM layer's inputs and on the last one's outputs
    # each token also brings the bar position where the next token begins and the bar length (vocab.meter_features);
    # off = the tutorial's ids-only model (and every run dir made before the field existed)
    meter_features: bool = False
    # each token also brings the tokens sounding one and two bars before where the next token begins
    # (vocab.lookback_features); needs meter_features. Off in every run dir made before the field existed.
    bar_lookback: bool = False
    # an end-of-melody token after every training melody: the model learns where tunes end (Vocabulary.end_token)
    end_token: bool = False
    # each token also brings the bars left before the melody's end (tokens.form.countdown_features), known from the
    # data in training and from --num_bars in generation; needs meter_features and end_token
    countdown: bool = False
    # share of training melodies fed the open countdown (no end in sight), as open continuations and scoring are
    open_countdown_share: float = 0.25
    # a learned copy gate mixes the LSTM's distribution with the tokens that began this many bars before at the
    # same place in the bar (tokens.form.copy_features), e.g. [1, 2, 4, 8]; empty = off. Needs meter_features.
    copy_bars: tuple[int, ...] = ()
    # a countdown model's copy gate sees the bars left to the melody's end told apart up to this many (0, 1, ...,
    # gate_countdown - 1, then "this many or more", the open countdown too): 3 sees the end near; 17 tells apart
    # each of the last 16 bars, so the gate can learn where a tune's second half replays its first
    gate_countdown: int = 3
    # a key head: each pitch's logit gets a learned bonus from the pitch classes the melody has held so far, rotated
    # to that pitch as tonic (the key finder's sum, with a profile the model learns for each step): the model knows
    # the key it is in and can end on its tonic (tokens.form.pitch_class_steps). Needs meter_features.
    key_head: bool = False
    # the key head also reads which pitch class is the tonic of the key finder's best key so far (its answer, not
    # only its fits), for any token and, with its own weights, for a token that ends the melody where the countdown
    # says so (its length is the steps left): a sharp cue for a tune's last note. Needs key_head and countdown.
    key_tonic: bool = False
    # each token of a melody whose end the model is told (the countdown) also brings the pitch class of the melody's
    # last note (tokens.form.final_pitch_features): the model learns how a tune that will end on that note goes, and
    # a generated tune's final pitch class is drawn first, from the model's own posterior given the primer (the
    # training tunes' final pitch classes as the prior, `Vocabulary.final_counts`). Open continuations and scoring
    # are not told (the open value, as the countdown's). Needs countdown.
    final_pitch: bool = False
    # in training, each target in a melody's last bar (where the model is told so: the countdown, not the open one)
    # counts this many times in the loss: a tune has one ending, and the model sees the same inputs when it
    # generates, so the best distribution there is unchanged; only more of the learning goes to it
    ending_weight: float = 1.0
    # in training, each melody also trains cut after its first this many bars, and twice that many, counted from its
    # start, where a note (not a rest) ends there (short of its end), with the end token after it: the parts of a
    # folk tune end as the tune does (in the folk set's held-out tunes the last note before bar 8, 16 or 24 is the
    # tonic two thirds of the time, as against a quarter at bar 4), so the model sees more endings than one a tune.
    # 0 = off. Needs countdown.
    phrase_endings: int = 0
    # optimisation
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 0  # linear warm-up from learning_rate / lr_warmup_steps over the first steps; 0 = off
    lr_decay: str = "none"  # none (constant), cosine or linear: down to lr_min_ratio * learning_rate at the end
    lr_min_ratio: float = 0.1  # the decay's last learning rate, as a share of learning_rate
    clip_norm: float = 1.0  # gradient clipping by global norm; 0 = off
    batch_size: int = 16  # GLOBAL batch size: split over all replicas of a distributed run
    window_size: int = 8  # tokens per training window
    window_stride: int = 1  # tokens between the starts of two windows
    # false: windows cut anywhere in the joined melodies, each from a zero state (the tutorial's way); true: lanes of
    # whole melodies whose LSTM state carries from one window to the next (truncated BPTT), reset where a melody
    # starts, as evaluation and generation run the model. window_stride is then unused.
    carry_state: bool = False
    mixed_precision: bool = False  # float16 compute with loss scaling (GPU)
    jit_compile: bool = False  # XLA-compile the train step
    # data
    steps_per_quarter: int = 12
    min_token_count: int = 2
    min_notes: int = 8
    transpose_to_key: bool = False
    augment_transpositions: tuple[int, int] = (0, 0)  # inclusive semitone range, e.g. (-3, 3)
    polyphony_policy: str = "highest"

    def __post_init__(self):
        def check(ok, message):
            if not ok:
                raise ConfigError(f"config {self.name!r}: {message}")

        check(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)),
              f"name must be letters, digits, _.- , got {self.name!r}")
        check(self.embedding_size >= 0, f"embedding_size must be >= 0, got {self.embedding_size}")
        check(len(self.rnn_layer_sizes) >= 1 and all(u > 0 for u in self.rnn_layer_sizes),
              f"rnn_layer_sizes must be one or more positive sizes, got {list(self.rnn_layer_sizes)}")
        check(0 <= self.dropout_rate < 1, f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        check(self.meter_features or not self.bar_lookback,
              "bar_lookback needs meter_features (the lookback is read at the bar position), got meter_features=false")
        check(not self.countdown or (self.meter_features and self.end_token),
              "countdown needs meter_features and end_token (it counts the bars to the melody's end)")
        check(0 <= self.open_countdown_share <= 1,
              f"open_countdown_share must be in [0, 1], got {self.open_countdown_share}")
        check(not self.copy_bars or self.meter_features, "copy_bars needs meter_features (bars are counted in steps)")
        check(math.isfinite(self.ending_weight) and self.ending_weight >= 1.0,
              f"ending_weight must be a finite number >= 1 (1 = off), got {self.ending_weight}")
        check(self.ending_weight == 1.0 or self.countdown,
              "ending_weight needs countdown (the last bar is read from it), got countdown=false")
        check(1 <= self.gate_countdown <= MAX_COUNTDOWN + 1,
              f"gate_countdown must be in 1..{MAX_COUNTDOWN + 1}, got {self.gate_countdown}")
        check(self.gate_countdown == 3 or (self.copy_bars and self.countdown),
              f"gate_countdown is the copy gate's view of the countdown: it needs copy_bars and countdown (got "
              f"copy_bars={list(self.copy_bars)}, countdown={str(self.countdown).lower()}); leave it at 3")
        check(self.phrase_endings >= 0, f"phrase_endings must be >= 0 bars (0 = off), got {self.phrase_endings}")
        check(not self.phrase_endings or self.countdown,
              "phrase_endings needs countdown (a phrase ending is a melody's end the model is told of), got "
              "countdown=false")
        check(not self.key_head or self.meter_features,
              "key_head needs meter_features (the pitch classes held so far ride along with them)")
        check(not self.key_tonic or (self.key_head and self.countdown),
              f"key_tonic needs key_head and countdown (it adds to the key head, and the countdown says where the "
              f"melody ends); got key_head={str(self.key_head).lower()}, countdown={str(self.countdown).lower()}: "
              "turn them on, or key_tonic off (key_tonic=false)")
        check(not self.final_pitch or self.countdown,
              "final_pitch needs countdown (a melody's final pitch is told where its end is), got countdown=false")
        check(len(set(self.copy_bars)) == len(self.copy_bars) and all(1 <= k <= MAX_COPY_BARS for k in self.copy_bars),
              f"copy_bars must be distinct bar counts in 1..{MAX_COPY_BARS}, got {list(self.copy_bars)}")
        check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        check(self.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        check(self.lr_decay in LR_DECAYS, f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        check(0 <= self.lr_min_ratio <= 1, f"lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        check(self.clip_norm >= 0, f"clip_norm must be >= 0, got {self.clip_norm}")
        check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        check(self.window_size > 0, f"window_size must be > 0, got {self.window_size}")
        check(self.window_stride > 0, f"window_stride must be > 0, got {self.window_stride}")
        check(self.steps_per_quarter > 0 and (48 % self.steps_per_quarter == 0 or self.steps_per_quarter % 4 == 0),
              f"steps_per_quarter must divide 48 or be a multiple of 4, got {self.steps_per_quarter}")
        check(self.min_token_count >= 1, f"min_token_count must be >= 1, got {self.min_token_count}")
        check(self.min_notes >= 0, f"min_notes must be >= 0, got {self.min_notes}")
        lo, hi = self.augment_transpositions
        check(-12 <= lo <= 0 <= hi <= 12,
              f"augment_transpositions must be (lo<=0, hi>=0) within an octave, got {lo, hi}")
        check(self.polyphony_policy in ("highest", "lowest", "reject"),
              f"polyphony_policy must be highest, lowest or reject, got {self.polyphony_policy!r}")

    def to_json(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, obj: dict) -> "ModelConfig":
        return _build(cls, obj, source="config")

    def architecture(self) -> dict:
        return {k: v for k, v in self.to_json().items() if k in ARCHITECTURE_FIELDS}


@functools.cache
def _field_types() -> dict:
    hints = typing.get_type_hints(ModelConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ModelConfig)}


def _coerce(name: str, kind, value, source: str):
    """Converts a JSON/TOML value to the field's type, or raises ConfigError naming the field."""
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                raise ValueError("expected an integer")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if kind is str:
            return str(value)
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise ValueError("expected a list such as [64,64]")
            args = typing.get_args(kind)
            item_type = args[0]
            if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
                raise ValueError("expected two values such as [-3,3]")
            return tuple(_coerce(name, item_type, v, source) for v in value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: bad value {value!r} for {name}: {e}") from None
    raise ConfigError(f"{source}: unsupported field type for {name}")


def _build(cls, obj: dict, source: str):
    types_ = _field_types()
    unknown = sorted(set(obj) - set(types_))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(types_))}")
    if "name" not in obj:
        raise ConfigError(f"{source}: a config needs a name")
    return cls(**{k: _coerce(k, types_[k], v, source) for k, v in obj.items()})


def _split_hparams(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_hparams(text: str) -> dict:
    """Parses "a=1,b=[2,3],c=true" into a dict of raw values (types are checked by `with_hparams`)."""
    values = {}
    for item in _split_hparams(text or ""):
        if "=" not in item:
            raise ConfigError(f"--hparams: expected name=value, got {item!r}")
        name, raw = (s.strip() for s in item.split("=", 1))
        values[name] = _parse_raw(name, raw)
    return values


def _parse_raw(name: str, raw):
    """A list written as text ("[128,128]") becomes a list; anything else is left to `_coerce`."""
    if isinstance(raw, str) and raw.startswith(("[", "(")):
        if not raw.endswith(("]", ")")):
            raise ConfigError(f"--hparams: bad list {raw!r} for {name}")
        try:
            return json.loads("[" + raw[1:-1] + "]")
        except ValueError:
            raise ConfigError(f"--hparams: bad list {raw!r} for {name}") from None
    return raw


def with_hparams(config: ModelConfig, hparams: str | dict) -> ModelConfig:
    """A copy of `config` with fields overridden ("units" by field type); the registered config is untouched.

    Raises:
      ConfigError: for an unknown field or a value of the wrong type or range.
    """
    values = parse_hparams(hparams) if isinstance(hparams, str) else {k: _parse_raw(k, v) for k, v in hparams.items()}
    if not values:
        return config
    types_ = _field_types()
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"--hparams: unknown name(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(n for n in types_ if n != 'name'))}")
    if "name" in values:
        raise ConfigError("--hparams: the name cannot be changed; use --config")
    updates = {k: _coerce(k, types_[k], v, "--hparams") for k, v in values.items()}
    return dataclasses.replace(config, **updates)


_REGISTRY: dict[str, ModelConfig] = {}


_LOADED = {"builtin": False, "plugins": False}


_PLUGIN_ERRORS: list[str] = []


def register_config(config: ModelConfig) -> ModelConfig:
    """Adds a config under its name. Raises ConfigError if the name is taken by a different config."""
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"register_config needs a ModelConfig, got {type(config).__name__}")
    existing = _REGISTRY.get(config.name)
    if existing is not None and existing != config:
        raise ConfigError(f"a config named {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def load_config_file(text: str, source: str) -> ModelConfig:
    try:
        obj = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from None
    return _build(ModelConfig, obj, source)


def _load_builtin() -> None:
    if _LOADED["builtin"]:
        return
    _LOADED["builtin"] = True
    folder = importlib.resources.files("melody_plugin.configs")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            register_config(load_config_file(entry.read_text(encoding="utf-8"), f"configs/{entry.name}"))


def _load_plugins() -> None:
    if _LOADED["plugins"]:
        return
    _LOADED["plugins"] = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, (types.FunctionType, types.MethodType)):
                obj = obj()
            for config in obj if isinstance(obj, (list, tuple)) else [obj]:
                register_config(config)
        except Exception as e:  # a broken plugin must not break the tool; it is reported on lookup
            _PLUGIN_ERRORS.append(f"entry point {ep.name!r} ({ep.value}): {type(e).__name__}: {e}")


def reload_plugins() -> None:
    """Looks at the entry-point group again (after installing a package at run time)."""
    _LOADED["plugins"] = False
    _load_plugins()


def list_configs() -> list[str]:
    _load_builtin()
    _load_plugins()
    return sorted(_REGISTRY)


def get_config(name: str) -> ModelConfig:
    """The registered config called `name`. Raises ConfigError listing the known names."""
    names = list_configs()
    if name not in _REGISTRY:
        extra = f" (plugin errors: {'; '.join(_PLUGIN_ERRORS)})" if _PLUGIN_ERRORS else ""
        raise ConfigError(f"unknown config {name!r}; known configs: {', '.join(names)}{extra}")
    return _REGISTRY[name]
