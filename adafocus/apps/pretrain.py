"""Pretraining fL on still images (the demo's stand-in for ImageNet-pretrained backbones).

The paper starts fG and fL from ImageNet weights; the demo has no download,
so its tiny fL is first trained to read digits on still patches
(adafocus.data.synthetic.render_digit_patches: one digit of a random colour
on video-like clutter; nothing tells it which colour matters or where the
target is in a video). The trunk's state dict is saved for
`model.local.weights`, exactly how pretrained weights reach a real run.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch
from torch import nn

from adafocus.utils.files import atomic_write

logger = logging.getLogger(__name__)


def pretrain_local(model_config, synthetic_config, path: str, steps: int = 400, batch_size: int = 64,
                   lr: float = 5e-3, seed: int = 0, num_patches: int = 8000) -> dict:
    """Train the tiny fL trunk + a linear probe on digit patches; save the trunk to `path`."""
    from adafocus.data.synthetic import MEAN, STD, render_digit_patches
    from adafocus.model.backbones import build_backbone

    torch.manual_seed(seed)
    size = int(model_config.cube_size[1])
    local = model_config.local
    backbone = build_backbone(local.backbone, tiny_channels=local.tiny_channels, tiny_stride=local.tiny_stride)
    head = nn.Linear(backbone.out_channels, model_config.num_classes)
    start = time.time()
    patches, labels = render_digit_patches(num_patches, size, synthetic_config, seed, "train")
    test_patches, test_labels = render_digit_patches(1000, size, synthetic_config, seed, "test")
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    def tensor(x):
        return (torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255) - mean) / std

    images, targets = tensor(patches), torch.from_numpy(labels)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    backbone.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(images), batch_size, replace=False))
        logits = head(backbone(images[idx]).mean(dim=(2, 3)))
        loss = nn.functional.cross_entropy(logits, targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    backbone.eval()
    with torch.no_grad():
        accuracy = (head(backbone(tensor(test_patches)).mean(dim=(2, 3))).argmax(1) == torch.from_numpy(test_labels)).float().mean().item()
    with atomic_write(path, "wb") as f:
        torch.save(backbone.body.state_dict(), f)
    result = {"path": path, "steps": steps, "patch_accuracy": accuracy, "seconds": time.time() - start}
    logger.info("fL pretrained on %d digit patches: %.1f%% on held-out patches (%.0fs) -> %s",
                num_patches, accuracy * 100, result["seconds"], path)
    return result
