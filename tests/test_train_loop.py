"""Training: a tiny model learns a repeated pattern; resume, refusal of incompatible run dirs, lock, NaN, eval job."""

import json
import math
import shutil
import threading

import pytest
from conftest import TINY_HPARAMS

from melody_plugin.errors import RunDirError
from melody_plugin.model import registry
from melody_plugin.model.rundir import RunDir
from melody_plugin.train import step as train_step
from melody_plugin.train.budget import _cpu_seconds
from melody_plugin.train.eval_job import evaluate_checkpoints
from melody_plugin.train.loop import train_and_evaluate
from melody_plugin.train.options import TrainingError, TrainOptions
from melody_plugin.train.step import _build_trainer, _step_sums, scheduled_learning_rate

RESUME_HINT = ("run the same command to resume (without --input it resumes on the run's own data, without reading "
               "the files again)")

def tiny_config(extra=""):
    hp = TINY_HPARAMS + ("," + extra if extra else "")
    return registry.with_hparams(registry.get_config("char_lstm"), hp)


def quiet(*args):
    pass


def options(**kwargs):
    """TrainOptions for a test: no progress bar, no output."""
    return TrainOptions(**{"progress": False, "log": quiet, **kwargs})


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
    from melody_plugin.runtime.quiet import import_tensorflow

    tf = import_tensorflow()
    run_dir = tmp_path / "run"
    config = tiny_config()
    train_and_evaluate(config, run_dir, tiny_corpus, options(num_training_steps=40, save_checkpoint_steps=40,
                                                             summary_frequency=20, write_curve=False))
    first = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-40"))
    names = first.get_variable_to_shape_map()
    iteration_key = next(k for k in names if k.startswith("optimizer/") and "iterations" in k)
    assert first.get_tensor(iteration_key) == 40
    lines = []
    result = train_and_evaluate(config, run_dir, None, options(
        num_training_steps=60, save_checkpoint_steps=1000, summary_frequency=20, log=lines.append, write_curve=False))
    assert "resumed from ckpt-40 at step 40" in lines
    assert result.step == 60
    second = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-60"))
    # 60 optimizer iterations, not 20: the Adam state (iterations, moments) was restored, not rebuilt
    assert second.get_tensor(iteration_key) == 60
    slots = [k for k, shape in names.items() if k.startswith("optimizer/") and shape]
    assert slots and all(abs(first.get_tensor(k)).sum() > 0 for k in slots[:4])  # Adam moments were saved

    # the same --input again (the same files): said to be the same data, not "replaced"
    lines.clear()
    train_and_evaluate(config, run_dir, tiny_corpus, options(num_training_steps=61, log=lines.append,
                                                             write_curve=False))
    assert any("the same melodies as the run's own data/" in line for line in lines), lines
    assert not any("replaced" in line for line in lines)
    fewer = tmp_path / "fewer"  # 3 of its files: other data, which does replace data/
    fewer.mkdir()
    for path in sorted(tiny_corpus.iterdir())[:3]:
        shutil.copy(path, fewer / path.name)
    lines.clear()
    train_and_evaluate(config, run_dir, fewer, options(num_training_steps=62, log=lines.append,
                                                       write_curve=False))
    assert any("the run dir's data/ is replaced by it" in line for line in lines), lines


