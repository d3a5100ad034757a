"""The cube-crop benchmark workloads and the baselines they are compared with.

Importable by tests (`from benchmarks.workloads import ...`) so the benchmark's
inputs and its grid_sample / slice baselines are checked to compute the same
crop as cubecrop.

Workloads:
  tsm         N=8 videos, C=3, T=16, 224x224; K=2 cubes of 12x128x128
  long_video  N=8, C=3, T=16, 224x224; K=16 cubes of 1x128x128
  feature     deep-feature trick: M=16 enlarged crops' features (C=2048,
              13x5x5) -> 12x4x4 cubes via cubecrop.feature_offset_crop
  int         crop_cubes_int of a uint8 channels-last video (N, T, H, W, C)
              with fused mean/std, same shapes as tsm
`quick=True` gives small versions of each for a smoke test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

import cubecrop

WORKLOADS = ("tsm", "long_video", "feature", "int")
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class CropWorkload:
    """video (N, C, T, H, W), centers (N, K, 3), cube size (Dt, Dh, Dw)."""

    name: str
    video: torch.Tensor
    centers: torch.Tensor
    size: tuple


@dataclass
class FeatureWorkload:
    """features (M, C, Tf+1, Hf+1, Wf+1), centers/origin (M, 3) in pixels, stride (t, y, x)."""

    name: str
    features: torch.Tensor
    centers: torch.Tensor
    origin: torch.Tensor
    stride: tuple

    @property
    def offsets(self) -> torch.Tensor:
        """The centres in feature cells, as (M, 1, 3) crop_cubes centres."""
        stride = torch.tensor(self.stride, dtype=self.centers.dtype, device=self.centers.device)
        return ((self.centers - self.origin.to(self.centers.dtype)) / stride).unsqueeze(1)

    @property
    def size(self) -> tuple:
        return tuple(e - 1 for e in self.features.shape[2:])


@dataclass
class IntWorkload:
    """video (N, T, H, W, C) uint8 (channels last), centers (N, K, 3) float64, mean/std (C,)."""

    name: str
    video: torch.Tensor
    centers: torch.Tensor
    size: tuple
    mean: torch.Tensor
    std: torch.Tensor


def random_centers(n: int, k: int, size: Sequence[int], extents: Sequence[int], generator: torch.Generator,
                   dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(n, k, 3) centres with every cube inside the video and a fractional start (the trilinear case)."""
    lo = torch.tensor([d / 2 for d in size], dtype=torch.float64)
    hi = torch.tensor([e - d / 2 for d, e in zip(size, extents)], dtype=torch.float64)
    centers = lo + (hi - lo) * torch.rand((n, k, 3), generator=generator, dtype=torch.float64)
    return centers.to(dtype=dtype, device=device)


def crop_workload(name: str, n: int, c: int, extents: Sequence[int], k: int, size: Sequence[int], device="cpu",
                  dtype=torch.float32, seed: int = 0) -> CropWorkload:
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn((n, c) + tuple(extents), generator=gen).to(dtype=dtype, device=device)
    center_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    centers = random_centers(n, k, size, extents, gen, center_dtype, device)
    return CropWorkload(name, video, centers, tuple(size))


def tsm_workload(device="cpu", quick=False, dtype=torch.float32) -> CropWorkload:
    if quick:
        return crop_workload("tsm", 2, 3, (8, 56, 56), 2, (6, 32, 32), device, dtype)
    return crop_workload("tsm", 8, 3, (16, 224, 224), 2, (12, 128, 128), device, dtype)


def long_video_workload(device="cpu", quick=False, dtype=torch.float32) -> CropWorkload:
    if quick:
        return crop_workload("long_video", 2, 3, (8, 56, 56), 8, (1, 32, 32), device, dtype)
    return crop_workload("long_video", 8, 3, (16, 224, 224), 16, (1, 128, 128), device, dtype)


def feature_workload(device="cpu", quick=False, dtype=torch.float32, seed: int = 0) -> FeatureWorkload:
    """fL features of enlarged crops (cube 12x128x128, stride (1, 32, 32): 13x5x5 cells -> 12x4x4)."""
    m, c = (4, 64) if quick else (16, 2048)
    cells, stride, video = (13, 5, 5), (1, 32, 32), (16, 224, 224)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn((m, c) + cells, generator=gen).to(dtype=dtype, device=device)
    cube = [(e - 1) * s for e, s in zip(cells, stride)]
    window = [(e) * s for e, s in zip(cells, stride)]
    centers = random_centers(m, 1, cube, video, gen, torch.float64)[:, 0]
    wins = cubecrop.enlarged_window(centers, cube, stride, video)
    # enlarged_window puts the cube at a feature offset in [0, 1] cells, the trick's regime.
    assert list(wins.size) == window
    return FeatureWorkload("feature", features, centers.to(torch.float32).to(device), wins.origin.to(device), stride)


