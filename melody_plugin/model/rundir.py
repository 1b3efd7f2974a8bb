"""The run directory's layout: config, vocabulary, checkpoints, best checkpoint, weights, logs."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from pathlib import Path

from melody_plugin.errors import RunDirError
from melody_plugin.model.registry import ModelConfig
from melody_plugin.runtime.atomic import write_json
from melody_plugin.tokens.vocab import Vocabulary, VocabularyError


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    config_file = property(lambda self: self.path / "config.json")
    vocab_file = property(lambda self: self.path / "vocab.json")
    data_dir = property(lambda self: self.path / "data")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    weights_file = property(lambda self: self.path / "weights.npz")
    best_dir = property(lambda self: self.path / "best")
    best_file = property(lambda self: self.path / "best" / "best.json")
    best_weights_file = property(lambda self: self.path / "best" / "weights.npz")
    logs_dir = property(lambda self: self.path / "logs")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    curve_file = property(lambda self: self.path / "training_curve.png")
    lock_file = property(lambda self: self.path / ".lock")

    def exists(self) -> bool:
        return self.config_file.is_file()

    def require(self) -> "RunDir":
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: no such run directory")
        if not self.exists():
            raise RunDirError(f"{self.path}: not a run directory (no config.json); train one with melody_train")
        return self

    def load_config(self) -> ModelConfig:
        try:
            obj = json.loads(self.config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.config_file}: missing; is {self.path} a run directory?") from None
        except (OSError, ValueError) as e:
            raise RunDirError(f"{self.config_file}: unreadable ({e})") from None
        return ModelConfig.from_json(obj)

    def load_vocab(self) -> Vocabulary:
        try:
            return Vocabulary.load(self.vocab_file)
        except VocabularyError as e:
            raise RunDirError(str(e)) from None

    def save_config(self, config: ModelConfig) -> None:
        write_json(self.config_file, config.to_json())

    def check_compatible(self, config: ModelConfig, vocab: Vocabulary | None = None) -> None:
        """Refuses a config (or vocabulary) whose weights or tokens differ from what this run dir holds, and a
        folder of other things (no config.json, files a run dir never holds): training would write over them."""
        if not self.exists() and self.path.is_dir():
            # a run that stopped before its config.json may have written its data and vocabulary, and its lock
            others = sorted(p.name for p in self.path.iterdir() if p.name not in (".lock", "data", "vocab.json"))
            if others:
                raise RunDirError(f"{self.path}: not a run dir (no config.json) and it holds "
                                  f"{', '.join(others[:5])}{' ...' if len(others) > 5 else ''}; training would write "
                                  "over them: name a new or empty --run_dir")
        if self.exists():
            saved = self.load_config()
            if saved.name != config.name or saved.architecture() != config.architecture():
                diff = {k: (saved.architecture().get(k), v) for k, v in config.architecture().items()
                        if saved.architecture().get(k) != v}
                what = f"config {saved.name!r} vs {config.name!r}" if saved.name != config.name else \
                    ", ".join(f"{k}: {a} in the run dir, {b} now" for k, (a, b) in diff.items())
                raise RunDirError(f"{self.path}: made with an incompatible config ({what}); to resume it, pass the "
                                  "--config and --hparams it was made with (its config.json), else use a new "
                                  "--run_dir")
        if vocab is not None and self.vocab_file.is_file():
            saved_vocab = self.load_vocab()
            if saved_vocab.tokens != vocab.tokens or saved_vocab.steps_per_quarter != vocab.steps_per_quarter:
                raise RunDirError(f"{self.path}: its vocabulary ({len(saved_vocab)} tokens) differs from the "
                                  f"dataset's ({len(vocab)} tokens); use a new --run_dir")

    def latest_checkpoint_step(self) -> int | None:
        """Step of the latest checkpoint, read from the CheckpointManager's index file (no TensorFlow)."""
        index = self.checkpoint_dir / "checkpoint"
        try:
            text = index.read_text()
        except OSError:
            return None
        m = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', text, re.M)
        return int(m.group(1)) if m else None

    def best(self) -> dict | None:
        """best.json ({"step", "eval_bits_per_note", "checkpoint"}), or None for a run without one (no eval yet, or
        made before best checkpoints were kept)."""
        try:
            obj = json.loads(self.best_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) and isinstance(obj.get("step"), int) else None

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock for a training job; a second one pointed at the same run dir is refused. Where the job
        wrote nothing else (a run that failed on its input) the lock file it made goes again, and so does a run dir
        this call made."""
        made = [d for d in (self.path, *self.path.parents) if not d.exists()]  # the folders this call makes
        before = set() if made else {p.name for p in self.path.iterdir()}
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise RunDirError(f"{self.path}: in use by another training (pid {holder}); "
                                  "wait for it or use another --run_dir") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock, also when the process is killed
            lock_name = Path(self.lock_file).name
            if lock_name not in before and {p.name for p in self.path.iterdir()} == before | {lock_name}:
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_file)
                    for folder in made:  # the run dir, then each parent made for it, while empty
                        folder.rmdir()
