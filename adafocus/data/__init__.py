"""Datasets: the embedded synthetic task, frame folders and video files; reading one video's sampled frames.

`build_dataset(data_config, split)` picks the right one; `collate_videos`
batches items and drops (and counts) the videos that could not be read.

Splits: "train" is what the model learns from, "val" what the early-exit thresholds
are solved on (the calibration split), "test" what the numbers are reported on.
With list files and no separate test list, the report split is data.val_list and
the calibration split is a fixed slice of data.train_list (data.calibration_fraction),
which "train" then leaves out: thresholds are never solved on the videos they are
judged on, nor on videos the model was trained on. `split_sources` says which is which.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import torch

from adafocus.data.clips import read_clip
from adafocus.data.decoding import Clip, read_video_clip
from adafocus.data.frames import FrameFolderDataset
from adafocus.data.list_file import VideoRecord, calibration_holdout, parse_list_file
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
    "calibration_holdout",
    "collate_videos",
    "held_out_slice",
    "split_sources",
]

SPLITS = ("train", "val", "test")


def _report_list(data) -> Optional[str]:
    return data.test_list or data.val_list


def _same(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a and b and os.path.normpath(a) == os.path.normpath(b))


def _separate_val(data) -> bool:
    """Whether data.val_list is a list of its own, apart from the report list."""
    return bool(data.val_list and data.test_list and not _same(data.val_list, data.test_list))


def _calibration_from_train(data) -> bool:
    """Whether the calibration split is the held-out slice of the training list.

    Not when the report list is the training list itself: every video is then trained on and
    reported on anyway, and holding some out would only shrink the training set."""
    return (data.kind != "synthetic" and not _separate_val(data) and data.calibration_fraction > 0
            and not _same(_report_list(data), data.train_list))


def held_out_slice(data) -> Optional[tuple]:
    """(absolute train_list, fraction) when the calibration split is a slice held out of the
    training list, else None: two configs with the same value hold out the same videos."""
    if not _calibration_from_train(data):
        return None
    return os.path.abspath(data.train_list), float(data.calibration_fraction)


def split_sources(data) -> Dict[str, object]:
    """Where the calibration ("val") and report ("test") splits come from, in words, for reports."""
    if data.kind == "synthetic":
        return {"calibration": "the synthetic val split", "report": "the synthetic test split",
                "calibration_is_report": False}
    report = f"data.test_list ({data.test_list})" if data.test_list else f"data.val_list ({data.val_list})"
    same = False
    if _calibration_from_train(data):
        calibration = (f"{data.calibration_fraction:g} of data.train_list ({data.train_list}), "
                       "held out from training (data.calibration_fraction)")
    elif _separate_val(data):
        calibration = f"data.val_list ({data.val_list})"
    elif _same(_report_list(data), data.train_list):
        calibration, same = report + ", the report split, which is the training list itself: optimistic", True
    else:
        calibration, same = report + ", the report split itself (data.calibration_fraction=0): optimistic", True
    return {"calibration": calibration, "report": report, "calibration_is_report": same}


def build_dataset(data, split: str, num_classes: int, seed: int = 0):
    """Dataset of `split` (train | val | test) described by a config.DataConfig."""
    if data.kind == "synthetic":
        return SyntheticVideos(SyntheticConfig.from_dict(data.synthetic), split, cache_dir=data.cache_dir)
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    from_train = _calibration_from_train(data)
    if split == "train" or (split == "val" and from_train):
        list_file, name = data.train_list, "train_list"
    elif split == "val" and _separate_val(data):
        list_file, name = data.val_list, "val_list"
    else:  # the report split, or calibration on it when nothing else is left
        list_file, name = _report_list(data), "test_list or data.val_list"
    if not list_file:
        raise ValueError(f"no list file for split {split!r}: set data.{name}")
    transform = ClipTransform(size=data.image_size, train=split == "train", flip=data.flip)
    common = dict(root=data.root, num_segments=data.num_segments, transform=transform,
                  num_classes=num_classes, multi_label=data.multi_label, seed=seed)
    if data.kind == "frames":
        dataset = FrameFolderDataset(list_file, filename_tmpl=data.filename_tmpl, **common)
    else:
        dataset = VideoFileDataset(list_file, has_num_frames=data.has_num_frames, decoder=data.decoder, **common)
    if split in ("train", "val") and from_train:
        train_part, calibration_part = calibration_holdout(dataset.records, data.calibration_fraction)
        dataset.keep_only(train_part if split == "train" else calibration_part)
    return dataset


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
