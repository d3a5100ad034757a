"""Input builders for the cube-crop op tests (and benchmarks: one source of truth).

Conventions follow docs/design.md ("Coordinate convention"): a cube of size D centred at c starts at
s = c - D/2 (index space), so placing a cube means choosing s per axis and
setting c = s + D/2.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

# Memory layouts a kernel must read correctly (it may not assume contiguity).
LAYOUTS = ("contiguous", "channels_last_3d", "permuted", "sliced")
# Where a cube sits relative to the video along each axis.
PLACEMENTS = ("inside", "border", "outside", "any")


def _randn(shape, dtype, device, generator):
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=torch.float64, generator=generator).to(dtype=dtype, device=device)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(low, high + 1, shape, dtype=torch.int64, generator=generator).to(dtype=dtype, device=device)


def make_video(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    device="cpu",
    layout: str = "contiguous",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """A random (N, C, T, H, W) video with the given memory layout.

    "permuted": H and W swapped in memory (as torchvision's non-contiguous tests);
    "sliced": a strided view with a storage offset (every other W column of a larger tensor);
    "channels_last_3d": torch.channels_last_3d memory format.
    Float videos are standard normal; integer ones uniform in their range (at most +-1000).
    """
    n, c, t, h, w = (int(s) for s in shape)
    if layout == "contiguous":
        return _randn((n, c, t, h, w), dtype, device, generator)
    if layout == "channels_last_3d":
        return _randn((n, c, t, h, w), dtype, device, generator).contiguous(memory_format=torch.channels_last_3d)
    if layout == "permuted":
        return _randn((n, c, t, w, h), dtype, device, generator).transpose(3, 4)
    if layout == "sliced":
        return _randn((n, c + 1, t, h, 2 * w + 1), dtype, device, generator)[:, 1:, :, :, 1::2]
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _starts_for(placement: str, size: int, extent: int, count: int, generator) -> torch.Tensor:
    """`count` cube starts s = c - D/2 along one axis, in float64."""
    u = torch.rand(count, dtype=torch.float64, generator=generator)
    side = torch.rand(count, generator=generator) < 0.5
    if placement == "inside":
        # The whole window [s, s + D] (both taps of every voxel) inside [0, E - 1].
        return u * max(extent - size - 1, 0)
    if placement == "border":
        # The cube straddles an edge: some taps in, some out.
        low = -size + u * size  # s in [-D, 0)
        high = extent - size + u * size  # s in [E - D, E)
        return torch.where(side, low, high)
    if placement == "outside":
        # Every tap outside: s + D <= -1 (last hi tap at s + D) or s >= E.
        low = -size - 1 - 3 * u
        high = extent + 3 * u
        return torch.where(side, low, high)
    if placement == "any":
        return -size - 2 + u * (extent + 2 * size + 4)
    raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


def away_from_integer(starts: torch.Tensor, margin: float) -> torch.Tensor:
    """Map each start's fractional part into [margin, 1 - margin].

    The centre gradient jumps where c - D/2 crosses an integer (the taps change),
    so finite differences there are meaningless.
    """
    floor = torch.floor(starts)
    return floor + margin + (starts - floor) * (1 - 2 * margin)


def make_centers(
    n: int,
    k: int,
    extents: Sequence[int],
    size: Sequence[int],
    placement="any",
    dtype: torch.dtype = torch.float64,
    device="cpu",
    generator: Optional[torch.Generator] = None,
    margin: Optional[float] = None,
    integer_starts: bool = False,
) -> torch.Tensor:
    """(N, K, 3) centres (t, y, x). `placement` is one name or one per axis.

    margin: keep c - D/2 at least this far from an integer (for finite differences).
    integer_starts: put every cube at an integer start (an exact slice).
    """
    placements = [placement] * 3 if isinstance(placement, str) else list(placement)
    axes = []
    for axis in range(3):
        starts = _starts_for(placements[axis], int(size[axis]), int(extents[axis]), n * k, generator)
        if integer_starts:
            starts = torch.floor(starts)
        elif margin is not None:
            starts = away_from_integer(starts, margin)
        axes.append(starts + int(size[axis]) / 2)
    return torch.stack(axes, dim=-1).reshape(n, k, 3).to(dtype=dtype, device=device)


def overlapping_centers(
    n: int, k: int, extents: Sequence[int], size: Sequence[int], dtype=torch.float64, device="cpu", generator=None
) -> torch.Tensor:
    """K cubes per video within one voxel of each other: their video gradients overlap."""
    first = make_centers(n, 1, extents, size, "inside", torch.float64, "cpu", generator)
    jitter = torch.rand(n, k, 3, dtype=torch.float64, generator=generator) - 0.5
    return (first + jitter).to(dtype=dtype, device=device)


def make_features_case(m: int, channels: int, cube_cells: Sequence[int], dtype=torch.float64, generator=None):
    """Features (M, C, Tf+1, Hf+1, Wf+1) of enlarged crops, plus centres and origins in pixels.

    Uses stride (1, 4, 4): the centre sits between origin + D/2 and origin + D/2 + s
    (pixels), which is where enlarged_window puts it.
    """
    stride = torch.tensor([1.0, 4.0, 4.0], dtype=torch.float64)
    cells = torch.tensor([float(c) for c in cube_cells], dtype=torch.float64)
    features = make_video((m, channels, *(int(c) + 1 for c in cube_cells)), dtype, generator=generator)
    origin = torch.randint(0, 20, (m, 3), generator=generator).to(torch.float64)
    # In cells, in [0.01, 0.99]: off the integers where the centre gradient jumps.
    offset = 0.01 + 0.98 * torch.rand(m, 3, dtype=torch.float64, generator=generator)
    centers = origin + (cells / 2 + offset) * stride
    return features, centers, origin, stride
