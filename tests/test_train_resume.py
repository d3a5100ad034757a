"""Kill-and-resume: a run killed after a checkpoint and resumed ends with the same weights, bit for bit."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from adafocus.training import checkpoint as ckpt
from adafocus.training.config import RunConfig, load_yaml
from adafocus.training.trainer import Trainer, warmup_cosine

from train_helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _weights(path):
    return ckpt.load(path)["state_dict"]


def _config(path, output_dir):
    config = RunConfig.from_dict(load_yaml(path))
    config.train.output_dir = str(output_dir)
    return config


def test_killed_run_resumes_bit_for_bit(tmp_path):
    path = tiny_config(tmp_path)
    reference = Trainer(_config(path, tmp_path / "straight"))
    reference.fit()
    expected = _weights(reference.checkpoint_path)

    # A separate process trains the same run; it is SIGKILLed as soon as its first checkpoint lands.
    killed_dir = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "adafocus", "train", "--config", path,
                              "--train.output_dir", str(killed_dir)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = ckpt.load(str(checkpoint))["epoch"]
    assert 1 <= killed_at <= 3

    resumed = Trainer(_config(path, killed_dir), resume=True)
    assert resumed.epoch == killed_at
    resumed.fit()
    got = _weights(resumed.checkpoint_path)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    trainer = Trainer(_config(tiny_config(tmp_path), tmp_path / "fresh"), resume=True)
    assert trainer.epoch == 0


def test_schedule_warms_up_then_decays():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.01)
    values = [factor(s) for s in range(100)]
    assert values[0] == 0.1 and values[9] == 1.0
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert abs(values[-1] - 0.01) < 0.01


def test_amp_and_sgd_with_lr_multipliers_train(tmp_path):
    # bf16 autocast on CPU; the per-module LR factors reach the optimizer groups.
    config = _config(tiny_config(tmp_path, train={"amp": True, "epochs": 1, "random_policy_epochs": 0,
                                                  "optimizer": "sgd", "lr": 0.1,
                                                  "lr_multipliers": {"policy": 0.5, "classifier": 2.0},
                                                  "threads": 1, "progress": False, "tensorboard": True,
                                                  "batch_size": 8, "seed": 0}), tmp_path / "amp")
    trainer = Trainer(config)
    base = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert base["policy"] == pytest.approx(0.05) and base["classifier"] == pytest.approx(0.2)
    assert base["local"] == pytest.approx(0.1) and base["glance.no_decay"] == pytest.approx(0.1)
    history = trainer.fit()
    trainer.close()
    assert np.isfinite(history[0]["loss"])
    assert list((tmp_path / "amp" / "tb").iterdir())  # TensorBoard scalars written
