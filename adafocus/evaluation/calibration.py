"""Early-exit thresholds for a GFLOPs budget (paper Eq. 7), MSDNet's budgeted procedure.

Calibration needs labelled held-out logits, so it lives with the metrics; the exit
rule the thresholds feed (adafocus.inference.early_exit) needs no labels.

From stored per-exit logits on a held-out split: for an exit-proportion law
p_k proportional to q^k, walk the exits in order and let the n_k = floor(N p_k)
lowest-entropy videos still running stop at exit k (threshold eta_k halfway
between the last video that stops and the first that goes on, so tiny numerical
differences between the batched and the offline run do not move the boundary).
Each q gives one (GFLOPs, accuracy) point; for a budget B the thresholds are
those of the most accurate point whose GFLOPs on this data are <= B. No retraining:
the whole accuracy-vs-GFLOPs curve comes from the same logits.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from adafocus.evaluation import metrics
from adafocus.inference import early_exit

# Geometric-law parameters tried: from "almost everyone stops at the glance" to "almost nobody stops early".
DEFAULT_Q = torch.logspace(-3, 3, 161, dtype=torch.float64).tolist()


def _check(exit_logits: torch.Tensor, labels: torch.Tensor, gflops_per_exit) -> torch.Tensor:
    if exit_logits.dim() != 3:
        raise ValueError(f"exit_logits must be (exits, videos, classes), got {tuple(exit_logits.shape)}")
    if labels.shape[0] != exit_logits.shape[1]:
        raise ValueError(f"labels has {labels.shape[0]} videos, exit_logits {exit_logits.shape[1]}")
    cost = torch.as_tensor(gflops_per_exit, dtype=torch.float64).flatten()
    if cost.numel() != exit_logits.shape[0]:
        raise ValueError(f"gflops_per_exit must have one value per exit ({exit_logits.shape[0]}), got {cost.numel()}")
    if bool((cost[1:] < cost[:-1]).any()):
        raise ValueError(f"gflops_per_exit must be cumulative (non-decreasing), got {cost.tolist()}")
    return cost


def geometric_thresholds(entropies: torch.Tensor, q: float) -> torch.Tensor:
    """MSDNet's greedy thresholds for exit proportions proportional to q^k. entropies (E, N) -> eta (E,)."""
    values = entropies.float().cpu().numpy()  # small loops: numpy avoids per-op torch overhead
    num_exits, n = values.shape
    weights = np.array([q**k for k in range(num_exits)], dtype=np.float64)
    counts = np.floor(n * weights / weights.sum()).astype(np.int64)
    eta = np.empty(num_exits, dtype=np.float32)
    eta[-1] = np.inf
    running = np.ones(n, dtype=bool)
    for k in range(num_exits - 1):
        remaining = np.sort(values[k][running])
        take = int(counts[k])
        if take <= 0:
            eta[k] = -np.inf
        elif take >= remaining.size:
            eta[k] = np.inf
        else:
            eta[k] = (remaining[take - 1] + remaining[take]) / np.float32(2)
        running &= ~(values[k] <= eta[k])
    return torch.from_numpy(eta)


def _candidates(entropies: torch.Tensor, qs: Sequence[float]) -> List[torch.Tensor]:
    num_exits = entropies.shape[0]
    out = [geometric_thresholds(entropies, float(q)) for q in qs]
    # The same law over exits j..M with the first j exits closed: when the early exits are
    # weak (a glance that cannot classify) every law that starts at exit 0 wastes videos there.
    for first in range(1, num_exits - 1):
        for q in qs:
            eta = torch.full((num_exits,), float("-inf"))
            eta[first:] = geometric_thresholds(entropies[first:], float(q))
            out.append(eta)
    # "Everyone stops at exit k", the ends of the curve.
    for k in range(num_exits):
        eta = torch.full((num_exits,), float("-inf"))
        eta[k:] = float("inf")
        out.append(eta)
    return out


