"""Evaluation: per-exit accuracy, early-exit thresholds, accuracy-vs-GFLOPs curve.

1. Every exit's logits are collected on the val and test splits (inference
   path: integer cubes in policy order, frame de-duplication).
2. Top-1 (and mAP) per exit on test: exit 0 is the glance alone, exit M all cubes.
3. For a range of GFLOPs budgets the entropy thresholds are solved on val
   (adafocus.thresholds, MSDNet's budgeted procedure) and applied unchanged to
   test: each budget gives one (GFLOPs, accuracy) point of the test curve.
4. On datasets that know where the evidence is (the synthetic task), the cube
   hit rate after k cubes and the spread of the centres across videos.

Outputs beside the checkpoint (or in `out_dir`): curve.json, curve.png, and
the solved thresholds stored in the checkpoint (for `adafocus infer --budget`).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, Optional

import torch
from torch.utils.data import DataLoader

from adafocus import checkpoint as ckpt
from adafocus import metrics
from adafocus.config import RunConfig
from adafocus.data import build_dataset, collate_videos

logger = logging.getLogger("adafocus.evaluate")

def load_model(path: str, device: torch.device):
    """(model in eval mode with its stored thresholds, checkpoint dict)."""
    from adafocus.model import AdaFocusV3
    from adafocus.model_config import ModelConfig

    state = ckpt.load(path, map_location="cpu")
    model = AdaFocusV3(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(ckpt.strip_module_prefix(state["state_dict"]))
    return model.to(device).eval(), state


@torch.no_grad()
def collect(model, dataset, batch_size: int, device: torch.device, num_workers: int = 0, mode: Optional[str] = None,
            progress: bool = False) -> Dict[str, torch.Tensor]:
    """Every exit's logits (E, N, classes), labels, centres (N, M, 3), target boxes if known.

    mode="random" evaluates the model with random cubes instead of its policy.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_videos, num_workers=num_workers)
    logits, labels, centers, boxes, skipped = [], [], [], [], 0
    saved_mode = model.config.mode
    if mode is not None:
        model.config.mode = mode
    try:
        iterator = loader
        if progress:
            from tqdm import tqdm

            iterator = tqdm(loader, leave=False, desc="eval", dynamic_ncols=True)
        for batch in iterator:
            skipped += batch["num_skipped"]
            if batch["video"] is None:
                continue
            out = model.infer(batch["video"].to(device), return_all_exits=True)
            logits.append(out.all_logits.float().cpu())
            labels.append(batch["label"])
            centers.append(out.centers.float().cpu())
            if "target_box" in batch:
                boxes.append(batch["target_box"])
    finally:
        model.config.mode = saved_mode
    if not logits:
        raise ValueError("no readable video in the evaluation split")
    result = {"exit_logits": torch.cat(logits, dim=1), "labels": torch.cat(labels), "centers": torch.cat(centers),
              "skipped": skipped}
    if boxes:
        result["boxes"] = torch.cat(boxes)
    return result


def first_video_shape(dataset) -> tuple:
    """(C, T, H, W) of the first readable video of a dataset."""
    for i in range(len(dataset)):
        item = dataset[i]
        if "video" in item:
            return tuple(item["video"].shape)
    raise ValueError("no readable video in the dataset")


def per_exit_scores(exit_logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, list]:
    return {
        "top1": [metrics.top1(l, labels) for l in exit_logits],
        "mAP": [metrics.mean_average_precision(l, labels) for l in exit_logits],
    }


def policy_report(collected: dict, cube_size, video_size) -> Dict:
    """Cube hit rate after k cubes (if the boxes are known) and centre spread."""
    report = {"centre_spread": metrics.centre_spread(collected["centers"])}
    if "boxes" in collected:
        hits = metrics.cube_hits(collected["centers"], collected["boxes"], cube_size, video_size)
        report["hit_rate_after"] = [metrics.hit_rate_after(hits, k) for k in range(1, hits.shape[1] + 1)]
    return report


