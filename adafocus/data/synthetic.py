"""The embedded synthetic task (docs/design.md, "The demo task"): "find the red digit".

Each video shows, for a few consecutive frames at a random place, one small
handwritten digit (scikit-learn's bundled 8x8 digits, upscaled) in a
distinctive red; the label is that digit (10 classes). The rest of the video
is clutter: distractor digits in other colours at other places and times,
moving coloured squares, background noise. So

- the evidence sits in one small spatio-temporal cube;
- a coarse glance sees *where* the red blob is (colour survives downsampling)
  but not *which* digit it is (the strokes do not);
- difficulty varies per video (target size, contrast, duration, noise), so
  some videos are solved by the first cube and others stay uncertain.

Every video is a pure function of (seed, split, index): any index can be
generated on its own, in any process, in any order. Splits draw their digit
images from disjoint pools (train vs val/test), so evaluation measures
handwriting the model never saw. Videos are optionally cached as uint8 arrays
under a folder the user names.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}
TARGET_COLOR = (1.0, 0.12, 0.12)
# Distractor colours: none of them red, so only the target is a red blob.
DISTRACTOR_COLORS = ((0.15, 0.95, 0.2), (0.2, 0.45, 1.0), (0.95, 0.95, 0.2), (0.2, 0.95, 0.95), (0.85, 0.85, 0.85))
# Mean/std used to normalise the uint8 frames (the frames are mostly dark).
MEAN = (0.2, 0.2, 0.2)
STD = (0.25, 0.25, 0.25)


@dataclass
class SyntheticConfig:
    """Shape and difficulty of the synthetic videos."""

    num_frames: int = 16
    height: int = 48
    width: int = 48
    train_size: int = 2000
    val_size: int = 500
    test_size: int = 1000
    seed: int = 0
    digit_size: Tuple[int, int] = (10, 14)  # target side in pixels, inclusive range
    duration: Tuple[int, int] = (4, 8)  # frames the target is visible, inclusive range
    contrast: Tuple[float, float] = (0.7, 1.0)
    noise: Tuple[float, float] = (0.02, 0.08)  # std of per-pixel noise
    num_distractors: Tuple[int, int] = (1, 3)
    num_clutter: Tuple[int, int] = (3, 6)
    eval_digit_fraction: float = 0.25  # share of the digit images kept for val/test only

    def __post_init__(self):
        if self.duration[1] > self.num_frames or self.duration[0] < 1:
            raise ValueError(f"duration {self.duration} must lie in [1, num_frames={self.num_frames}]")
        if self.digit_size[1] > min(self.height, self.width) or self.digit_size[0] < 1:
            raise ValueError(f"digit_size {self.digit_size} must fit in the {self.height}x{self.width} frame")
        for name in ("train_size", "val_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: Optional[dict]) -> "SyntheticConfig":
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthetic data option(s): {sorted(unknown)}")
        for key in ("digit_size", "duration", "contrast", "noise", "num_distractors", "num_clutter"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def split_size(self, split: str) -> int:
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}[_check_split(split)]

    def fingerprint(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return split


_DIGITS: Optional[Tuple[np.ndarray, np.ndarray]] = None


def _digit_images() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 bundled 8x8 digits as float [0, 1] and their labels."""
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        _DIGITS = (digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64))
    return _DIGITS


