"""Shared helpers of the benchmarks/repro_*.py scripts (REPRODUCTION.md).

Thin script-side wrappers over the trainer (adafocus.training.trainer.Trainer) and
the evaluator (adafocus.evaluation.collect): build a run config from a YAML file with
overrides, train a warm-up once and branch it into the Table 5 variants, collect
every exit's test logits with the cube hit rate, and describe the machine.
Run the scripts as modules from the repository root: `python -m benchmarks.repro_table5`.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

import torch

from adafocus.model.config import LEGACY_MODES
from adafocus.training.config import RunConfig, load_yaml, merge_dicts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The rows of Table 5, by the names the result files use: variant -> (policy, crop_gradient).
VARIANTS = dict(LEGACY_MODES)

RESULTS = os.path.join(ROOT, "benchmarks", "results")


def run_config(path: str, **sections) -> RunConfig:
    """RunConfig from a YAML file, each keyword a section dict merged over it."""
    return RunConfig.from_dict(merge_dicts(load_yaml(path), sections))


def machine() -> Dict[str, object]:
    """What the numbers were measured on (timings are only comparable within one machine and run)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_average": load,
            "git_commit": commit, "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def command_line(module: str, argv: Optional[Sequence[str]] = None) -> str:
    """The command that reproduces a result file: `python -m <module>` with the script's arguments
    (argv as its main() got them; None: the process's own)."""
    return " ".join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def write_json(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    return path


def train_warmup(config: RunConfig, folder: str) -> str:
    """Train the random-cube warm-up epochs (shared by every variant); returns its checkpoint."""
    from adafocus.training.trainer import Trainer

    path = os.path.join(folder, "checkpoint.pt")
    warm = copy.deepcopy(config)
    warm.train.output_dir = folder
    if os.path.exists(path):
        os.remove(path)
    trainer = Trainer(warm)
    trainer.fit(until_epoch=config.train.random_policy_epochs)
    trainer.close()
    return path


def train_branch(config: RunConfig, warmup_checkpoint: str, folder: str, variant: str):
    """Continue the warm-up checkpoint to the last epoch as `variant` (a VARIANTS key); returns the
    trained model (eval mode)."""
    from adafocus.training.trainer import Trainer

    policy, crop_gradient = VARIANTS[variant]
    branch = copy.deepcopy(config)
    branch.model = {k: v for k, v in branch.model.items() if k != "mode"}
    branch.model.update(policy=policy, crop_gradient=crop_gradient)
    branch.train.output_dir = folder
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(warmup_checkpoint, os.path.join(folder, "checkpoint.pt"))
    trainer = Trainer(branch, resume=True)
    trainer.fit()
    trainer.close()
    return trainer.model.eval()


def collect_split(model, config: RunConfig, split: str, eval_seed: int = 0) -> dict:
    """Every exit's logits on a split (inference path: integer cubes, no early exit) + hit per cube.

    The random parts of a policy (random cubes, the random axes of learned_t/learned_xy)
    draw from torch's global RNG: seeded here so a re-run gives the same cubes.
    """
    from adafocus.data import build_dataset
    from adafocus.evaluation import collect, metrics
    from adafocus.inference import EarlyExitRunner

    dataset = build_dataset(config.data, split, model.config.num_classes, config.train.seed)
    torch.manual_seed(eval_seed)
    out = collect(EarlyExitRunner(model), dataset, config.eval.batch_size, torch.device("cpu"))
    video_size = tuple(dataset[0]["video"].shape[1:])
    if "boxes" in out:
        out["hits"] = metrics.cube_hits(out["centers"], out["boxes"], model.config.cube_size, video_size)
    out["video_shape"] = (1,) + tuple(dataset[0]["video"].shape)
    return out


def mean_std(values):
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=True)) if len(values) > 1 else 0.0
