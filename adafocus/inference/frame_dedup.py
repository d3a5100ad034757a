"""Frame-wise cubes (Dt = 1) at inference: each cube takes a frame no earlier cube took.

Paper section 4.1: "we remove the frames which have been included by previous cubes".
"""
from __future__ import annotations

import torch

import cubecrop


def frame_of_center(center_t: torch.Tensor, cube_frames: int, num_frames: int) -> torch.Tensor:
    """The first frame crop_cubes_int reads for a temporal center (cubecrop.integer_starts' rule)."""
    centers = torch.zeros(center_t.shape + (3,), dtype=torch.float64, device=center_t.device)
    centers[..., 0] = center_t.double()
    return cubecrop.integer_starts(centers, (cube_frames, 1, 1), (num_frames, 1, 1))[..., 0]


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