def _digit_pool(split: str, eval_fraction: float) -> np.ndarray:
    """Indices of the digit images a split may use (train and val/test disjoint)."""
    images, _ = _digit_images()
    order = np.random.default_rng(12345).permutation(len(images))
    num_eval = int(round(len(images) * eval_fraction))
    return np.sort(order[num_eval:] if split == "train" else order[:num_eval])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square image to size x size (align_corners=False)."""
    src = image.shape[0]
    coords = (np.arange(size) + 0.5) * src / size - 0.5
    coords = np.clip(coords, 0, src - 1)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    frac = (coords - lo).astype(np.float32)
    rows = image[lo] * (1 - frac)[:, None] + image[hi] * frac[:, None]
    return rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]


def _paste(frames: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float, t0: int, t1: int, y: int, x: int):
    """Alpha-blend `color` through `mask` into frames[t0:t1] at (y, x)."""
    h, w = mask.shape
    weight = (alpha * mask)[None, :, :, None]
    region = frames[t0:t1, y : y + h, x : x + w]
    region *= 1 - weight
    region += weight * color


def render_video(config: SyntheticConfig, split: str, index: int) -> Tuple[np.ndarray, int, np.ndarray, float]:
    """One video as uint8 (T, H, W, 3), its label, the target box and difficulty.

    target box: int64 [t0, t1, y0, y1, x0, x1], end-exclusive, in frames/pixels.
    difficulty in [0, 1]: 0 = large, bright, long, clean target.
    """
    _check_split(split)
    images, labels = _digit_images()
    pool = _digit_pool(split, config.eval_digit_fraction)
    rng = np.random.default_rng([config.seed, SPLITS[split], index])
    t_len, height, width = config.num_frames, config.height, config.width

    difficulty = rng.uniform()
    jitter = lambda: float(np.clip(difficulty + rng.normal(0, 0.15), 0, 1))  # noqa: E731
    lo, hi = config.digit_size
    size = int(round(hi - jitter() * (hi - lo)))
    lo, hi = config.duration
    duration = int(round(hi - jitter() * (hi - lo)))
    lo, hi = config.contrast
    contrast = hi - jitter() * (hi - lo)
    lo, hi = config.noise
    noise = lo + jitter() * (hi - lo)

    base = rng.uniform(0.05, 0.25)
    frames = np.full((t_len, height, width, 3), base, dtype=np.float32)
    frames += rng.uniform(-0.04, 0.04, size=(1, 1, 1, 3)).astype(np.float32)

    # Moving clutter: small squares of non-red colours drifting across the whole video.
    for _ in range(rng.integers(config.num_clutter[0], config.num_clutter[1] + 1)):
        side = int(rng.integers(3, 7))
        color = np.asarray(DISTRACTOR_COLORS[rng.integers(len(DISTRACTOR_COLORS))], np.float32)
        alpha = rng.uniform(0.3, 0.8)
        y, x = rng.uniform(0, height - side), rng.uniform(0, width - side)
        vy, vx = rng.uniform(-2.5, 2.5, size=2)
        square = np.ones((side, side), np.float32)
        for t in range(t_len):
            yy = min(max(int(round(y + vy * t)), 0), height - side)
            xx = min(max(int(round(x + vx * t)), 0), width - side)
            _paste(frames, square, color, alpha, t, t + 1, yy, xx)

    # Distractor digits in other colours, at random places and times.
    for _ in range(rng.integers(config.num_distractors[0], config.num_distractors[1] + 1)):
        side = int(rng.integers(config.digit_size[0], config.digit_size[1] + 1))
        mask = _resize(images[pool[rng.integers(len(pool))]], side)
        color = np.asarray(DISTRACTOR_COLORS[rng.integers(len(DISTRACTOR_COLORS))], np.float32)
        span = int(rng.integers(config.duration[0], t_len + 1))
        t0 = int(rng.integers(0, t_len - span + 1))
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        _paste(frames, mask, color, rng.uniform(0.5, 1.0), t0, t0 + span, y, x)

    # The target, pasted last so it is never hidden.
    digit = int(pool[rng.integers(len(pool))])
    mask = _resize(images[digit], size)
    t0 = int(rng.integers(0, t_len - duration + 1))
    y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    _paste(frames, mask, np.asarray(TARGET_COLOR, np.float32), contrast, t0, t0 + duration, y, x)

    frames += rng.standard_normal(size=frames.shape, dtype=np.float32) * np.float32(noise)
    np.clip(frames, 0, 1, out=frames)
    frames *= 255
    frames += 0.5
    video = frames.astype(np.uint8)
    box = np.array([t0, t0 + duration, y, y + size, x, x + size], dtype=np.int64)
    return video, int(labels[digit]), box, float(difficulty)


def _generate_split(config: SyntheticConfig, split: str) -> Dict[str, np.ndarray]:
    n = config.split_size(split)
    videos = np.empty((n, config.num_frames, config.height, config.width, 3), np.uint8)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, 6), np.int64)
    difficulty = np.empty(n, np.float32)
    for i in range(n):
        videos[i], labels[i], boxes[i], difficulty[i] = render_video(config, split, i)
    return {"videos": videos, "labels": labels, "boxes": boxes, "difficulty": difficulty}


def load_split(config: SyntheticConfig, split: str, cache_dir: Optional[str] = None) -> Dict[str, np.ndarray]:
    """All videos of a split, generated once and cached (if cache_dir) as .npz."""
    _check_split(split)
    if cache_dir is None:
        return _generate_split(config, split)
    path = os.path.join(os.path.expanduser(cache_dir), f"synthetic-{config.fingerprint()}-{split}.npz")
    if os.path.exists(path):
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    arrays = _generate_split(config, split)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    with open(os.path.join(os.path.dirname(path), f"synthetic-{config.fingerprint()}.json"), "w") as f:
        json.dump(asdict(config), f, indent=1)
    return arrays


class SyntheticVideos(Dataset):
    """The synthetic task as a Dataset of dicts.

    item: video float (3, T, H, W) normalised with MEAN/STD; label int;
    target_box int64 (6,) [t0, t1, y0, y1, x0, x1]; difficulty float; index.
    """

    num_classes = 10
    mean = MEAN
    std = STD

    def __init__(self, config: SyntheticConfig, split: str, cache_dir: Optional[str] = None, in_memory: bool = True):
        self.config = config
        self.split = _check_split(split)
        self.cache_dir = cache_dir
        self._arrays = load_split(config, split, cache_dir) if in_memory else None
        self._mean = torch.tensor(MEAN).view(3, 1, 1, 1)
        self._std = torch.tensor(STD).view(3, 1, 1, 1)

    def __len__(self) -> int:
        return self.config.split_size(self.split)

    def raw(self, index: int) -> Tuple[np.ndarray, int, np.ndarray, float]:
        if self._arrays is not None:
            a = self._arrays
            return a["videos"][index], int(a["labels"][index]), a["boxes"][index], float(a["difficulty"][index])
        return render_video(self.config, self.split, index)

    def normalize(self, video_uint8: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> normalised float (3, T, H, W)."""
        video = torch.from_numpy(np.ascontiguousarray(video_uint8)).permute(3, 0, 1, 2).float().div_(255)
        return (video - self._mean) / self._std

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        video, label, box, difficulty = self.raw(index)
        return {
            "video": self.normalize(video),
            "label": label,
            "target_box": torch.from_numpy(np.asarray(box, np.int64)),
            "difficulty": difficulty,
            "index": index,
        }