def _exit_indices(entropies: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The exit each video takes: the first k with entropy <= eta_k, else the last (as early_exit.simulate)."""
    stops = entropies <= thresholds.view(-1, 1)
    stops[-1] = True
    return stops.int().argmax(dim=0)  # first True


def _operating_points(exit_logits, labels, cost, qs) -> List[Dict]:
    """(GFLOPs, accuracy) of each candidate threshold set, evaluated from precomputed entropies."""
    entropies = torch.stack([early_exit.entropy(logits).cpu() for logits in exit_logits])
    logits = exit_logits.cpu()
    labels = labels.cpu()
    correct = (logits.argmax(-1) == labels.unsqueeze(0)).float() if labels.dim() == 1 else None
    points, seen = [], set()
    for eta in _candidates(entropies, qs):
        key = tuple(eta.tolist())
        if key in seen:
            continue
        seen.add(key)
        exit_index = _exit_indices(entropies, eta)
        if correct is not None:
            accuracy = float(correct.gather(0, exit_index.view(1, -1)).mean())
        else:
            picked = logits.gather(0, exit_index.view(1, -1, 1).expand(1, -1, logits.shape[2]))[0]
            accuracy = metrics.mean_average_precision(picked, labels)
        points.append(
            {
                "gflops": float(cost[exit_index].mean()),
                "accuracy": accuracy,
                "thresholds": eta,
                "exit_fractions": torch.bincount(exit_index, minlength=len(cost)).double().div(len(exit_index)).tolist(),
            }
        )
    return points


def _best_within(points: List[Dict], budget: float) -> Optional[Dict]:
    # A relative slack of 1e-9 absorbs the rounding of a mean of identical costs.
    feasible = [p for p in points if p["gflops"] <= budget * (1 + 1e-9)]
    if not feasible:
        return None
    # mAP is NaN when no class has a positive: then only the cost decides.
    return max(feasible, key=lambda p: (-math.inf if math.isnan(p["accuracy"]) else p["accuracy"], -p["gflops"]))


def solve_thresholds(
    exit_logits: torch.Tensor, labels: torch.Tensor, gflops_per_exit, budget: float, qs: Sequence[float] = DEFAULT_Q
) -> torch.Tensor:
    """Entropy thresholds eta (E,) maximising accuracy (mAP for multi-hot labels) with mean GMACs <= budget
    on this data. exit_logits (E, N, classes); labels (N,) or (N, classes); gflops_per_exit (E,) cumulative."""
    cost = _check(exit_logits, labels, gflops_per_exit)
    if budget < float(cost[0]):
        raise ValueError(f"budget {budget} GFLOPs is below the cost of the first exit ({float(cost[0]):.4g})")
    best = _best_within(_operating_points(exit_logits, labels, cost, qs), budget)
    return best["thresholds"]


def even_budgets(gflops_per_exit, count: int) -> List[float]:
    """`count` budgets evenly spaced from the first exit's cost to the last's, in float64, the ends
    exactly the two costs (a rounded end could fall below the first exit and be infeasible)."""
    cost = torch.as_tensor(gflops_per_exit, dtype=torch.float64).flatten()
    if count < 1:
        raise ValueError(f"the number of budgets must be >= 1, got {count}")
    if count == 1:
        return [float(cost[-1])]
    budgets = torch.linspace(float(cost[0]), float(cost[-1]), count, dtype=torch.float64).tolist()
    budgets[0], budgets[-1] = float(cost[0]), float(cost[-1])
    return budgets


def budget_curve(
    exit_logits: torch.Tensor,
    labels: torch.Tensor,
    gflops_per_exit,
    budgets: Optional[Sequence[float]] = None,
    qs: Sequence[float] = DEFAULT_Q,
) -> List[Dict]:
    """Accuracy vs GFLOPs: one dict per budget with keys budget, gflops (achieved mean), accuracy
    (top-1, or mAP for multi-hot labels), thresholds (list), exit_fractions. Default budgets: 20
    evenly spaced from the first exit's cost to the last's."""
    cost = _check(exit_logits, labels, gflops_per_exit)
    if budgets is None:
        budgets = even_budgets(cost, 20)
    points = _operating_points(exit_logits, labels, cost, qs)
    curve = []
    for budget in budgets:
        best = _best_within(points, float(budget))
        if best is None:
            raise ValueError(f"budget {budget} GFLOPs is below the cost of the first exit ({float(cost[0]):.4g})")
        curve.append({**best, "budget": float(budget), "thresholds": best["thresholds"].tolist()})
    return curve