def test_incompatible_config_or_vocabulary_is_refused(tiny_run_dir, tmp_path):
    with pytest.raises(RunDirError, match="incompatible config .*rnn_layer_sizes"):
        train_and_evaluate(tiny_config("rnn_layer_sizes=[64]"), tiny_run_dir, None,
                           options(num_training_steps=1))
    with pytest.raises(RunDirError, match="incompatible config \\(config 'char_lstm' vs 'folk_lstm'\\)"):
        train_and_evaluate(registry.get_config("folk_lstm"), tiny_run_dir, None,
                           options(num_training_steps=1))
    # a dataset folder with another vocabulary
    from conftest import pattern_notes, write_midi

    from melody_plugin.tokens import corpus

    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        write_midi(other / f"t{i}.mid", pattern_notes([(70, 0.75), (72, 0.25)], repeats=12))
    corpus.create_dataset(other, tmp_path / "ds", tiny_config(), corpus.Reading(eval_ratio=0.0, progress=False))
    with pytest.raises(RunDirError, match="vocabulary .* differs from the dataset's"):
        train_and_evaluate(tiny_config(), tiny_run_dir, tmp_path / "ds",
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
    train_and_evaluate(config, run_dir, tiny_corpus,
                       options(num_training_steps=10, save_checkpoint_steps=10, write_curve=False))
    real_sums = _step_sums

    def poisoned(tf, nll, predictions, targets, kinds, weights=None):  # the loss turns NaN, as a diverging run's
        nll, sums = real_sums(tf, nll, predictions, targets, kinds, weights)
        return nll * float("nan"), dict(sums, nll=sums["nll"] * float("nan"))

    monkeypatch.setattr(train_step, "_step_sums", poisoned)
    with pytest.raises(TrainingError, match="loss became nan at step 11; stopped. The last good checkpoint"):
        train_and_evaluate(config, run_dir, None,
                           options(num_training_steps=400, save_checkpoint_steps=1, write_curve=False))
    assert RunDir(run_dir).latest_checkpoint_step() == 10  # no NaN checkpoint was written
    with pytest.raises(TrainingError, match="loss became nan at step 1; stopped. No checkpoint had been saved yet"):
        train_and_evaluate(config, tmp_path / "nan_from_the_start", tiny_corpus,  # nothing to point the user to
                           options(num_training_steps=5, save_checkpoint_steps=1, write_curve=False))
    from melody_plugin.generate.generator import MelodyGenerator

    gen = MelodyGenerator.from_run_dir(run_dir)  # the kept checkpoint still generates
    assert all(math.isfinite(ll) for ll in gen.generate(None, num_bars=1)[0].log_likelihoods)


def test_eval_only_job_follows_checkpoints(tiny_run_dir, tiny_corpus):
    with pytest.raises(TrainingError, match="no evaluation data"):
        evaluate_checkpoints(tiny_run_dir, num_training_steps=300, timeout_s=5, log=quiet)
    metrics = evaluate_checkpoints(tiny_run_dir, tiny_corpus, num_training_steps=300, timeout_s=5, log=quiet)
    assert metrics["loss"] < 1.5
    assert list((tiny_run_dir / "logs" / "eval").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("extra", ["mixed_precision=true", "jit_compile=true"])
def test_gpu_speed_options_train_on_cpu_too(tmp_path, tiny_corpus, extra):
    result = train_and_evaluate(tiny_config(extra), tmp_path / "run", tiny_corpus, options(
        num_training_steps=12, eval_ratio=0.0, summary_frequency=6, write_curve=False))
    assert result.step == 12 and math.isfinite(result.metrics["train"]["loss"])
    import numpy as np

    weights = np.load(tmp_path / "run" / "weights.npz")
    assert all(weights[k].dtype == np.float32 for k in weights.files if k != "__meta__")


def _metrics_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_max_minutes_stops_with_a_checkpoint_and_a_rerun_resumes(tmp_path, tiny_corpus):
    import time

    run_dir, config = tmp_path / "budget", tiny_config()
    lines = []
    result = train_and_evaluate(config, run_dir, tiny_corpus, options(
        num_training_steps=100_000, summary_frequency=20, save_checkpoint_steps=100_000, write_curve=False,
        max_minutes=0.05, started_at=time.time(), log=lines.append))
    step = result.step
    assert result.budget_reached and 0 < step < 100_000
    assert f"time budget of 0.05 min reached at step {step}; {RESUME_HINT}" in lines
    assert RunDir(run_dir).latest_checkpoint_step() == step
    assert _metrics_rows(run_dir)[-1]["step"] == step  # evaluated at the stop
    lines = []
    again = train_and_evaluate(config, run_dir, None, options(
        num_training_steps=100_000, summary_frequency=20, save_checkpoint_steps=100_000, write_curve=False,
        max_minutes=0.05, started_at=time.time(), log=lines.append))
    assert f"resumed from ckpt-{step} at step {step}" in lines
    assert again.budget_reached and step < again.step < 100_000
    assert RunDir(run_dir).latest_checkpoint_step() == again.step


def test_max_minutes_counts_from_the_process_start(tmp_path, tiny_corpus):
    from conftest import run_cli

    # TensorFlow's import alone takes longer than 0.01 min: the run stops after its first compiled call
    proc = run_cli("melody_train", f"--run_dir={tmp_path / 'run'}", f"--input={tiny_corpus}", "--max_minutes=0.01",
                   f"--hparams={TINY_HPARAMS}", "--num_training_steps=5000", "--summary_frequency=50",
                   "--progress=false")
    assert proc.returncode == 0, proc.stderr
    assert "time budget of 0.01 min reached at step 50; run the same command to resume" in proc.stdout
    assert RunDir(tmp_path / "run").latest_checkpoint_step() == 50
    proc = run_cli("melody_train", f"--run_dir={tmp_path / 'run'}", "--max_minutes=0", "--progress=false")
    assert proc.returncode == 2 and "--max_minutes must be > 0 and finite, got 0.0" in proc.stderr


def test_max_cpu_minutes_counts_this_process_cpu_time(tmp_path, tiny_corpus):
    import resource
    import time

    run_dir, config = tmp_path / "cpu_budget", tiny_config()
    # this process's CPU time so far and its finished children's (other tests ran commands), and 3 s for the run
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    budget_s = time.process_time() + children.ru_utime + children.ru_stime + 3.0
    lines = []
    result = train_and_evaluate(config, run_dir, tiny_corpus, options(
        num_training_steps=100_000, summary_frequency=20, save_checkpoint_steps=100_000, write_curve=False,
        max_cpu_minutes=budget_s / 60, log=lines.append))
    assert result.budget_reached and 0 < result.step < 100_000
    assert f"time budget of {budget_s / 60:g} CPU min reached at step {result.step}; {RESUME_HINT}" in lines
    assert RunDir(run_dir).latest_checkpoint_step() == result.step


def test_the_cpu_budget_counts_finished_worker_processes():
    # the file-reading pool's CPU belongs to the command: a child that burns 0.5 s of CPU adds that much
    import subprocess
    import sys
    import time

    before, own_before = _cpu_seconds(), time.process_time()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    assert _cpu_seconds() - before >= 0.5
    assert time.process_time() - own_before < 0.2  # not this process's own


def test_best_checkpoint_is_the_one_with_the_lowest_eval_bits_per_note(tmp_path, tiny_corpus):
    import numpy as np

    from melody_plugin.generate.generator import MelodyGenerator

    run_dir = tmp_path / "best"
    # a high learning rate makes the eval curve go up and down; one kept checkpoint in checkpoints/
    result = train_and_evaluate(tiny_config("learning_rate=0.05"), run_dir, tiny_corpus, options(
        num_training_steps=80, eval_ratio=0.5, summary_frequency=10, save_checkpoint_steps=20, num_checkpoints=1,
        write_curve=False))
    evals = [(row["eval"]["bits_per_note"], row["step"]) for row in _metrics_rows(run_dir)]
    assert len(evals) == 8
    best_bits, best_step = min(evals)  # ties: the first of them, as training keeps it
    best_step = min(s for b, s in evals if b == best_bits)
    best = json.loads((run_dir / "best" / "best.json").read_text())
    assert best["step"] == best_step and best["eval_bits_per_note"] == pytest.approx(best_bits)
    assert best["checkpoint"] == f"ckpt-{best_step}"
    assert sorted(p.name.split(".")[0] for p in (run_dir / "best").glob("ckpt-*")) == [f"ckpt-{best_step}"] * 2
    # generation and evaluation load the best unless told otherwise; the latest is still there
    assert MelodyGenerator.from_run_dir(run_dir).step == best_step
    assert MelodyGenerator.from_run_dir(run_dir, checkpoint="latest").step == result.step == 80
    assert MelodyGenerator.load(run_dir, checkpoint="latest").step == 80  # melody_generate --checkpoint=latest
    exported = MelodyGenerator.from_run_dir(run_dir).weights
    (run_dir / "best" / "weights.npz").unlink()  # the TensorFlow checkpoint in best/ gives the same weights
    restored = MelodyGenerator.from_run_dir(run_dir)
    assert restored.step == best_step
    assert all(np.allclose(exported[k], restored.weights[k]) for k in exported)
    with pytest.raises(Exception, match="first: checkpoint path does not exist"):
        MelodyGenerator.from_run_dir(run_dir, checkpoint="first")


def test_run_dir_without_best_loads_its_latest(tiny_run_dir):
    from melody_plugin.generate.generator import MelodyGenerator

    assert not (tiny_run_dir / "best").exists()  # trained without eval data
    assert MelodyGenerator.from_run_dir(tiny_run_dir).step == 300
    # char_lstm keeps a constant learning rate
    assert all(row["train"]["learning_rate"] == pytest.approx(0.01) for row in _metrics_rows(tiny_run_dir))


def _hand_lr(base, warmup, decay, min_ratio, step, total, time_fraction=0.0):
    lr = base * (min(1.0, (step + 1) / warmup) if warmup else 1.0)
    p = min(1.0, max(step / total, time_fraction))
    if decay == "cosine":
        lr *= min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    elif decay == "linear":
        lr *= min_ratio + (1 - min_ratio) * (1 - p)
    return lr


def test_learning_rate_schedule_warms_up_then_decays(tmp_path, tiny_corpus):
    config = tiny_config("lr_warmup_steps=4,lr_decay=cosine,lr_min_ratio=0.1")
    train_and_evaluate(config, tmp_path / "run", tiny_corpus, options(
        num_training_steps=12, eval_ratio=0.0, summary_frequency=1, write_curve=False))
    # each row is written after one step; it reports the learning rate that step (0-based: row step - 1) used
    used = {row["step"] - 1: row["train"]["learning_rate"] for row in _metrics_rows(tmp_path / "run")}
    assert used[0] == pytest.approx(0.01 / 4)
    assert used[3] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 12))))
    assert used[11] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 11 / 12))))
    for step, lr in used.items():
        assert lr == pytest.approx(_hand_lr(0.01, 4, "cosine", 0.1, step, 12), rel=1e-5)
    linear = tiny_config("lr_decay=linear,lr_min_ratio=0.2")
    for step, fraction in [(0, 0.0), (50, 0.0), (50, 0.75), (99, 0.0), (150, 0.0)]:
        got = float(scheduled_learning_rate(linear, step, 100, fraction))
        assert got == pytest.approx(_hand_lr(0.01, 0, "linear", 0.2, step, 100, fraction), rel=1e-6)
    assert float(scheduled_learning_rate(linear, 50, 100, 0.75)) == pytest.approx(0.01 * (0.2 + 0.8 * 0.25))


