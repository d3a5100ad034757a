"""Pre-train the tiny local network fL on target-centerd crops (the miniature's "ImageNet pre-training").

The paper starts fG and fL from ImageNet-pretrained MobileNetV2 / ResNet-50, so its policy is
trained on top of a local network that can already recognise things. Our tiny CNNs start
from scratch, and trained from scratch on the synthetic task with random cubes for 6 epochs
they stayed at chance (REPRODUCTION.md): a random 24x24 cube shows the target in ~15% of the
cubes, too rarely to learn to read digits in the budget. This script gives fL the analogue of
the paper's pre-training: 24x24 frame crops around the target (jittered by up to +-4 px, only
frames where the target is visible) of the TRAIN split, classified by a linear head. Only the
trunk's state dict is written; it is loaded as `model.local.weights` (adafocus.model.backbones), by
AdaFocusV3 and by the full-video baseline alike. fG and the policy still start from scratch.

    .venv/bin/python -m benchmarks.repro_pretrain_local      # ~1-2 min; outputs/repro/local_pretrained.pt
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks import repro_common as rc


def target_crops(dataset, size: int, jitter: int, generator: torch.Generator):
    """One crop per (video, visible frame): (N, C, size, size) and labels."""
    crops, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        video, box = item["video"], item["target_box"].tolist()  # (C, T, H, W); [t0, t1, y0, y1, x0, x1]
        _, _, h, w = video.shape
        cy, cx = (box[2] + box[3]) / 2, (box[4] + box[5]) / 2
        for t in range(box[0], box[1]):
            dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=generator)).tolist()
            y0 = int(min(max(round(cy - size / 2) + dy, 0), h - size))
            x0 = int(min(max(round(cx - size / 2) + dx, 0), w - size))
            crops.append(video[:, t, y0:y0 + size, x0:x0 + size])
            labels.append(int(item["label"]))
    return torch.stack(crops), torch.tensor(labels)


def main(argv=None) -> int:
    from adafocus.model.backbones import build_backbone
    from adafocus.data import build_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(rc.ROOT, "configs", "repro_table5.yaml"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(rc.ROOT, "outputs", "repro", "local_pretrained.pt"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.time()
    config = rc.run_config(args.config)
    mc = config.model_config()
    size = mc.cube_size[1]
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = target_crops(build_dataset(config.data, "train", 10), size, 4, gen)
    val_x, val_y = target_crops(build_dataset(config.data, "val", 10), size, 4, gen)
    backbone = build_backbone("tiny", tiny_channels=mc.local.tiny_channels, tiny_stride=mc.local.tiny_stride)
    head = torch.nn.Linear(backbone.out_channels, mc.num_classes)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * ((len(train_x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    logits_of = lambda x: head(backbone(x).mean(dim=(2, 3)))  # noqa: E731
    for epoch in range(args.epochs):
        backbone.train()
        order = torch.randperm(len(train_x))
        correct = 0
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            logits = logits_of(train_x[idx])
            loss = F.cross_entropy(logits, train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == train_y[idx]).sum())
        backbone.eval()
        with torch.no_grad():
            val_acc = float((logits_of(val_x).argmax(1) == val_y).double().mean())
        print(f"epoch {epoch + 1}: train top-1 {correct / len(order) * 100:.1f}%, val top-1 (target crops) "
              f"{val_acc * 100:.1f}%  ({len(train_x)} train crops, {time.time() - start:.0f}s)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(backbone.body.state_dict(), args.out)
    rc.write_json("repro_pretrain_local.json", {"val_top1_target_crops": val_acc, "train_crops": len(train_x),
                                                "epochs": args.epochs, "seconds": time.time() - start,
                                                "command": "python -m benchmarks.repro_pretrain_local"})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