def render_digit_patches(count: int, size: int, config: SyntheticConfig, seed: int, split: str = "train"):
    """Still images for pretraining fL (the demo's stand-in for ImageNet pretraining).

    Each (size x size) patch has the video's kind of background, noise and
    clutter and one handwritten digit (the split's digit pool) in a random
    colour -- red or a distractor colour, so nothing here says which colour
    matters -- at a random place. Returns uint8 (count, size, size, 3) and
    labels (count,).
    """
    images, labels = _digit_images()
    pool = _digit_pool(split, config.eval_digit_fraction)
    rng = np.random.default_rng([seed, SPLITS[split], 999])
    colors = (TARGET_COLOR,) + DISTRACTOR_COLORS
    patches = np.empty((count, size, size, 3), np.uint8)
    out_labels = np.empty(count, np.int64)
    for i in range(count):
        frame = np.full((1, size, size, 3), rng.uniform(0.05, 0.25), np.float32)
        for _ in range(rng.integers(0, 3)):
            side = int(rng.integers(3, 7))
            y, x = rng.integers(0, size - side + 1, size=2)
            color = np.asarray(DISTRACTOR_COLORS[rng.integers(len(DISTRACTOR_COLORS))], np.float32)
            _paste(frame, np.ones((side, side), np.float32), color, rng.uniform(0.3, 0.8), 0, 1, int(y), int(x))
        side = int(rng.integers(config.digit_size[0], min(config.digit_size[1], size) + 1))
        digit = int(pool[rng.integers(len(pool))])
        y, x = rng.integers(0, size - side + 1, size=2)
        color = np.asarray(colors[rng.integers(len(colors))], np.float32)
        _paste(frame, _resize(images[digit], side), color, rng.uniform(*config.contrast), 0, 1, int(y), int(x))
        frame += rng.standard_normal(size=frame.shape, dtype=np.float32) * np.float32(rng.uniform(*config.noise))
        patches[i] = (np.clip(frame[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        out_labels[i] = labels[digit]
    return patches, out_labels
