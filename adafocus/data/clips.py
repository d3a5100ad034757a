"""One video of any form -> its sampled frames: a video file, a frame folder or a .npy array.

What `adafocus infer` reads; video files and frame folders go through the same
functions as the datasets (adafocus.data.decoding, adafocus.data.frames).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from adafocus.data.decoding import Clip, read_video_clip
from adafocus.data.frames import read_frame_folder_clip
from adafocus.data.sampling import segment_indices


def read_array_clip(path: str, num_segments: int, train: bool = False,
                    rng: Optional[np.random.Generator] = None) -> Clip:
    """The sampled frames of a (T, H, W, 3) .npy array (memory-mapped: only those frames are read)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(f"{path}: expected a (T, H, W, 3) array with T >= 1, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (0-255), got dtype {array.dtype}")
    indices = segment_indices(array.shape[0], num_segments, train, rng)
    return Clip(np.ascontiguousarray(array[indices]), indices.astype(np.int64), int(array.shape[0]))


def read_clip(path: str, num_segments: int, train: bool = False, rng: Optional[np.random.Generator] = None,
              decoder: str = "auto") -> Clip:
    """Sampled frames of a frame folder (a directory), a .npy array, or a video file (anything else)."""
    if os.path.isdir(path):
        return read_frame_folder_clip(path, num_segments, train, rng)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    if path.lower().endswith(".npy"):
        return read_array_clip(path, num_segments, train, rng)
    return read_video_clip(path, num_segments, train, rng, decoder)
