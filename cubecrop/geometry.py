"""Where an integer cube lies: the one rounding rule every integer crop and report uses.

A cube of size D centred at c starts at round(c - D/2) with halves rounded up,
clamped so the cube lies inside an axis of extent E: start in [0, E - D]. The
rule is applied in float64, so every caller (the reference, the CPU/CUDA/Triton
kernels, metrics, drawings) picks the same voxel for the same centre.
"""
from __future__ import annotations

from typing import Sequence

import torch


def integer_starts(centers: torch.Tensor, size: Sequence[int], extents: Sequence[int]) -> torch.Tensor:
    """First voxel (..., 3) long of each integer cube: floor(clamp(c - D/2, 0, E - D) + 1/2).

    centers (..., 3) as (t, y, x); size (Dt, Dh, Dw); extents (T, H, W) with D <= E per axis.
    """
    sizes = torch.tensor([float(d) for d in size], dtype=torch.float64, device=centers.device)
    upper = torch.tensor([float(e) for e in extents], dtype=torch.float64, device=centers.device) - sizes
    start = (centers.detach().double() - sizes / 2).clamp(min=torch.zeros_like(upper), max=upper)
    return torch.floor(start + 0.5).long()


def integer_windows(centers: torch.Tensor, size: Sequence[int], extents: Sequence[int]) -> torch.Tensor:
    """[start, end) per axis (..., 3, 2) long of each integer cube (see integer_starts)."""
    start = integer_starts(centers, size, extents)
    sizes = torch.tensor([int(d) for d in size], dtype=torch.long, device=centers.device)
    return torch.stack([start, start + sizes], dim=-1)
