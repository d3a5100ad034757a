"""The full-video baseline ("TSM+" in the paper): the same fG and fL, no cubes, no policy."""
from __future__ import annotations

import torch
from torch import nn

from adafocus.model.config import ModelConfig
from adafocus.model.glance import GlanceEncoder, glance_frame_indices
from adafocus.model.local import LocalEncoder
from adafocus.model.losses import classification_loss
from adafocus.model.video_checks import check_video


class FullVideoBaseline(nn.Module):
    """fG's glance plus fL at full resolution on config.full_video_frames uniformly sampled frames
    (default the glance's count, as the paper's TSM+: 8 frames for fG and 8 for fL on Sth-Sth);
    the pooled features of both are classified by one linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.frames = config.full_video_frames
        self.glance = GlanceEncoder(config)
        self.local = LocalEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.glance.out_channels + self.local.out_channels, config.num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) -> logits (B, classes)."""
        check_video(video)
        if video.shape[2] < self.frames:
            raise ValueError(f"video has {video.shape[2]} frames; the baseline runs fL on {self.frames} "
                             "(model.baseline_frames, default model.glance_frames)")
        glance = self.glance(video).mean(dim=(2, 3, 4))
        frames = video.index_select(2, glance_frame_indices(video.shape[2], self.frames, video.device))
        local = self.local.pool(self.local.encode(frames))
        return self.head(self.dropout(torch.cat((local, glance), dim=1)))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, target, self.config.loss)
