"""`adafocus eval`: evaluate one checkpoint on its run's calibration ("val") and report ("test") splits.

With no separate test list the calibration split is the slice of the training list that
training left out (adafocus.data.split_sources); the report names both.

Writes curve.json and curve.png beside the checkpoint (or in `out_dir`) and, unless
told not to, stores the solved thresholds in the checkpoint (for `adafocus infer --budget`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import torch

from adafocus.data import build_dataset, held_out_slice, split_sources
from adafocus.evaluation import build_report, collect
from adafocus.evaluation.evaluate import first_video_shape
from adafocus.evaluation.plots import plot_curve
from adafocus.inference import EarlyExitRunner
from adafocus.training import checkpoint as ckpt
from adafocus.training.config import DataConfig, RunConfig
from adafocus.training.distributed import pick_device
from adafocus.utils.files import atomic_write


def check_calibration_unseen(data: DataConfig, trained: Optional[dict], path: str) -> None:
    """ValueError if the calibration split is a held-out slice of the training list that the
    checkpoint's own training run did not hold out (its videos were trained on).

    trained: the checkpoint's data section (as the trainer stored it); None when unknown."""
    wanted = held_out_slice(data)
    if wanted is None or trained is None:
        return
    known = {f.name for f in dataclasses.fields(DataConfig)}
    # A run from before data.calibration_fraction existed trained on the whole list.
    at_training = DataConfig(**{**{k: v for k, v in trained.items() if k in known},
                                "calibration_fraction": trained.get("calibration_fraction", 0.0)})
    had = held_out_slice(at_training)
    if had != wanted:
        raise ValueError(
            f"data.calibration_fraction={data.calibration_fraction:g}: the thresholds would be solved on "
            f"{wanted[1]:g} of {wanted[0]} held out from training, but {path} was trained "
            + (f"holding out {had[1]:g} of {had[0]}" if had else "on the whole training list")
            + "; evaluate with the training run's data settings, give data.test_list (then data.val_list "
              "calibrates), or set data.calibration_fraction 0 to solve them on the report split")


def evaluate_checkpoint(config: RunConfig, checkpoint_path: Optional[str] = None, out_dir: Optional[str] = None,
                        write_thresholds: bool = True, progress: bool = True) -> dict:
    """Full evaluation of one checkpoint; returns the report (also written as curve.json)."""
    path = checkpoint_path or config.eval.checkpoint or os.path.join(config.train.output_dir, "checkpoint.pt")
    device = pick_device(config.train.device)
    model, state = ckpt.load_model(path, device)
    check_calibration_unseen(config.data, (state.get("config") or {}).get("data"), path)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    runner = EarlyExitRunner(model)
    num_classes, seed = model.config.num_classes, config.train.seed
    progress = progress and config.train.progress
    splits = {}
    for split in ("val", "test"):
        dataset = build_dataset(config.data, split, num_classes, seed)
        splits[split] = collect(runner, dataset, config.eval.batch_size, device, config.data.num_workers,
                                progress=progress)
    video_shape = first_video_shape(build_dataset(config.data, "test", num_classes, seed))
    gflops_per_exit = runner.gmacs_per_exit(video_shape)
    report = {"checkpoint": os.path.abspath(path), "epoch": state.get("epoch")}
    report.update(build_report(splits["val"], splits["test"], gflops_per_exit, model.config.cube_size,
                               video_shape[1:], config.eval.budgets, config.eval.summary_budget, runner.policy,
                               splits=split_sources(config.data)))

    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    report["curve_json"] = os.path.join(out_dir, "curve.json")
    report["curve_png"] = os.path.join(out_dir, "curve.png")
    with atomic_write(report["curve_json"]) as f:
        json.dump(report, f, indent=1)
    plot_curve(report, report["curve_png"])
    if write_thresholds:
        state["gflops_per_exit"] = gflops_per_exit
        state["budget_thresholds"] = [{"budget": p["budget"], "val_gflops": p["val_gflops"], "thresholds": p["thresholds"]}
                                      for p in report["curve"]]
        state["thresholds"] = report["early_exit"]["thresholds"]
        state["calibration_split"] = report["splits"]["calibration"]
        state["state_dict"]["exit_thresholds"] = torch.tensor(report["early_exit"]["thresholds"], dtype=torch.float32)
        ckpt.save_atomic(state, path)
    return report
