"""The full-video baseline ("TSM+" in the paper): the same fG and fL, no cubes, no policy."""
from __future__ import annotations

import torch
from torch import nn

from adafocus.model.config import ModelConfig
from adafocus.model.glance import GlanceEncoder
from adafocus.model.local import LocalEncoder
from adafocus.model.losses import classification_loss
from adafocus.model.video_checks import check_video


class FullVideoBaseline(nn.Module):
    """fL on every frame at full resolution plus fG's glance; the pooled features of both are
    classified by one linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.glance = GlanceEncoder(config)
        self.local = LocalEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.glance.out_channels + self.local.out_channels, config.num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) -> logits (B, classes)."""
        check_video(video)
        glance = self.glance(video).mean(dim=(2, 3, 4))
        local = self.local.pool(self.local.encode(video))
        return self.head(self.dropout(torch.cat((local, glance), dim=1)))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, target, self.config.loss)
