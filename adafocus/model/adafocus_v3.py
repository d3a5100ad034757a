"""AdaFocusV3 (Wang et al., ECCV 2022): the network and its training loss.

Shapes: video (B, C, T, H, W) float, normalised, full resolution. Centers (B, M, 3)
are (t, y, x) in video frames/pixels (docs/design.md, "Coordinate convention").
Exits 0..M: exit 0 is the glance step p0, exit t follows cube t.

`forward` computes every exit for every video (training and analysis) and `loss`
is the paper's Eq. 1. Adaptive inference (integer cubes, early exit, the batch
shrinking to the videos still running) is adafocus.inference.EarlyExitRunner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import nn

from adafocus.model.classifier import ExitClassifier
from adafocus.model.config import POLICIES, ModelConfig
from adafocus.model.glance import GlanceEncoder
from adafocus.model.local import LocalEncoder
from adafocus.model.losses import classification_loss
from adafocus.model.policy import CubePolicy, choose_centers
from adafocus.model.video_checks import check_video


@dataclass
class AdaFocusOutput:
    logits: List[torch.Tensor]  # M + 1 tensors (B, classes); exit 0 = glance
    centers: torch.Tensor  # (B, M, 3) (t, y, x) in video frames/pixels
    aux_logits: List[torch.Tensor] = field(default_factory=list)  # per-encoder heads, only when aux_loss_weight > 0


def check_thresholds(thresholds, num_exits: int) -> torch.Tensor:
    """(M + 1,) float32 entropy thresholds on the CPU, one per exit, none NaN."""
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32).flatten().cpu()
    if thresholds.numel() != num_exits:
        raise ValueError(f"thresholds must have one value per exit ({num_exits}), got {thresholds.numel()}")
    if bool(torch.isnan(thresholds).any()):
        raise ValueError("thresholds must not be NaN")
    return thresholds


def no_exit_thresholds(num_exits: int) -> torch.Tensor:
    """Entropy thresholds that run every video to the last exit."""
    eta = torch.full((num_exits,), float("-inf"))
    eta[-1] = float("inf")
    return eta


class AdaFocusV3(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.glance = GlanceEncoder(config)
        self.local = LocalEncoder(config)
        self.policy = CubePolicy(config, self.glance.out_channels, self.glance.grid_size())
        self.classifier = ExitClassifier(
            self.glance.out_channels, self.local.out_channels, config.num_cubes, config.num_classes, config.dropout,
            config.embed_width,
        )
        if config.aux_loss_weight > 0:
            self.glance_aux_head = nn.Linear(self.glance.out_channels, config.num_classes)
            self.local_aux_head = nn.Linear(self.local.out_channels, config.num_classes)
        # Early-exit thresholds eta_0..eta_M travel with the state dict (default: no early exit).
        self.register_buffer("exit_thresholds", no_exit_thresholds(config.num_exits))

    @property
    def num_exits(self) -> int:
        return self.config.num_exits

    def set_thresholds(self, thresholds) -> None:
        """Store early-exit entropy thresholds (M + 1,) in the model (they travel with its state dict)."""
        eta = check_thresholds(thresholds, self.num_exits)
        self.exit_thresholds.copy_(eta.to(self.exit_thresholds.device))

    def crop_for(self, policy: str) -> str:
        """The crop path training uses for a policy choice: random cubes need no center gradient."""
        return "integer" if policy == "random" else self.config.crop_gradient

    def forward(self, video: torch.Tensor, policy: Optional[str] = None) -> AdaFocusOutput:
        """All exits for every video. policy: one of POLICIES (default config.policy)."""
        check_video(video)
        self.config.check_cube_frames(video.shape[2], "the video's frames")
        policy = policy or self.config.policy
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        video_size = tuple(video.shape[2:])
        glance_maps = self.glance(video)  # (B, Cg, G, h, w)
        glance = glance_maps.mean(dim=(2, 3, 4))
        centers = choose_centers(self.policy, policy, glance_maps, video_size)
        local = self.local(video, centers, crop=self.crop_for(policy))  # (B, M, Cl)
        output = AdaFocusOutput(self.classifier(glance, local), centers)
        if self.config.aux_loss_weight > 0:
            output.aux_logits = [
                self.glance_aux_head(glance_maps.mean(dim=(3, 4)).transpose(1, 2)).mean(1),
                self.local_aux_head(local),  # (B, M, classes)
            ]
        return output

    def loss(self, output: AdaFocusOutput, target: torch.Tensor) -> torch.Tensor:
        """Sum over exits of CE(p_t, y) (Eq. 1); target (B,) class indices or (B, classes) multi-hot."""
        kind = self.config.loss
        total = sum(classification_loss(logits, target, kind) for logits in output.logits)
        if output.aux_logits:
            glance_aux, local_aux = output.aux_logits
            per_cube = [classification_loss(local_aux[:, k], target, kind) for k in range(local_aux.shape[1])]
            total = total + self.config.aux_loss_weight * (
                classification_loss(glance_aux, target, kind) + sum(per_cube) / len(per_cube)
            )
        return total