# --- whole-melody training: lanes with the LSTM state carried from window to window

@pytest.mark.parametrize("meter", [False, True])
def test_carried_state_scores_a_melody_exactly_as_one_pass_does(meter):
    """Lanes of 5-token windows with the state carried give each melody the NLL of scoring it whole from the start
    token (numpy_model's forward pass, an implementation apart from Keras'), to float precision."""
    import numpy as np

    from melody_plugin.evaluate.scoring import score_ids
    from melody_plugin.model import numpy_model
    from melody_plugin.runtime.quiet import import_tensorflow
    from melody_plugin.tokens.batches import Batching, make_dataset
    from melody_plugin.tokens.vocab import START, Vocabulary, meter_features, token_durations

    tf = import_tensorflow()
    config = registry.with_hparams(registry.get_config("char_lstm"),
                                   f"rnn_layer_sizes=[12,10],embedding_size=6,batch_size=2,window_size=5,"
                                   f"carry_state=true,meter_features={str(meter).lower()}")
    vocab = Vocabulary(tuple((p, d) for p in (60, 62, 64, 65, 67) for d in (6, 12, 24)), 12)
    rng = np.random.default_rng(7)
    sequences = [np.array([START] + rng.integers(3, len(vocab), size=n).tolist()) for n in (13, 4, 9, 21, 1)]
    bars = [48, 36, 36, 60, 48]
    durations = vocab.durations()
    meter_in = (bars, durations) if meter else None
    trainer = _build_trainer(tf, tf.distribute.get_strategy(), config, vocab, mixed_precision=False)
    batching = Batching(5, 2, carry_state=True, shuffle=False, repeat=False)
    lanes = trainer.evaluate(make_dataset(sequences, batching, meter_in), max_batches=10_000)

    features = [meter_features(token_durations(s, durations), b) for s, b in zip(sequences, bars)] if meter else None
    whole = score_ids(numpy_model.NumpyLSTM(numpy_model.keras_to_weights(trainer.model)), sequences, vocab,
                      features=features)
    assert whole["tokens"] == sum(len(s) - 1 for s in sequences) == 13 + 4 + 9 + 21 + 1
    assert lanes["bits_per_token"] == pytest.approx(whole["bits_per_token"], rel=1e-5)
    assert lanes["bits_per_note"] == pytest.approx(whole["bits_per_note"], rel=1e-5)
    assert lanes["accuracy"] == pytest.approx(whole["accuracy"])


