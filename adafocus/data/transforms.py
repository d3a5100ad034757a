"""Clip-level augmentation: one crop (and flip) for every frame of a clip.

The model derives both the glance and the local cubes from the same
full-resolution clip, so cropping the clip once gives glance and local the
same crop by construction.

Clips enter as uint8 (T, H, W, 3) numpy arrays and leave as normalised float
(3, T, S, S) tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ClipTransform:
    """TSN-style training augmentation or evaluation resize + center crop.

    train: multi-scale crop (side = scale * short side, scale from `scales`,
    aspect jitter limited to neighbouring scales, position from 5 fixed
    places: corners and center), resized to `size`; horizontal flip with
    probability 0.5 unless `flip` is False (Something-Something: direction
    matters). eval: resize the short side to `size * 256 / 224`, center crop.
    """

    size: int = 224
    train: bool = True
    flip: bool = True
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66)
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __call__(self, clip: np.ndarray, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise ValueError(f"clip must be (T, H, W, 3), got shape {clip.shape}")
        video = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float().div_(255)  # (3, T, H, W)
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            video = self._multi_scale_crop(video, rng)
            if self.flip and rng.uniform() < 0.5:
                video = video.flip(-1)
        else:
            video = self._center_crop(video)
        mean = torch.tensor(self.mean, dtype=video.dtype).view(3, 1, 1, 1)
        std = torch.tensor(self.std, dtype=video.dtype).view(3, 1, 1, 1)
        return (video - mean) / std

    def _resize(self, video: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if video.shape[-2:] == (height, width):
            return video
        # frames as the batch: (T, 3, H, W)
        frames = F.interpolate(video.transpose(0, 1), size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return frames.transpose(0, 1).contiguous()

    def _multi_scale_crop(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        height, width = video.shape[-2:]
        base = min(height, width)
        sides = [int(base * s) for s in self.scales]
        pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= 1]
        crop_h, crop_w = pairs[rng.integers(len(pairs))]
        dy, dx = height - crop_h, width - crop_w
        y, x = [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)][rng.integers(5)]
        return self._resize(video[..., y : y + crop_h, x : x + crop_w], self.size, self.size)

    def _center_crop(self, video: torch.Tensor) -> torch.Tensor:
        height, width = video.shape[-2:]
        short = int(round(self.size * 256 / 224))
        if height <= width:
            new_h, new_w = short, max(short, int(round(width * short / height)))
        else:
            new_h, new_w = max(short, int(round(height * short / width))), short
        video = self._resize(video, new_h, new_w)
        y, x = (new_h - self.size) // 2, (new_w - self.size) // 2
        return video[..., y : y + self.size, x : x + self.size]
