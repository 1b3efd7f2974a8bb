"""Training: a tiny model learns a repeated pattern; resume, refusal of incompatible run dirs, lock, NaN, eval job."""

import json
import math
import threading

import pytest

from conftest import TINY_HPARAMS
from melody_plugin import registry, train
from melody_plugin.errors import RunDirError
from melody_plugin.rundir import RunDir


def tiny_config(extra=""):
    hp = TINY_HPARAMS + ("," + extra if extra else "")
    return registry.with_hparams(registry.get_config("char_lstm"), hp)


def quiet(*args):
    pass


def options(**kwargs):
    """TrainOptions for a test: no progress bar, no output."""
    return train.TrainOptions(**{"progress": False, "log": quiet, **kwargs})


def test_tiny_model_learns_repeated_pattern_well_below_uniform(tiny_run_dir):
    rows = [json.loads(line) for line in (tiny_run_dir / "metrics.jsonl").read_text().splitlines()]
    vocab = RunDir(tiny_run_dir).load_vocab()
    uniform = math.log(len(vocab))
    first, last = rows[0]["train"]["loss"], rows[-1]["train"]["loss"]
    assert last < 0.25 * uniform, (first, last, uniform)
    assert last < first
    assert rows[-1]["train"]["accuracy"] > 0.7
    for key in ("perplexity", "bits_per_note", "bits_per_token", "tokens_per_second", "learning_rate"):
        assert key in rows[-1]["train"]


def test_run_dir_is_self_describing(tiny_run_dir):
    run = RunDir(tiny_run_dir)
    assert run.load_config() == tiny_config()
    assert run.latest_checkpoint_step() == 300
    assert run.weights_file.is_file()
    assert (run.logs_dir / "train").is_dir()
    assert list((run.logs_dir / "train").glob("events.out.tfevents.*"))


def test_resume_continues_from_saved_step_with_optimizer_state(tmp_path, tiny_corpus):
    from melody_plugin.quiet import import_tensorflow

    tf = import_tensorflow()
    run_dir = tmp_path / "run"
    config = tiny_config()
    train.train_and_evaluate(config, run_dir, tiny_corpus, options(num_training_steps=40, save_checkpoint_steps=40,
                                                                   summary_frequency=20, write_curve=False))
    first = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-40"))
    names = first.get_variable_to_shape_map()
    iteration_key = next(k for k in names if k.startswith("optimizer/") and "iterations" in k)
    assert first.get_tensor(iteration_key) == 40
    lines = []
    result = train.train_and_evaluate(config, run_dir, None, options(
        num_training_steps=60, save_checkpoint_steps=1000, summary_frequency=20, log=lines.append, write_curve=False))
    assert "resumed from ckpt-40 at step 40" in lines
    assert result.step == 60
    second = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-60"))
    # 60 optimizer iterations, not 20: the Adam state (iterations, moments) was restored, not rebuilt
    assert second.get_tensor(iteration_key) == 60
    slots = [k for k, shape in names.items() if k.startswith("optimizer/") and shape]
    assert slots and all(abs(first.get_tensor(k)).sum() > 0 for k in slots[:4])  # Adam moments were saved


def test_incompatible_config_or_vocabulary_is_refused(tiny_run_dir, tmp_path):
    with pytest.raises(RunDirError, match="incompatible config .*rnn_layer_sizes"):
        train.train_and_evaluate(tiny_config("rnn_layer_sizes=[64]"), tiny_run_dir, None,
                                 options(num_training_steps=1))
    with pytest.raises(RunDirError, match="incompatible config \\(config 'char_lstm' vs 'folk_lstm'\\)"):
        train.train_and_evaluate(registry.get_config("folk_lstm"), tiny_run_dir, None,
                                 options(num_training_steps=1))
    # a dataset folder with another vocabulary
    from conftest import pattern_notes, write_midi
    from melody_plugin import pipelines

    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        write_midi(other / f"t{i}.mid", pattern_notes([(70, 0.75), (72, 0.25)], repeats=12))
    pipelines.create_dataset(other, tmp_path / "ds", tiny_config(), eval_ratio=0.0, progress=False)
    with pytest.raises(RunDirError, match="vocabulary .* differs from the dataset's"):
        train.train_and_evaluate(tiny_config(), tiny_run_dir, tmp_path / "ds",
                                 options(num_training_steps=301))


def test_two_trainings_on_one_run_dir_are_refused(tmp_path):
    run = RunDir(tmp_path / "locked")
    with run.lock():
        holder_failed = []

        def second():
            try:
                with RunDir(tmp_path / "locked").lock():
                    pass
            except RunDirError as e:
                holder_failed.append(str(e))

        t = threading.Thread(target=second)
        t.start()
        t.join()
    assert holder_failed and "in use by another training" in holder_failed[0]
    with run.lock():  # released after the first one ended
        pass


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(tmp_path, tiny_corpus, monkeypatch):
    run_dir = tmp_path / "nan"
    config = tiny_config()
    train.train_and_evaluate(config, run_dir, tiny_corpus,
                             options(num_training_steps=10, save_checkpoint_steps=10, write_curve=False))
    real_sums = train._step_sums

    def poisoned(tf, logits, targets, is_note):  # the loss turns NaN, as a diverging run's would
        nll, sums = real_sums(tf, logits, targets, is_note)
        return nll * float("nan"), dict(sums, nll=sums["nll"] * float("nan"))

    monkeypatch.setattr(train, "_step_sums", poisoned)
    with pytest.raises(train.TrainingError, match="loss became nan at step 11; stopped. The last good checkpoint"):
        train.train_and_evaluate(config, run_dir, None,
                                 options(num_training_steps=400, save_checkpoint_steps=1, write_curve=False))
    assert RunDir(run_dir).latest_checkpoint_step() == 10  # no NaN checkpoint was written
    from melody_plugin.generator import MelodyGenerator

    gen = MelodyGenerator.from_run_dir(run_dir)  # the kept checkpoint still generates
    assert all(math.isfinite(ll) for ll in gen.generate(None, num_bars=1)[0].log_likelihoods)


def test_eval_only_job_follows_checkpoints(tiny_run_dir, tiny_corpus):
    with pytest.raises(train.TrainingError, match="no evaluation data"):
        train.evaluate_checkpoints(tiny_run_dir, num_training_steps=300, timeout_s=5, log=quiet)
    metrics = train.evaluate_checkpoints(tiny_run_dir, tiny_corpus, num_training_steps=300, timeout_s=5, log=quiet)
    assert metrics["loss"] < 1.5
    assert list((tiny_run_dir / "logs" / "eval").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("extra", ["mixed_precision=true", "jit_compile=true"])
def test_gpu_speed_options_train_on_cpu_too(tmp_path, tiny_corpus, extra):
    result = train.train_and_evaluate(tiny_config(extra), tmp_path / "run", tiny_corpus, options(
        num_training_steps=12, eval_ratio=0.0, summary_frequency=6, write_curve=False))
    assert result.step == 12 and math.isfinite(result.metrics["train"]["loss"])
    import numpy as np

    weights = np.load(tmp_path / "run" / "weights.npz")
    assert all(weights[k].dtype == np.float32 for k in weights.files if k != "__meta__")
