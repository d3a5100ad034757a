"""Pure-PyTorch reference of the cube-crop ops: the oracle every kernel is tested against.

Coordinate convention (docs/design.md, "Coordinate convention"), per axis in tensor order (T, H, W):
output voxel i of a cube of size D centred at c reads position c - D/2 + i, i.e.
    out[i] = (1 - a) * V[f + i] + a * V[f + i + 1],  f = floor(c - D/2), a = c - D/2 - f,
except that a cube ending exactly at the upper edge (c - D/2 = E - D, an integer >= 1)
takes f = E - D - 1, a = 1 (same values; its derivative then reads inside the input).

Each axis is written as a small interpolation matrix A (D x E) with two
non-zeros per row, and the crop is the contraction of the video with the three
matrices. Autograd through that contraction gives both gradients exactly; in
float64 the reference is exact up to rounding.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from cubecrop.geometry import integer_starts

PADDING_MODES = ("zeros", "border")


def _axis_interpolation_matrix(center: torch.Tensor, size: int, extent: int, padding_mode: str) -> torch.Tensor:
    """(..., ) centres -> (..., size, extent) rows of trilinear weights along one axis."""
    start = center - size / 2
    # Same clamp as csrc/cubecrop_math.h: far outside, every tap misses the input
    # anyway, and the clamp keeps the integer cast finite.
    start = start.clamp(-(size + 2), extent + 1)
    floor = torch.floor(start)
    # A cube that ends exactly at the upper edge (integer start E - D, E > D) takes the
    # cell below with frac = 1: same values, but the derivative is the one from inside
    # the input, not from the padding beyond it (docs/ops.md, "Integer starts").
    at_upper_edge = (floor == start) & (floor + size == extent) & (floor >= 1)
    floor = torch.where(at_upper_edge, floor - 1, floor)
    frac = (start - floor).unsqueeze(-1)  # gradient flows to the centre through frac
    steps = torch.arange(size, device=center.device)
    lo = floor.long().unsqueeze(-1) + steps  # (..., size)
    hi = lo + 1
    matrix = center.new_zeros(center.shape + (size, extent + 1))  # last column collects padding
    for index, weight in ((lo, 1 - frac), (hi, frac)):
        if padding_mode == "border":
            index = index.clamp(0, extent - 1)
        else:
            index = torch.where((index >= 0) & (index < extent), index, torch.full_like(index, extent))
        matrix = matrix.scatter_add(-1, index.unsqueeze(-1), weight.unsqueeze(-1).expand(index.shape + (1,)))
    return matrix[..., :extent]


def crop_cubes(video: torch.Tensor, centers: torch.Tensor, size: Sequence[int], padding_mode: str = "zeros") -> torch.Tensor:
    """video (N, C, T, H, W), centers (N, K, 3) -> (N, K, C, Dt, Dh, Dw), differentiable in both."""
    dt, dh, dw = size
    n, c, t, h, w = video.shape
    dtype = torch.promote_types(video.dtype, centers.dtype)
    at = _axis_interpolation_matrix(centers[..., 0].to(dtype), dt, t, padding_mode)  # (N, K, Dt, T)
    ay = _axis_interpolation_matrix(centers[..., 1].to(dtype), dh, h, padding_mode)  # (N, K, Dh, H)
    ax = _axis_interpolation_matrix(centers[..., 2].to(dtype), dw, w, padding_mode)  # (N, K, Dw, W)
    v = video.to(dtype)
    # Contract the largest axis first to keep intermediates small.
    out = torch.einsum("nctyx,nkwx->nkctyw", v, ax)
    out = torch.einsum("nkctyw,nkhy->nkcthw", out, ay)
    out = torch.einsum("nkcthw,nkdt->nkcdhw", out, at)
    return out.to(video.dtype)


def normalisation_dtype(video_dtype: torch.dtype, out_dtype: torch.dtype) -> torch.dtype:
    """The dtype (x - mean) / std is computed in by every backend: float64 when the video or
    the output is float64, else float32 (then rounded once to out_dtype)."""
    return torch.float64 if torch.float64 in (video_dtype, out_dtype) else torch.float32


def crop_cubes_int(
    video: torch.Tensor,
    centers: torch.Tensor,
    size: Sequence[int],
    *,
    channels_last: bool = False,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
    out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Integer test-time crop by slicing; optional per-channel (x - mean) / std, true division.

    No gradient: the output never records autograd history. Empty N, K or C give an
    empty output.
    """
    video = video.detach()
    if channels_last:
        video = video.permute(0, 4, 1, 2, 3)
    n, c, t, h, w = video.shape
    dt, dh, dw = size
    k = centers.shape[1]
    normalised = mean is not None or std is not None
    if out_dtype is None:
        out_dtype = torch.float32 if normalised else video.dtype
    if n * k == 0:
        return video.new_empty((n, k, c, dt, dh, dw), dtype=out_dtype)
    starts = integer_starts(centers, size, (t, h, w)).cpu()
    cubes = []
    for i in range(n):
        for j in range(k):
            st, sy, sx = starts[i, j].tolist()
            cubes.append(video[i, :, st : st + dt, sy : sy + dh, sx : sx + dw])
    out = torch.stack(cubes).reshape(n, k, c, dt, dh, dw)
    if not normalised:
        return out.to(out_dtype)
    compute = normalisation_dtype(video.dtype, out_dtype)
    x = out.to(compute)
    if mean is not None:
        x = x - mean.to(compute).view(1, 1, c, 1, 1, 1)
    if std is not None:
        x = x / std.to(compute).view(1, 1, c, 1, 1, 1)
    return x.to(out_dtype)
