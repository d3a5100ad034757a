"""Datasets: the embedded synthetic task, frame folders and video files; reading one video's sampled frames.

`build_dataset(data_config, split)` picks the right one; `collate_videos`
batches items and drops (and counts) the videos that could not be read.
"""
from __future__ import annotations

from typing import List

import torch

from adafocus.data.clips import read_clip
from adafocus.data.decoding import Clip, read_video_clip
from adafocus.data.frames import FrameFolderDataset
from adafocus.data.list_file import VideoRecord, parse_list_file
from adafocus.data.synthetic import SyntheticConfig, SyntheticVideos
from adafocus.data.transforms import ClipTransform
from adafocus.data.video_files import VideoFileDataset

__all__ = [
    "FrameFolderDataset",
    "VideoFileDataset",
    "SyntheticVideos",
    "SyntheticConfig",
    "ClipTransform",
    "VideoRecord",
    "Clip",
    "read_clip",
    "read_video_clip",
    "parse_list_file",
    "build_dataset",
    "collate_videos",
]


def build_dataset(data, split: str, num_classes: int, seed: int = 0):
    """Dataset of `split` (train | val | test) described by a config.DataConfig."""
    if data.kind == "synthetic":
        return SyntheticVideos(SyntheticConfig.from_dict(data.synthetic), split, cache_dir=data.cache_dir)
    list_file = {"train": data.train_list, "val": data.val_list, "test": data.test_list or data.val_list}[split]
    if not list_file:
        raise ValueError(f"no list file for split {split!r}: set data.{split}_list")
    transform = ClipTransform(size=data.image_size, train=split == "train", flip=data.flip)
    common = dict(root=data.root, num_segments=data.num_segments, transform=transform,
                  num_classes=num_classes, multi_label=data.multi_label, seed=seed)
    if data.kind == "frames":
        return FrameFolderDataset(list_file, filename_tmpl=data.filename_tmpl, **common)
    return VideoFileDataset(list_file, has_num_frames=data.has_num_frames,
                            decoder=data.decoder, **common)


def collate_videos(items: List[dict]) -> dict:
    """Stack items into a batch; unreadable videos ({"skipped": path}) are dropped.

    batch: video (B, C, T, H, W) or None if every video was skipped; label
    (B,) long or (B, classes) multi-hot; target_box (B, 6) when the dataset
    knows where the evidence is; index (B,); num_skipped; skipped (paths).
    """
    good = [item for item in items if "skipped" not in item]
    skipped = [item["skipped"] for item in items if "skipped" in item]
    batch = {"num_skipped": len(skipped), "skipped": skipped, "video": None}
    if not good:
        return batch
    batch["video"] = torch.stack([item["video"] for item in good])
    labels = [item["label"] for item in good]
    batch["label"] = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels, dtype=torch.long)
    batch["index"] = torch.tensor([item["index"] for item in good], dtype=torch.long)
    if "target_box" in good[0]:
        batch["target_box"] = torch.stack([item["target_box"] for item in good])
    return batch
