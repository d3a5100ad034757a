"""Evaluation: per-exit accuracy, early-exit thresholds, accuracy-vs-GFLOPs curve.

1. `collect`: every exit's logits on a split (the inference path: integer cubes
   in policy order, frame de-duplication), from an EarlyExitRunner.
2. `per_exit_scores`: top-1 and mAP per exit: exit 0 is the glance alone, exit M all cubes.
3. `early_exit_curve`: for a range of GFLOPs budgets the entropy thresholds are
   solved on val (adafocus.evaluation.calibration) and applied unchanged to test:
   each budget gives one (GFLOPs, accuracy) point of the test curve.
   "val" is the calibration split and "test" the report split throughout;
   adafocus.data.split_sources says what each is for a run (with one list file
   to report on, the calibration split is a slice held out of the training list).
4. `policy_report`: on datasets that know where the evidence is (the synthetic
   task), the cube hit rate after k cubes; the spread of the centers across videos.
`build_report` puts these together; adafocus.apps.evaluate runs it for a checkpoint.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch.utils.data import DataLoader

from adafocus.data import collate_videos
from adafocus.evaluation import calibration, metrics
from adafocus.inference import EarlyExitRunner, early_exit


@torch.no_grad()
def collect(runner: EarlyExitRunner, dataset, batch_size: int, device: torch.device, num_workers: int = 0,
            progress: bool = False) -> Dict[str, torch.Tensor]:
    """Every exit's logits (E, N, classes), labels, centers (N, M, 3), target boxes if known.

    `runner` fixes the model and the policy choice, e.g. EarlyExitRunner(model, policy="random")
    evaluates the same weights with random cubes.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_videos, num_workers=num_workers)
    logits, labels, centers, boxes, skipped = [], [], [], [], 0
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, leave=False, desc="eval", dynamic_ncols=True)
    for batch in iterator:
        skipped += batch["num_skipped"]
        if batch["video"] is None:
            continue
        out = runner(batch["video"].to(device), return_all_exits=True)
        logits.append(out.all_logits.float().cpu())
        labels.append(batch["label"])
        centers.append(out.centers.float().cpu())
        if "target_box" in batch:
            boxes.append(batch["target_box"])
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
    """Cube hit rate after k cubes (if the boxes are known) and center spread."""
    report = {"center_spread": metrics.center_spread(collected["centers"])}
    if "boxes" in collected:
        hits = metrics.cube_hits(collected["centers"], collected["boxes"], cube_size, video_size)
        report["hit_rate_after"] = [metrics.hit_rate_after(hits, k) for k in range(1, hits.shape[1] + 1)]
    return report


def early_exit_curve(val: dict, test: dict, gflops_per_exit, num_budgets: int, multi_label: bool):
    """Thresholds solved on val for evenly spaced budgets, applied to test."""
    budgets = calibration.even_budgets(gflops_per_exit, num_budgets)
    val_curve = calibration.budget_curve(val["exit_logits"], val["labels"], gflops_per_exit, budgets)
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
    eta = calibration.solve_thresholds(val["exit_logits"], val["labels"], gflops_per_exit, budget)
    score = metrics.mean_average_precision if multi_label else metrics.top1
    _, _, val_gflops = early_exit.simulate(val["exit_logits"], eta, gflops_per_exit)
    picked, exit_index, gflops = early_exit.simulate(test["exit_logits"], eta, gflops_per_exit)
    return {
        "budget": budget,
        "thresholds": eta.tolist(),
        "val_gflops": float(val_gflops.mean()),
        "test_gflops": float(gflops.mean()),
        "test_accuracy": score(picked, test["labels"]),
        "test_exit_fractions": torch.bincount(exit_index, minlength=len(gflops_per_exit)).double().div(len(exit_index)).tolist(),
    }


def build_report(val: dict, test: dict, gflops_per_exit, cube_size, video_size, num_budgets: int,
                 summary_budget: float, policy: str, splits: Optional[dict] = None) -> dict:
    """The evaluation report of one model from `collect`ed val and test splits.

    mAP is the headline metric when the labels are multi-hot (several labels per video), else top-1.
    summary_budget: the reported early-exit point's budget, as a fraction of the all-cubes GMACs.
    splits: where val (calibration: thresholds) and test (report: every test_* number) come from,
    as adafocus.data.split_sources gives it; stored under "splits" with the video counts.
    """
    multi_label = test["labels"].dim() == 2
    report = {
        "policy_choice": policy,
        "multi_label": multi_label,
        "splits": {**(splits or {"calibration": "val", "report": "test", "calibration_is_report": False}),
                   "keys": "val, val_*: the calibration split; test, test_*: the report split",
                   "num_calibration_videos": int(val["labels"].shape[0]),
                   "num_report_videos": int(test["labels"].shape[0])},
        "num_test_videos": int(test["labels"].shape[0]),
        "skipped_videos": {"val": val["skipped"], "test": test["skipped"]},
        "gflops_per_exit": list(gflops_per_exit),
        "val": per_exit_scores(val["exit_logits"], val["labels"]),
        "test": per_exit_scores(test["exit_logits"], test["labels"]),
        "policy": policy_report(test, cube_size, video_size),
    }
    report["curve"] = early_exit_curve(val, test, gflops_per_exit, num_budgets, multi_label)
    budget = summary_budget * gflops_per_exit[-1]
    report["early_exit"] = early_exit_at_budget(val, test, gflops_per_exit, budget, multi_label)
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
    splits = report.get("splits")
    if splits:
        lines.append(f"thresholds solved on {splits['num_calibration_videos']} videos: {splits['calibration']}")
        lines.append(f"reported on {splits['num_report_videos']} videos: {splits['report']}")
    ee = report["early_exit"]
    lines.append(f"early exit (thresholds solved on the calibration split for {ee['budget'] * 1e3:.2f} MFLOPs): {ee['test_accuracy'] * 100:.1f}% at {ee['test_gflops'] * 1e3:.2f} MFLOPs "
                 f"({ee['test_gflops'] / g[-1] * 100:.0f}% of all cubes); exits per stage "
                 + " ".join(f"{x * 100:.0f}%" for x in ee["test_exit_fractions"]))
    spread = report["policy"]["center_spread"]
    lines.append(f"center spread across videos (t, y, x): {spread['t']:.2f} {spread['y']:.2f} {spread['x']:.2f}")
    if sum(report["skipped_videos"].values()):
        lines.append(f"unreadable videos skipped: {report['skipped_videos']}")
    lines.append(f"curve: {report['curve_json']}  plot: {report['curve_png']}")
    return "\n".join(lines)
