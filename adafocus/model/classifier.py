"""Classifier fC: one linear head per exit over accumulated (max-pooled) features, with glance reuse.

The form the paper cites for fC (FrameExit [19], AdaFocusV2 [56]): every feature is first
embedded by Linear -> BN -> ReLU (one embedding for the glance, one shared by all cubes),
then accumulated by max-pooling over the cubes seen so far.

Exit 0 (the glance step, p0): z = embed_glance(g) of the pooled glance features g.
Exit t >= 1: [max over cubes 1..t of embed_local(pooled local features) ; z].
embed_width = 0 is the older form: no embedding, the pooled features themselves.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class FeatureEmbedding(nn.Module):
    """Linear -> BatchNorm -> ReLU on the last axis of (..., in_channels) features."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.linear = nn.Linear(in_channels, width, bias=False)  # the BN's shift is the bias
        self.norm = nn.BatchNorm1d(width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        flat = self.norm(self.linear(features.reshape(-1, features.shape[-1])))
        return torch.relu(flat).view(*lead, -1)


class ExitClassifier(nn.Module):
    def __init__(self, glance_channels: int, local_channels: int, num_cubes: int, num_classes: int,
                 dropout: float = 0.0, embed_width: int = 0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        if embed_width > 0:
            self.glance_embedding = FeatureEmbedding(glance_channels, embed_width)
            self.local_embedding = FeatureEmbedding(local_channels, embed_width)
            glance_channels = local_channels = embed_width
        else:
            self.glance_embedding = self.local_embedding = nn.Identity()
        self.heads = nn.ModuleList(
            [nn.Linear(glance_channels, num_classes)]
            + [nn.Linear(local_channels + glance_channels, num_classes) for _ in range(num_cubes)]
        )

    @property
    def num_exits(self) -> int:
        return len(self.heads)

    def embed_glance(self, glance: torch.Tensor) -> torch.Tensor:
        """Pooled glance features (B, Cg) -> the glance's input to every exit head."""
        return self.glance_embedding(glance)

    def embed_local(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled local features (..., Cl) of one cube -> what the accumulated max-pooling runs over."""
        return self.local_embedding(features)

    def glance_exit(self, embedded_glance: torch.Tensor) -> torch.Tensor:
        """embedded_glance (B, E) = embed_glance(pooled glance features) -> exit-0 logits (B, classes)."""
        return self.heads[0](self.dropout(embedded_glance))

    def local_exit(self, exit_index: int, local_max: torch.Tensor, embedded_glance: torch.Tensor) -> torch.Tensor:
        """local_max: max over cubes 1..exit_index of embed_local(pooled local features);
        embedded_glance: embed_glance(pooled glance features), computed once per video and
        shared by every exit -> logits (B, classes) of exit `exit_index`."""
        return self.heads[exit_index](self.dropout(torch.cat((local_max, embedded_glance), dim=1)))

    def forward(self, glance: torch.Tensor, local: torch.Tensor) -> List[torch.Tensor]:
        """glance (B, Cg), local (B, M, Cl) pooled per cube, in cube order -> M + 1 logits (B, classes)."""
        accumulated = torch.cummax(self.embed_local(local), dim=1).values
        embedded = self.embed_glance(glance)  # once per batch: the BN sees each video once per step
        logits = [self.glance_exit(embedded)]
        for t in range(1, self.num_exits):
            logits.append(self.local_exit(t, accumulated[:, t - 1], embedded))
        return logits
