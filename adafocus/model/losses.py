"""Classification losses of AdaFocusV3 and the baseline (paper Eq. 1 sums this over exits)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, target: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Cross-entropy for class indices (B,), whatever `loss`. For multi-hot targets (B, classes):
    "ce" is the cross-entropy against the target normalised to a distribution, "bce" independent
    sigmoids."""
    if target.dim() == 1:
        return F.cross_entropy(logits.float(), target)
    target = target.float()
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    return F.cross_entropy(logits.float(), target / target.sum(1, keepdim=True).clamp(min=1e-12))
