"""Evaluation metrics: top-1, mean average precision, cube hit rate, centre spread.

Conventions (ecosystem.md section 1.7): top-1 on a multi-label video counts a
hit when the top class is any of its labels (Hit@1); mAP is the
non-interpolated per-class average precision averaged over the classes that
have a positive (mmaction2 `mean_average_precision`, FrameExit).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch


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


def mean_average_precision(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over classes (with >= 1 positive) of non-interpolated AP.

    scores (N, classes); target (N,) indices or (N, classes) multi-hot.
    AP of a class = mean over its positives of the precision at their rank.
    """
    positives = one_hot(target, scores.shape[1]).double()
    order = scores.double().argsort(dim=0, descending=True)
    hits = positives.gather(0, order)  # (N, classes), sorted by score per class
    ranks = torch.arange(1, scores.shape[0] + 1, dtype=torch.float64)[:, None]
    precision = hits.cumsum(0) / ranks
    counts = hits.sum(0)
    valid = counts > 0
    if not bool(valid.any()):
        return float("nan")
    ap = (precision * hits).sum(0)[valid] / counts[valid]
    return ap.mean().item()


def cube_windows(centers: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int]) -> torch.Tensor:
    """The voxels an integer cube reads: start = round(c - D/2) clamped inside the video.

    centers (..., 3) as (t, y, x); returns (..., 3, 2) [start, end) per axis,
    the same rule as cubecrop.crop_cubes_int.
    """
    size = torch.as_tensor(cube_size, dtype=torch.float64, device=centers.device)
    extent = torch.as_tensor(video_size, dtype=torch.float64, device=centers.device)
    start = torch.floor(centers.double() - size / 2 + 0.5)
    start = torch.minimum(torch.maximum(start, torch.zeros_like(start)), extent - size)
    return torch.stack([start, start + size], dim=-1)


def cube_hits(centers: torch.Tensor, boxes: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int],
              min_area: float = 0.5) -> torch.Tensor:
    """Whether each cube sees the target: >= 1 shared frame and >= min_area of its area.

    centers (N, M, 3); boxes (N, 6) [t0, t1, y0, y1, x0, x1] end-exclusive.
    Returns bool (N, M).
    """
    windows = cube_windows(centers, cube_size, video_size)  # (N, M, 3, 2)
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


def centre_spread(centers: torch.Tensor) -> Dict[str, float]:
    """Std across videos of each cube's centre, averaged over cubes, per axis (t, y, x).

    A policy that collapsed onto one place has spread ~0.
    """
    std = centers.double().std(dim=0, unbiased=False).mean(dim=0)  # (3,)
    return {"t": std[0].item(), "y": std[1].item(), "x": std[2].item()}