def early_exit_curve(val: dict, test: dict, gflops_per_exit, num_budgets: int, multi_label: bool):
    """Thresholds solved on val for evenly spaced budgets, applied to test."""
    from adafocus import early_exit, thresholds

    budgets = torch.linspace(gflops_per_exit[0], gflops_per_exit[-1], num_budgets).tolist()
    val_curve = thresholds.budget_curve(val["exit_logits"], val["labels"], gflops_per_exit, budgets)
    score = metrics.mean_average_precision if multi_label else metrics.top1
    points = []
    for point in val_curve:
        picked, exit_index, gflops = early_exit.simulate(test["exit_logits"], point["thresholds"], gflops_per_exit)
        points.append({
            "budget": point["budget"],
            "thresholds": point["thresholds"],
            "val_gflops": point["gflops"],
            "val_accuracy": point["accuracy"],
            "test_gflops": float(gflops.mean()),
            "test_accuracy": score(picked, test["labels"]),
            "test_exit_fractions": torch.bincount(exit_index, minlength=len(gflops_per_exit)).double().div(len(exit_index)).tolist(),
        })
    return points


def early_exit_at_budget(val: dict, test: dict, gflops_per_exit, budget: float, multi_label: bool) -> dict:
    """The operating point for one budget (Eq. 7): thresholds solved on val, applied to test."""
    from adafocus import early_exit, thresholds

    eta = thresholds.solve_thresholds(val["exit_logits"], val["labels"], gflops_per_exit, budget)
    score = metrics.mean_average_precision if multi_label else metrics.top1
    _, val_exit, val_gflops = early_exit.simulate(val["exit_logits"], eta, gflops_per_exit)
    picked, exit_index, gflops = early_exit.simulate(test["exit_logits"], eta, gflops_per_exit)
    return {
        "budget": budget,
        "thresholds": eta.tolist(),
        "val_gflops": float(val_gflops.mean()),
        "test_gflops": float(gflops.mean()),
        "test_accuracy": score(picked, test["labels"]),
        "test_exit_fractions": torch.bincount(exit_index, minlength=len(gflops_per_exit)).double().div(len(exit_index)).tolist(),
    }