def int_workload(device="cpu", quick=False, seed: int = 0) -> IntWorkload:
    n, t, h, w, k, size = (2, 8, 56, 56, 2, (6, 32, 32)) if quick else (8, 16, 224, 224, 2, (12, 128, 128))
    gen = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (n, t, h, w, 3), generator=gen, dtype=torch.uint8).to(device)
    centers = random_centers(n, k, size, (t, h, w), gen, torch.float64, device)
    mean = torch.tensor(IMAGENET_MEAN, device=device)
    std = torch.tensor(IMAGENET_STD, device=device)
    return IntWorkload("int", video, centers, size, mean, std)


# ---------------------------------------------------------------- baselines


def cube_grid(centers: torch.Tensor, size: Sequence[int], extents: Sequence[int]) -> torch.Tensor:
    """grid_sample grid (N, K*Dt, Dh, Dw, 3) reading the same positions as crop_cubes.

    Output voxel i of a cube reads index-space position s_i = c - D/2 + i
    (voxel j's centre at j + 1/2), i.e. grid_sample's unnormalised coordinate
    s_i (voxel j at j); with align_corners=False that is g = (2 s_i + 1) / E - 1.
    """
    n, k, _ = centers.shape
    axes = []
    for axis, (d, e) in enumerate(zip(size, extents)):
        steps = torch.arange(d, dtype=centers.dtype, device=centers.device)
        pos = centers[..., axis, None] - d / 2 + steps  # (N, K, D)
        axes.append((2 * pos + 1) / e - 1)
    gt, gy, gx = axes
    dt, dh, dw = size
    grid = torch.stack(
        torch.broadcast_tensors(
            gx[:, :, None, None, :].expand(n, k, dt, dh, dw),
            gy[:, :, None, :, None],
            gt[:, :, :, None, None],
        ),
        dim=-1,
    )
    return grid.reshape(n, k * dt, dh, dw, 3)


def grid_sample_crop(video: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """The generic way: trilinear grid_sample; returns (N, C, K*Dt, Dh, Dw) (grid_sample's own layout)."""
    return F.grid_sample(video, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def grid_sample_as_cubes(out: torch.Tensor, k: int) -> torch.Tensor:
    """grid_sample's (N, C, K*Dt, Dh, Dw) as crop_cubes' (N, K, C, Dt, Dh, Dw)."""
    n, c, kdt, dh, dw = out.shape
    return out.view(n, c, k, kdt // k, dh, dw).transpose(1, 2)


def integer_starts(centers: torch.Tensor, size: Sequence[int], extents: Sequence[int]) -> list:
    """Per cube (t, y, x) integer starts of the nearest integer cube, as Python ints."""
    return cubecrop.integer_starts(centers, size, extents).tolist()


def slice_cubes(video: torch.Tensor, starts: list, size: Sequence[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The memory floor: copy the integer cubes (N, K, C, Dt, Dh, Dw) out of the video by slicing."""
    n, c = video.shape[:2]
    k = len(starts[0])
    dt, dh, dw = size
    if out is None:
        out = video.new_empty((n, k, c, dt, dh, dw))
    for i in range(n):
        for j in range(k):
            t, y, x = starts[i][j]
            out[i, j].copy_(video[i, :, t : t + dt, y : y + dh, x : x + dw])
    return out


def slice_cubes_backward(grad_out: torch.Tensor, video_shape: Sequence[int], starts: list,
                         size: Sequence[int]) -> torch.Tensor:
    """The backward floor: a zero video gradient with each cube's gradient added at its integer slice."""
    dt, dh, dw = size
    grad_video = grad_out.new_zeros(tuple(video_shape))
    for i in range(grad_out.shape[0]):
        for j, (t, y, x) in enumerate(starts[i]):
            grad_video[i, :, t : t + dt, y : y + dh, x : x + dw] += grad_out[i, j]
    return grad_video


def convert_normalise_slice(video_cl: torch.Tensor, starts: list, size: Sequence[int], mean: torch.Tensor,
                            std: torch.Tensor) -> torch.Tensor:
    """The usual test-time pipeline: whole video to float, normalise, then slice the cubes."""
    video = video_cl.permute(0, 4, 1, 2, 3).float()
    c = video.shape[1]
    video = (video - mean.view(1, c, 1, 1, 1)) / std.view(1, c, 1, 1, 1)
    return slice_cubes(video, starts, size)


def slice_convert_normalise(video_cl: torch.Tensor, starts: list, size: Sequence[int], mean: torch.Tensor,
                            std: torch.Tensor) -> torch.Tensor:
    """A smarter unfused pipeline: slice the uint8 cubes first, then convert and normalise them."""
    cubes = slice_cubes(video_cl.permute(0, 4, 1, 2, 3), starts, size)
    c = cubes.shape[2]
    return (cubes.float() - mean.view(1, 1, c, 1, 1, 1)) / std.view(1, 1, c, 1, 1, 1)
