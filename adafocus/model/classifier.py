"""Classifier fC: one linear head per exit over accumulated (max-pooled) features, with glance reuse.

Exit 0 (the glance step, p0): pooled glance features g.
Exit t >= 1: [max over cubes 1..t of pooled local features ; g] (FrameExit-style
accumulated pooling plus the AdaFocus feature reuse of fG's output).
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class ExitClassifier(nn.Module):
    def __init__(self, glance_channels: int, local_channels: int, num_cubes: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(
            [nn.Linear(glance_channels, num_classes)]
            + [nn.Linear(local_channels + glance_channels, num_classes) for _ in range(num_cubes)]
        )

    @property
    def num_exits(self) -> int:
        return len(self.heads)

    def embed_local(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled local features (..., Cl) of one cube -> what the accumulated max-pooling runs over."""
        return features

    def glance_exit(self, glance: torch.Tensor) -> torch.Tensor:
        """glance (B, Cg) pooled glance features -> exit-0 logits (B, classes)."""
        return self.heads[0](self.dropout(glance))

    def local_exit(self, exit_index: int, local_max: torch.Tensor, glance: torch.Tensor) -> torch.Tensor:
        """local_max: max over cubes 1..exit_index of embed_local(pooled local features); glance (B, Cg)."""
        return self.heads[exit_index](self.dropout(torch.cat((local_max, glance), dim=1)))

    def forward(self, glance: torch.Tensor, local: torch.Tensor) -> List[torch.Tensor]:
        """glance (B, Cg), local (B, M, Cl) pooled per cube, in cube order -> M + 1 logits (B, classes)."""
        accumulated = torch.cummax(self.embed_local(local), dim=1).values
        logits = [self.glance_exit(glance)]
        for t in range(1, self.num_exits):
            logits.append(self.local_exit(t, accumulated[:, t - 1], glance))
        return logits
