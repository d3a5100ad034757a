"""TSN segment sampling: which frames of a video the model sees.

The video is cut into `num_segments` equal segments and one frame is taken
from each: at a random offset in training, at the segment center at
evaluation (the TSN/TSM convention). Indices are 0-based.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def segment_indices(num_frames: int, num_segments: int, train: bool, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """`num_segments` frame indices in [0, num_frames), non-decreasing."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    length = num_frames / num_segments
    starts = np.arange(num_segments) * length
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        offsets = rng.uniform(0, length, size=num_segments)
    else:
        offsets = np.full(num_segments, length / 2)
    return np.minimum(np.floor(starts + offsets).astype(np.int64), num_frames - 1)
