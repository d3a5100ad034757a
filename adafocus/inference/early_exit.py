"""Early exit (paper section 3.4): stop after exit t when the entropy of p_t is <= eta_t.

Exits are 0 (glance) .. M (after cube M). thresholds is (M+1,); the last exit takes
every video still running whatever its threshold. The offline `simulate` (from
stored all-exit logits) and the batched EarlyExitRunner share `exit_mask`, so they
take the same decision from the same logits.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from adafocus.model.adafocus_v3 import check_thresholds, no_exit_thresholds  # noqa: F401  (part of the exit rule)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy -sum p log p of softmax(logits) over the last dim, in float32 (nats)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def exit_mask(logits: torch.Tensor, threshold, last: bool) -> torch.Tensor:
    """Which videos stop at this exit: entropy <= threshold, or all of them at the last exit."""
    if last:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    return entropy(logits) <= float(threshold)


def check_exit_plan(exit_plan, batch: int, last: int, device=None) -> Optional[torch.Tensor]:
    """exit_plan: None, or one exit per video (B,) to take whatever the entropies (for timing a
    model without calibrated thresholds); returned as a long tensor clamped to [0, last]."""
    if exit_plan is None:
        return None
    plan = torch.as_tensor(exit_plan, dtype=torch.long, device=device).clamp(0, last)
    if plan.shape != (batch,):
        raise ValueError(f"exit_plan must have one exit per video ({batch}), got shape {tuple(plan.shape)}")
    return plan


def stops_at(exit_index: int, logits: torch.Tensor, rows: torch.Tensor, thresholds: torch.Tensor, last: int,
             exit_plan: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Which of the running videos `rows` (their logits at exit `exit_index`) stop there: the
    plan's choice where there is one, else exit_mask with that exit's threshold."""
    if exit_plan is not None:
        return exit_plan[rows] == exit_index
    return exit_mask(logits, thresholds[exit_index], last=exit_index == last)


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