def plot_curve(report: dict, path: str, others: Optional[Dict[str, dict]] = None) -> None:
    """Accuracy vs GFLOPs on test, with the glance-only and all-cubes points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for name, rep in [("AdaFocusV3 early exit", report)] + sorted((others or {}).items()):
        xs = [p["test_gflops"] * 1e3 for p in rep["curve"]]
        ys = [p["test_accuracy"] * 100 for p in rep["curve"]]
        ax.plot(xs, ys, "-o", ms=3, label=name)
    g = report["gflops_per_exit"]
    top1 = report["test"]["top1"] if not report["multi_label"] else report["test"]["mAP"]
    ax.plot([gf * 1e3 for gf in g], [a * 100 for a in top1], "s--", color="gray", ms=5, label="learned policy, fixed k cubes (k = 0..M)")
    ax.scatter([g[0] * 1e3], [top1[0] * 100], s=90, marker="v", color="tab:red", zorder=5, label="glance only (p0)")
    ax.scatter([g[-1] * 1e3], [top1[-1] * 100], s=90, marker="^", color="tab:green", zorder=5, label="all cubes")
    ax.set_xlabel("MFLOPs (multiply-adds) per video")
    ax.set_ylabel("test mAP (%)" if report["multi_label"] else "test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(config: RunConfig, checkpoint_path: Optional[str] = None, out_dir: Optional[str] = None,
             write_thresholds: bool = True, progress: bool = True) -> dict:
    """Full evaluation of one checkpoint; returns the report (also written as curve.json)."""
    from adafocus.distributed import pick_device

    path = checkpoint_path or config.eval.checkpoint or os.path.join(config.train.output_dir, "checkpoint.pt")
    device = pick_device(config.train.device)
    model, state = load_model(path, device)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    model_config = model.config
    num_classes = model_config.num_classes
    seed = config.train.seed
    progress = progress and config.train.progress
    val = collect(model, build_dataset(config.data, "val", num_classes, seed), config.eval.batch_size, device,
                  config.data.num_workers, progress=progress)
    test = collect(model, build_dataset(config.data, "test", num_classes, seed), config.eval.batch_size, device,
                   config.data.num_workers, progress=progress)
    video_shape = (1,) + first_video_shape(build_dataset(config.data, "test", num_classes, seed))
    gflops_per_exit = model.gflops_per_exit(video_shape)
    multi_label = bool(model_config.multi_label)

    report = {
        "checkpoint": os.path.abspath(path),
        "epoch": state.get("epoch"),
        "mode": model_config.mode,
        "multi_label": multi_label,
        "num_test_videos": int(test["labels"].shape[0]),
        "skipped_videos": {"val": val["skipped"], "test": test["skipped"]},
        "gflops_per_exit": gflops_per_exit,
        "val": per_exit_scores(val["exit_logits"], val["labels"]),
        "test": per_exit_scores(test["exit_logits"], test["labels"]),
        "policy": policy_report(test, model_config.cube_size, video_shape[2:]),
    }
    report["curve"] = early_exit_curve(val, test, gflops_per_exit, config.eval.budgets, multi_label)
    budget = config.eval.summary_budget * gflops_per_exit[-1]
    report["early_exit"] = early_exit_at_budget(val, test, gflops_per_exit, budget, multi_label)

    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    report["curve_json"] = os.path.join(out_dir, "curve.json")
    report["curve_png"] = os.path.join(out_dir, "curve.png")
    with open(report["curve_json"], "w") as f:
        json.dump(report, f, indent=1)
    plot_curve(report, report["curve_png"])
    if write_thresholds:
        state["gflops_per_exit"] = gflops_per_exit
        state["budget_thresholds"] = [{"budget": p["budget"], "val_gflops": p["val_gflops"], "thresholds": p["thresholds"]}
                                      for p in report["curve"]]
        state["thresholds"] = report["early_exit"]["thresholds"]
        state["state_dict"]["exit_thresholds"] = torch.tensor(report["early_exit"]["thresholds"], dtype=torch.float32)
        ckpt.save_atomic(state, path)
    return report


def format_report(report: dict) -> str:
    key = "mAP" if report["multi_label"] else "top1"
    g = report["gflops_per_exit"]
    lines = [f"checkpoint {report['checkpoint']} (epoch {report['epoch']}, {report['num_test_videos']} test videos)",
             f"{'exit':>6} {'cubes':>5} {'MFLOPs':>8} {'test ' + key:>10}" +
             (f" {'cube hit rate':>13}" if "hit_rate_after" in report["policy"] else "")]
    hits = report["policy"].get("hit_rate_after")
    for k, acc in enumerate(report["test"][key]):
        row = f"{k:>6} {k:>5} {g[k] * 1e3:>8.2f} {acc * 100:>9.1f}%"
        if hits is not None:
            row += f" {hits[k - 1] * 100:>12.1f}%" if k > 0 else f" {'-':>13}"
        lines.append(row)
    ee = report["early_exit"]
    lines.append(f"early exit (thresholds solved on val for {ee['budget'] * 1e3:.2f} MFLOPs): {ee['test_accuracy'] * 100:.1f}% at {ee['test_gflops'] * 1e3:.2f} MFLOPs "
                 f"({ee['test_gflops'] / g[-1] * 100:.0f}% of all cubes); exits per stage "
                 + " ".join(f"{x * 100:.0f}%" for x in ee["test_exit_fractions"]))
    spread = report["policy"]["centre_spread"]
    lines.append(f"centre spread across videos (t, y, x): {spread['t']:.2f} {spread['y']:.2f} {spread['x']:.2f}")
    if sum(report["skipped_videos"].values()):
        lines.append(f"unreadable videos skipped: {report['skipped_videos']}")
    lines.append(f"curve: {report['curve_json']}  plot: {report['curve_png']}")
    return "\n".join(lines)
