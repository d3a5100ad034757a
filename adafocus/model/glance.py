"""Glance encoder fG: a cheap look at G uniformly sampled, downsized frames of the whole video."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adafocus.model.backbones import ClipEncoder
from adafocus.model.config import ModelConfig


def glance_frame_indices(num_frames: int, glance_frames: int, device=None) -> torch.Tensor:
    """Uniform sampling: glance frame g is video frame floor((g + 1/2) * T / G) (the middle of its segment)."""
    g = torch.arange(glance_frames, device=device, dtype=torch.float64)
    return torch.floor((g + 0.5) * num_frames / glance_frames).long().clamp_(max=num_frames - 1)


def make_glance_input(video: torch.Tensor, glance_frames: int, resolution: int) -> torch.Tensor:
    """video (B, C, T, H, W) -> (B, C, G, r, r): uniform frames, area-like (antialiased bilinear) downsizing."""
    b, c, t, h, w = video.shape
    frames = video.index_select(2, glance_frame_indices(t, glance_frames, video.device))
    if (h, w) == (resolution, resolution):
        return frames
    flat = frames.transpose(1, 2).reshape(b * glance_frames, c, h, w)
    resized = F.interpolate(flat, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return resized.view(b, glance_frames, c, resolution, resolution).transpose(1, 2)


class GlanceEncoder(nn.Module):
    """fG: video (B, C, T, H, W) -> feature maps (B, Cg, G, h, w) on the glance grid."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.frames = config.glance_frames
        self.resolution = config.glance_resolution
        self.encoder = ClipEncoder.from_config(config.glance, config.tsm_fold_div)

    @property
    def out_channels(self) -> int:
        return self.encoder.out_channels

    def grid_size(self) -> tuple:
        """(G, h, w) of the feature maps."""
        side = -(-self.resolution // self.encoder.stride)
        return (self.frames, side, side)

    def encode(self, glance_input: torch.Tensor) -> torch.Tensor:
        return self.encoder(glance_input)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(make_glance_input(video, self.frames, self.resolution))
