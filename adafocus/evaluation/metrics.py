"""Evaluation metrics: top-1, mean average precision, cube hit rate, center spread.

Conventions: top-1 on a multi-label video counts a hit when the top class is
any of its labels (Hit@1); mAP is the non-interpolated per-class average
precision of the softmax probabilities, averaged over the classes that have a
positive (the AdaFocus code's `cal_map`; mmaction2's `mean_average_precision`);
with no positive in any class it is NaN.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

import cubecrop


def top1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """logits (N, classes); target (N,) class indices or (N, classes) multi-hot."""
    if logits.shape[0] == 0:
        return float("nan")
    pred = logits.argmax(dim=1)
    if target.dim() == 2:
        return target.gather(1, pred[:, None]).gt(0).double().mean().item()
    return pred.eq(target).double().mean().item()


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    if target.dim() == 2:
        return target.gt(0)
    return torch.nn.functional.one_hot(target.long(), num_classes).bool()


def mean_average_precision(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over classes (with >= 1 positive) of non-interpolated AP of softmax(logits).

    logits (N, classes); target (N,) indices or (N, classes) multi-hot.
    AP of a class = mean over its positives of the precision at their rank. The
    videos are ranked per class by probability, not by raw logit: the softmax
    normalises each video, which changes the order across videos.
    """
    positives = one_hot(target, logits.shape[1]).double()
    scores = torch.softmax(logits.double(), dim=1)
    order = scores.argsort(dim=0, descending=True)
    hits = positives.gather(0, order)  # (N, classes), sorted by score per class
    ranks = torch.arange(1, logits.shape[0] + 1, dtype=torch.float64)[:, None]
    precision = hits.cumsum(0) / ranks
    counts = hits.sum(0)
    valid = counts > 0
    if not bool(valid.any()):
        return float("nan")
    ap = (precision * hits).sum(0)[valid] / counts[valid]
    return ap.mean().item()


def cube_hits(centers: torch.Tensor, boxes: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int],
              min_area: float = 0.5) -> torch.Tensor:
    """Whether each cube sees the target: >= 1 shared frame and >= min_area of its area.

    centers (N, M, 3); boxes (N, 6) [t0, t1, y0, y1, x0, x1] end-exclusive.
    Returns bool (N, M).
    """
    windows = cubecrop.integer_windows(centers, cube_size, video_size).double()  # (N, M, 3, 2)
    box = boxes.double().view(-1, 1, 3, 2)
    lo = torch.maximum(windows[..., 0], box[..., 0])
    hi = torch.minimum(windows[..., 1], box[..., 1])
    overlap = (hi - lo).clamp(min=0)  # (N, M, 3)
    box_side = (box[..., 1] - box[..., 0]).clamp(min=1)
    area_fraction = overlap[..., 1] * overlap[..., 2] / (box_side[..., 1] * box_side[..., 2])
    return (overlap[..., 0] >= 1) & (area_fraction >= min_area)


def hit_rate_after(hits: torch.Tensor, k: int) -> float:
    """Share of videos where one of the first k cubes sees the target."""
    return hits[:, :k].any(dim=1).double().mean().item()


def center_spread(centers: torch.Tensor) -> Dict[str, float]:
    """Std across videos of each cube's center (population std), averaged over cubes, per axis (t, y, x).

    A policy that collapsed onto one place has spread ~0.
    """
    std = centers.detach().double().std(dim=0, unbiased=False).mean(dim=0)  # (3,)
    return {"t": std[0].item(), "y": std[1].item(), "x": std[2].item()}
