"""Policy pi: where the M cubes go, decided in one shot from the glance of the whole video.

Non-recurrent (paper section 3.2): a 3D conv stack over stopgrad(fG maps) of all G
glance frames. The default head (DESIGN.md section 3, validated in the section-5
trial) emits M heat maps over the glance grid (G x h x w); a softmax over positions
and the expected position (soft-argmax) give each cube's centre in video
frames/pixels, clamped to [D/2, E - D/2] so every cube lies inside the video. The
"sigmoid" head, c = D/2 + sigmoid(z) (E - D) from the flattened map, is kept as an
option: it collapsed onto the video borders in the trial.

Centres are (t, y, x) in the cubecrop convention: voxel i spans [i, i+1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from adafocus.glance import glance_frame_indices
from adafocus.model_config import ModelConfig


def centre_bounds(cube_size: Sequence[int], video_size: Sequence[int], device=None) -> tuple:
    """Per-axis (lower, upper) centre limits that keep a cube of cube_size inside video_size (T, H, W)."""
    cube = [float(d) for d in cube_size]
    extent = [float(e) for e in video_size]
    if any(d > e for d, e in zip(cube, extent)):
        raise ValueError(f"cube_size {tuple(cube_size)} does not fit in the video's (T, H, W) = {tuple(video_size)}")
    lower = torch.tensor([d / 2 for d in cube], device=device)
    upper = torch.tensor([e - d / 2 for d, e in zip(cube, extent)], device=device)
    return lower, upper


def clamp_centres(centres: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int]) -> torch.Tensor:
    lower, upper = centre_bounds(cube_size, video_size, centres.device)
    return torch.maximum(torch.minimum(centres, upper.to(centres.dtype)), lower.to(centres.dtype))


def random_centres(
    batch: int,
    num_cubes: int,
    cube_size: Sequence[int],
    video_size: Sequence[int],
    device=None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Uniformly random centres (B, M, 3) with every cube inside the video (the random-policy ablation)."""
    lower, upper = centre_bounds(cube_size, video_size, device)
    u = torch.rand(batch, num_cubes, 3, device=device, generator=generator)
    return lower + u * (upper - lower)


def glance_grid_coordinates(video_size: Sequence[int], grid: Sequence[int], device=None) -> tuple:
    """Video coordinates of the glance grid's cells: (t of each glance frame, y of each row, x of each column).

    A glance frame stands at the centre of the video frame it was sampled from; a
    feature cell at the centre of the pixels it covers ((j + 1/2) * H / h).
    """
    t_frames, height, width = video_size
    g, h, w = grid
    t = glance_frame_indices(int(t_frames), g, device).float() + 0.5
    y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (float(height) / h)
    x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (float(width) / w)
    return t, y, x


def soft_argmax(heat: torch.Tensor, coordinates: tuple) -> torch.Tensor:
    """heat (B, M, G, h, w) logits -> expected (t, y, x) (B, M, 3) under softmax over all positions."""
    b, m, g, h, w = heat.shape
    prob = torch.softmax(heat.float().reshape(b, m, -1), dim=-1).view(b, m, g, h, w)
    t, y, x = coordinates
    return torch.stack(
        (
            (prob.sum((3, 4)) * t).sum(-1),
            (prob.sum((2, 4)) * y).sum(-1),
            (prob.sum((2, 3)) * x).sum(-1),
        ),
        dim=-1,
    )


def centre_spread(centres: torch.Tensor) -> dict:
    """Std of the centres across the batch per axis, averaged over cubes: 0 means the policy collapsed."""
    if centres.shape[0] < 2:
        return {"t": 0.0, "y": 0.0, "x": 0.0}
    std = centres.detach().float().std(dim=0).mean(dim=0)
    return {"t": float(std[0]), "y": float(std[1]), "x": float(std[2])}


class CubePolicy(nn.Module):
    """pi: glance maps (B, Cg, G, h, w) -> cube centres (B, M, 3) in video frames/pixels."""

    def __init__(self, config: ModelConfig, in_channels: int, grid: Sequence[int]):
        super().__init__()
        hidden = config.policy_channels
        self.num_cubes = config.num_cubes
        self.cube_size = tuple(config.cube_size)
        self.head_kind = config.policy_head
        self.grid = tuple(grid)
        # The layout of the Uni-AdaFocus spatial policy (1x1x1 reduce, two 3x3x3), without its per-frame head.
        self.trunk = nn.Sequential(
            nn.Conv3d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
        )
        if self.head_kind == "heatmap":
            self.head = nn.Conv3d(hidden, self.num_cubes, 1)
        else:
            g, h, w = self.grid
            self.head = nn.Linear(hidden * g * h * w, 3 * self.num_cubes)

    def forward(self, glance_maps: torch.Tensor, video_size: Sequence[int]) -> torch.Tensor:
        # The policy never trains fG (stop-gradient, as in every AdaFocus version).
        hidden = self.trunk(glance_maps.detach())
        if tuple(hidden.shape[2:]) != self.grid:
            raise ValueError(f"glance maps have grid {tuple(hidden.shape[2:])}, the policy was built for {self.grid}")
        if self.head_kind == "heatmap":
            coordinates = glance_grid_coordinates(video_size, self.grid, hidden.device)
            centres = soft_argmax(self.head(hidden), coordinates)
            return clamp_centres(centres, self.cube_size, video_size)
        z = self.head(hidden.flatten(1)).float().view(-1, self.num_cubes, 3)
        lower, upper = centre_bounds(self.cube_size, video_size, z.device)
        return lower + torch.sigmoid(z) * (upper - lower)
