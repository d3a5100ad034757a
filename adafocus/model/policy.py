"""Policy pi: where the M cubes go, decided in one shot from the glance of the whole video.

Non-recurrent (paper section 3.2): a 3D conv stack over stopgrad(fG maps) of all G
glance frames. The default head (docs/design.md, "Model") emits M heat maps over
the glance grid (G x h x w); a softmax over positions and the expected position
(soft-argmax) give each cube's center in video frames/pixels. The grid's cells are
spread evenly over the valid center range [D/2, E - D/2] per axis (first cell on D/2,
last on E - D/2), so every center in that range is reachable, none outside it, and no
clamp cuts the gradient: it is non-zero wherever the heat map puts mass off the mean.
The "sigmoid" head, c = D/2 + sigmoid(z) (E - D) from the flattened map, is an option;
it tends to collapse onto the video borders.

Centers are (t, y, x) in the cubecrop convention: voxel i spans [i, i+1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from adafocus.model.config import ModelConfig


def bound_values(cube_size: Sequence[int], video_size: Sequence[int]) -> tuple:
    """Per-axis center limits [D/2, E - D/2] that keep a cube of cube_size inside video_size (T, H, W),
    as two lists of floats."""
    cube = [float(d) for d in cube_size]
    extent = [float(e) for e in video_size]
    if any(d > e for d, e in zip(cube, extent)):
        raise ValueError(f"cube_size {tuple(cube_size)} does not fit in the video's (T, H, W) = {tuple(video_size)}")
    return [d / 2 for d in cube], [e - d / 2 for d, e in zip(cube, extent)]


def center_bounds(cube_size: Sequence[int], video_size: Sequence[int], device=None) -> tuple:
    """bound_values as two (3,) tensors (lower, upper)."""
    lower, upper = bound_values(cube_size, video_size)
    return torch.tensor(lower, device=device), torch.tensor(upper, device=device)


def clamp_centers(centers: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int]) -> torch.Tensor:
    lower, upper = center_bounds(cube_size, video_size, centers.device)
    return torch.maximum(torch.minimum(centers, upper.to(centers.dtype)), lower.to(centers.dtype))


def random_centers(
    batch: int,
    num_cubes: int,
    cube_size: Sequence[int],
    video_size: Sequence[int],
    device=None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Uniformly random centers (B, M, 3) with every cube inside the video (the random-policy ablation)."""
    lower, upper = center_bounds(cube_size, video_size, device)
    u = torch.rand(batch, num_cubes, 3, device=device, generator=generator)
    return lower + u * (upper - lower)


def center_grid(cube_size: Sequence[int], video_size: Sequence[int], grid: Sequence[int], device=None) -> tuple:
    """The centers the glance grid's cells stand for: per axis (t, y, x), n cells evenly from D/2 to
    E - D/2 (one cell: the middle). Cell order follows the glance (frame g, row j, column i), so
    the heat map's cells keep their place in the video; soft-argmax then stays inside the range."""
    axes = []
    for low, high, n in zip(*bound_values(cube_size, video_size), grid):
        if n == 1:
            axes.append(torch.full((1,), (low + high) / 2, device=device))
        else:
            axes.append(torch.linspace(low, high, int(n), device=device))
    return tuple(axes)


def heat_map_centers(heat: torch.Tensor, cube_size: Sequence[int], video_size: Sequence[int]) -> torch.Tensor:
    """heat (B, M, G, h, w) logits over the glance grid -> centers (B, M, 3) in [D/2, E - D/2]."""
    centers = soft_argmax(heat, center_grid(cube_size, video_size, heat.shape[2:], heat.device))
    # A convex combination of in-range cells: the clamp only removes float rounding, and passes
    # the gradient through unchanged.
    return centers + (clamp_centers(centers, cube_size, video_size) - centers).detach()


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


class CubePolicy(nn.Module):
    """pi: glance maps (B, Cg, G, h, w) -> cube centers (B, M, 3) in video frames/pixels."""

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
            return heat_map_centers(self.head(hidden), self.cube_size, video_size)
        z = self.head(hidden.flatten(1)).float().view(-1, self.num_cubes, 3)
        lower, upper = center_bounds(self.cube_size, video_size, z.device)
        return lower + torch.sigmoid(z) * (upper - lower)


def choose_centers(
    policy: CubePolicy, choice: str, glance_maps: torch.Tensor, video_size: Sequence[int]
) -> torch.Tensor:
    """(B, M, 3) centers for a policy choice (adafocus.model.config.POLICIES): the policy's
    ("learned"), uniformly random ("random", the policy is not run), or the policy on one
    axis group and random on the other ("learned_t": t learned; "learned_xy": y, x learned)."""
    b, m, cube = glance_maps.shape[0], policy.num_cubes, policy.cube_size
    if choice == "random":
        return random_centers(b, m, cube, video_size, device=glance_maps.device)
    learned = policy(glance_maps, video_size)
    if choice == "learned":
        return learned
    random = random_centers(b, m, cube, video_size, device=glance_maps.device)
    if choice == "learned_t":
        return torch.cat((learned[..., :1], random[..., 1:]), dim=-1)
    if choice == "learned_xy":
        return torch.cat((random[..., :1], learned[..., 1:]), dim=-1)
    raise ValueError(f"policy must be one of learned, random, learned_t, learned_xy; got {choice!r}")
