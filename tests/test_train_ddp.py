"""2-process DDP (gloo, CPU, torchrun) takes the same step as 1 process with the same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from adafocus.training import checkpoint as ckpt

from train_helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(args, output_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args + ["--config", str(output_dir.parent / "tiny.yaml"), "--train.output_dir", str(output_dir)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return ckpt.load(str(output_dir / "checkpoint.pt"))  # weights_only, checksum checked


def test_two_process_ddp_matches_one_process(tmp_path):
    # Two steps of plain SGD in deep-feature mode (the policy gets gradients through the crop).
    # One process sees each global batch of 8 as two micro-batches of 4 (accumulation), which is
    # exactly what each DDP process sees, so even BatchNorm statistics agree.
    tiny_config(tmp_path, train={**{"epochs": 1, "random_policy_epochs": 0, "optimizer": "sgd", "momentum": 0.0,
                                    "lr": 0.05, "warmup_epochs": 0, "max_steps_per_epoch": 2, "seed": 1,
                                    "threads": 1, "progress": False, "tensorboard": False, "batch_size": 8}})
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                "-m", "adafocus", "train"]
    ddp = _train(launcher, tmp_path / "ddp")
    single = _train([sys.executable, "-m", "adafocus", "train", "--train.accumulation_steps", "2"], tmp_path / "single")
    compared = 0
    for name, value in ddp["state_dict"].items():
        if "running" in name or "num_batches" in name or name == "exit_thresholds":
            continue  # BatchNorm buffers are rank 0's under DDP: not weights
        assert torch.allclose(value, single["state_dict"][name], rtol=1e-4, atol=1e-6), name
        compared += 1
    assert compared > 10 and ddp["global_step"] == single["global_step"] == 2
    # The training metrics were reduced over both processes: every video of the 2 global batches counted.
    assert ddp["history"][0]["loss"] == pytest.approx(single["history"][0]["loss"], rel=1e-4)
    assert ddp["history"][0]["exit_accuracy"] == pytest.approx(single["history"][0]["exit_accuracy"])
