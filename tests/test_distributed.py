"""tf.distribute on a CPU-only machine: 2 logical CPU replicas match one device; a 2-process multi-worker job."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TINY_HPARAMS, run_cli

COMPARE = r'''
import json, sys
from melody_plugin import train
from melody_plugin.model import registry
train.configure_cpu_devices(2)
config = registry.with_hparams(registry.get_config("char_lstm"), sys.argv[3])
out = {}
for name in ("default", "mirrored"):
    run_dir = f"{sys.argv[2]}/{name}"
    result = train.train_and_evaluate(config, run_dir, sys.argv[1], train.TrainOptions(
        num_training_steps=8, eval_ratio=0.0, summary_frequency=1, save_checkpoint_steps=8, seed=3, strategy=name,
        progress=False, log=lambda *a: None, write_curve=False))
    out[name] = [json.loads(l)["train"]["loss"] for l in open(f"{run_dir}/metrics.jsonl")]
    out[name + "_replicas"] = result.replicas
print(json.dumps(out))
'''


@pytest.mark.parametrize("carry_state", ["false", "true"])
def test_mirrored_two_cpu_replicas_match_single_device(tmp_path, tiny_corpus, carry_state):
    # with carry_state, each replica keeps the LSTM states of its own half of the lanes from step to step
    hparams = TINY_HPARAMS.replace("batch_size=32", "batch_size=16") + f",clip_norm=1.0,carry_state={carry_state}"
    proc = subprocess.run([sys.executable, "-c", COMPARE, str(tiny_corpus), str(tmp_path), hparams],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(losses["default"]) == len(losses["mirrored"]) == 8
    assert (losses["default_replicas"], losses["mirrored_replicas"]) == (1, 2)
    # same global batch and seed: the same losses step after step, so the same gradients were applied
    np.testing.assert_allclose(losses["default"], losses["mirrored"], rtol=2e-4, atol=2e-4)
    a = np.load(tmp_path / "default" / "weights.npz")
    b = np.load(tmp_path / "mirrored" / "weights.npz")
    for key in a.files:
        if key != "__meta__":
            np.testing.assert_allclose(a[key], b[key], atol=2e-4)


def free_ports(n):
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_job_trains_checkpoints_resumes_and_generates(tmp_path, tiny_corpus):
    before = {p for p in os.listdir("/tmp") if p.startswith("melody_worker_ckpt_")}

    def run_job(steps):
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        procs = []
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "melody_train"), "--strategy=multi_worker",
                 f"--input={tiny_corpus}", f"--run_dir={run_dir}", f"--hparams={TINY_HPARAMS}",
                 f"--num_training_steps={steps}", "--eval_ratio=0", "--summary_frequency=3",
                 "--save_checkpoint_steps=100"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL))
        deadline = time.time() + 240
        outputs = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=max(1, deadline - time.time()))
                outputs.append((p.returncode, out, err))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        for code, _, err in outputs:
            assert code == 0, err[-3000:]
        return outputs

    run_dir = tmp_path / "run"
    outputs = run_job(6)
    assert "done: step 6" in outputs[0][1]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == ["ckpt-6.index"]  # one real checkpoint, written by the chief
    after = {p for p in os.listdir("/tmp") if p.startswith("melody_worker_ckpt_")}
    assert after == before  # the non-chief worker's temporary checkpoint folder was removed
    # a multi-worker run resumes like a single one: both workers restore step 6 and go on to 9
    outputs = run_job(9)
    assert all("resumed from ckpt-6 at step 6" in out for _, out, _ in outputs)
    assert (run_dir / "checkpoints" / "ckpt-9.index").is_file()
    # the checkpoint made on 2 workers loads on one CPU, through TensorFlow when the numpy export is absent
    (run_dir / "weights.npz").unlink()
    proc = run_cli("melody_generate", f"--run_dir={run_dir}", "--num_bars=2", f"--output_dir={tmp_path / 'out'}",
                   "--seed=1", check=True)
    assert "wrote 1 melody of 2 bars" in proc.stdout
