"""List files in the formats video people already have.

Frame folders (TSN/TSM/mmaction2 rawframes, AdaFocus long-video lists):
    path num_frames label [label ...]        space-separated
    path,num_frames,label[,label ...]        comma-separated (AdaFocus)
Video files (mmaction2/SlowFast video lists):
    path label [label ...]                   (or comma-separated)
Labels are 0-based class indices; more than one label makes a multi-label
video. Blank lines and lines starting with '#' are ignored.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRecord:
    path: str
    num_frames: Optional[int]  # None for video files: known only after decoding
    labels: tuple

    @property
    def label(self) -> int:
        return self.labels[0]


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: {what} must be an integer, got {text!r}") from None


def parse_list_file(
    list_path: str,
    has_num_frames: bool,
    num_classes: Optional[int] = None,
    min_frames: int = 1,
) -> List[VideoRecord]:
    """Read a list file; see the module docstring for the formats.

    has_num_frames: lines carry the frame count after the path (frame folders).
    num_classes: if given, every label must lie in [0, num_classes).
    Videos with fewer than `min_frames` frames are dropped (and logged).
    """
    records = []
    dropped = 0
    with open(list_path) as f:
        for line_number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [x.strip() for x in line.split(",")] if "," in line else line.split()
            where = f"{list_path}:{line_number}"
            needed = 3 if has_num_frames else 2
            if len(fields) < needed:
                layout = "path num_frames label [label ...]" if has_num_frames else "path label [label ...]"
                raise ValueError(f"{where}: expected '{layout}', got {line!r}")
            path = fields[0]
            num_frames = _parse_int(fields[1], "num_frames", where) if has_num_frames else None
            labels = tuple(_parse_int(x, "label", where) for x in fields[needed - 1 :])
            for label in labels:
                if label < 0 or (num_classes is not None and label >= num_classes):
                    raise ValueError(
                        f"{where}: label {label} is outside [0, num_classes={num_classes}); labels are 0-based"
                    )
            if num_frames is not None and num_frames < min_frames:
                dropped += 1
                continue
            records.append(VideoRecord(path, num_frames, labels))
    if dropped:
        logger.warning("%s: dropped %d videos with fewer than %d frames", list_path, dropped, min_frames)
    if not records:
        raise ValueError(f"{list_path}: no videos listed")
    return records


# Salt of the path hash that picks the calibration slice: fixed, so training and `adafocus eval`
# (and runs with different train.seed) hold out the same videos.
CALIBRATION_SALT = b"adafocus-calibration-v1:"


def calibration_holdout(records: Sequence[VideoRecord], fraction: float) -> Tuple[List[int], List[int]]:
    """(training indices, calibration indices) of a training list, each in list order.

    round(fraction * N) videos (at least 1 when fraction > 0) are held out: those with the
    smallest salted hash of their path, so the choice needs no seed and ignores the list's
    order (a video's rank depends on its path alone).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.calibration_fraction={fraction!r}: expected a number in [0, 1)")
    count = 0 if fraction == 0 else max(1, round(fraction * len(records)))
    if count >= len(records):
        raise ValueError(f"data.calibration_fraction={fraction!r} holds out {count} of the {len(records)} training "
                         f"videos, leaving none to train on; lower it (0: no held-out slice) or give data.val_list and "
                         f"data.test_list")
    keys = sorted((hashlib.sha1(CALIBRATION_SALT + r.path.encode("utf-8")).digest(), i) for i, r in enumerate(records))
    held = sorted(i for _, i in keys[:count])
    chosen = set(held)
    return [i for i in range(len(records)) if i not in chosen], held


class ListVideoDataset:
    """Shared behaviour of the list-file datasets (frame folders, video files).

    Subclasses implement `_load_frames(record, indices_fn) -> uint8 (T, H, W, 3)`.
    A video that cannot be read is logged and returned as {"skipped": path};
    `collate_videos` drops it and counts it, so one bad file never stops
    training.
    """

    def __init__(self, records, root, num_segments, transform, num_classes, multi_label=False, seed=0):
        self.records = list(records)
        self.root = root
        self.num_segments = num_segments
        self.transform = transform
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.seed = seed
        self.epoch = 0

    def keep_only(self, indices: Sequence[int]) -> "ListVideoDataset":
        """Restrict the dataset to these records (in this order); item indices then count within them."""
        self.records = [self.records[i] for i in indices]
        return self

    def set_epoch(self, epoch: int) -> None:
        """Reseed the per-item augmentation so each epoch differs, reproducibly."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _path(self, record: VideoRecord) -> str:
        import os

        return record.path if self.root is None else os.path.join(self.root, record.path)

    def _target(self, record: VideoRecord):
        import torch

        if not self.multi_label:
            return record.label
        target = torch.zeros(self.num_classes)
        target[list(record.labels)] = 1.0
        return target

    def __getitem__(self, index: int) -> dict:
        import numpy as np

        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        path = self._path(record)
        try:
            clip = self._load_frames(record, path, rng)
        except Exception as error:  # noqa: BLE001 - any decode failure means "skip this video"
            logger.warning("skipping unreadable video %s: %s: %s", path, type(error).__name__, error)
            return {"skipped": path}
        return {"video": self.transform(clip, rng), "label": self._target(record), "index": index}

    def _load_frames(self, record: VideoRecord, path: str, rng):
        raise NotImplementedError