def test_carry_state_trains_resumes_and_keeps_a_best_checkpoint(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    config = tiny_config("carry_state=true,window_size=16,batch_size=8")
    first = train_and_evaluate(config, run_dir, tiny_corpus,
                               options(num_training_steps=60, summary_frequency=30, save_checkpoint_steps=30,
                                       eval_ratio=0.25, write_curve=False))
    assert first.step == 60 and first.metrics["eval"]["bits_per_note"] < first.metrics["train"]["bits_per_note"] + 2
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train"]["loss"] < rows[0]["train"]["loss"]
    lines = []
    second = train_and_evaluate(config, run_dir, None, options(num_training_steps=90, summary_frequency=30,
                                                               write_curve=False, log=lines.append))
    assert second.step == 90 and "resumed from ckpt-60 at step 60" in lines
    best = RunDir(run_dir).best()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert best["eval_bits_per_note"] == min(r["eval"]["bits_per_note"] for r in rows)


def test_eval_melodies_shorter_than_a_window_are_evaluated_with_carry_state_and_reported_without(tmp_path,
                                                                                                 tiny_corpus):
    # the eval split's tokens make fewer than 32 windows of 64
    lines = []
    config = tiny_config("window_size=64,batch_size=32")
    train_and_evaluate(config, tmp_path / "windows", tiny_corpus, options(
        num_training_steps=2, summary_frequency=2, eval_ratio=0.25, write_curve=False, log=lines.append))
    assert any(line.startswith("no evaluation: the ") and "fewer than one batch of 32 windows of 64" in line
               for line in lines), lines
    result = train_and_evaluate(registry.with_hparams(config, "carry_state=true"), tmp_path / "lanes",
                                tiny_corpus, options(num_training_steps=2, summary_frequency=2, eval_ratio=0.25,
                                                     write_curve=False))
    assert result.metrics["eval"]["bits_per_note"] > 0 and RunDir(tmp_path / "lanes").best()["step"] == 2


def test_a_prepared_dataset_says_when_the_configs_augmentation_does_not_apply(tmp_path, tiny_corpus):
    """Transposed copies are made when a dataset is prepared: training on one prepared without them, with a config
    that asks for them, says so (naming the setting both ways) instead of training silently without them."""
    from melody_plugin.model import registry
    from melody_plugin.tokens.corpus import Reading, create_dataset
    from melody_plugin.train.data import load_training_data

    config = registry.get_config("char_lstm")
    create_dataset(tiny_corpus, tmp_path / "ds", config, Reading(eval_ratio=0.25, workers=1, progress=False))
    said = []
    load_training_data(tmp_path / "ds", config, 0.25, log=said.append)
    assert not any("does not apply" in line for line in said)
    load_training_data(tmp_path / "ds", registry.with_hparams(config, "augment_transpositions=[-2,2]"), 0.25,
                       log=said.append)
    assert [line for line in said if "augment_transpositions=(0, 0)" in line and "(-2, 2) does not apply" in line]
