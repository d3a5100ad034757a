"""Early exit (paper section 3.4): stop after exit t when the entropy of p_t is <= eta_t.

Exits are 0 (glance) .. M (after cube M). thresholds is (M+1,); the last exit takes
every video still running whatever its threshold. The offline `simulate` (from
stored all-exit logits) and the batched `AdaFocusV3.infer` share `exit_mask`, so they
take the same decision from the same logits.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy -sum p log p of softmax(logits) over the last dim, in float32 (nats)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def exit_mask(logits: torch.Tensor, threshold, last: bool) -> torch.Tensor:
    """Which videos stop at this exit: entropy <= threshold, or all of them at the last exit."""
    if last:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    return entropy(logits) <= float(threshold)


def check_thresholds(thresholds, num_exits: int) -> torch.Tensor:
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32).flatten().cpu()
    if thresholds.numel() != num_exits:
        raise ValueError(f"thresholds must have one value per exit ({num_exits}), got {thresholds.numel()}")
    if bool(torch.isnan(thresholds).any()):
        raise ValueError("thresholds must not be NaN")
    return thresholds


def no_exit_thresholds(num_exits: int) -> torch.Tensor:
    """Thresholds that run every video to the last exit."""
    eta = torch.full((num_exits,), float("-inf"))
    eta[-1] = float("inf")
    return eta


def simulate(
    exit_logits: torch.Tensor, thresholds, gflops_per_exit: Sequence[float]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offline early exit from every exit's logits.

    exit_logits (E, N, classes); thresholds (E,); gflops_per_exit (E,) cumulative GMACs.
    Returns (logits at the exit taken (N, classes), exit_index (N,) long, gflops (N,) float64).
    """
    if exit_logits.dim() != 3:
        raise ValueError(f"exit_logits must be (exits, videos, classes), got {tuple(exit_logits.shape)}")
    num_exits, n = exit_logits.shape[:2]
    thresholds = check_thresholds(thresholds, num_exits)
    cost = torch.as_tensor(gflops_per_exit, dtype=torch.float64)
    if cost.numel() != num_exits:
        raise ValueError(f"gflops_per_exit must have one value per exit ({num_exits}), got {cost.numel()}")
    exit_index = torch.full((n,), num_exits - 1, dtype=torch.long)
    running = torch.ones(n, dtype=torch.bool)
    for k in range(num_exits):
        stops = exit_mask(exit_logits[k], thresholds[k], last=k == num_exits - 1).cpu() & running
        exit_index[stops] = k
        running &= ~stops
    picked = exit_logits.gather(0, exit_index.to(exit_logits.device).view(1, n, 1).expand(1, n, exit_logits.shape[2]))
    return picked[0], exit_index, cost[exit_index]


def frame_of_centre(centre_t: torch.Tensor, cube_frames: int, num_frames: int) -> torch.Tensor:
    """The first frame crop_cubes_int reads for a temporal centre: round(c - Dt/2) half up, clamped inside."""
    start = torch.floor(centre_t.double() - cube_frames / 2 + 0.5).long()
    return start.clamp(0, num_frames - cube_frames)


def deduplicate_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame-wise cubes in policy order: a frame already taken by an earlier cube moves to the nearest unused frame.

    frames (B, M) long in [0, T). Ties go to the earlier frame. When every frame is
    used (M > T) the cube keeps its frame. Paper section 4.1: "we remove the frames
    which have been included by previous cubes".
    """
    b, m = frames.shape
    positions = torch.arange(num_frames, device=frames.device)
    used = torch.zeros(b, num_frames, dtype=torch.bool, device=frames.device)
    out = frames.clone()
    rows = torch.arange(b, device=frames.device)
    for k in range(m):
        wanted = frames[:, k]
        distance = (positions.view(1, -1) - wanted.view(-1, 1)).abs() + used.long() * (2 * num_frames + 1)
        nearest = distance.argmin(dim=1)  # first minimum: the earlier frame on ties
        free = ~used.all(dim=1)
        chosen = torch.where(free, nearest, wanted)
        out[:, k] = chosen
        used[rows, chosen] = True
    return out
