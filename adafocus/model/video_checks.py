"""Argument checks shared by the networks' entry points."""
from __future__ import annotations

from typing import Sequence

import torch


def check_video(video: torch.Tensor) -> None:
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a 5-D tensor (B, C, T, H, W), got {shape}")
    if not video.is_floating_point():
        raise TypeError(f"video must be a normalised floating-point tensor, got {video.dtype}")


def video_dims(video_shape: Sequence[int]) -> tuple:
    """(C, T, H, W) from a (B, C, T, H, W) or (C, T, H, W) shape."""
    dims = tuple(int(d) for d in video_shape)
    if len(dims) == 5:
        dims = dims[1:]
    if len(dims) != 4:
        raise ValueError(f"video_shape must be (B, C, T, H, W) or (C, T, H, W), got {tuple(video_shape)}")
    return dims
