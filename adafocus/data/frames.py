"""Frame-folder datasets: one JPEG/PNG per frame, named by a template.

Layout: root/<path>/img_00001.jpg ... (mmaction2 default `img_{:05d}.jpg`;
TSM's Sth-Sth V1 uses `{:05d}.jpg`, AdaFocus ActivityNet `image_{:05d}.jpg`),
listed in a file with lines `path num_frames label [label ...]`.
"""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
from PIL import Image

from adafocus.data.decoding import Clip, stack_frames
from adafocus.data.list_file import ListVideoDataset, parse_list_file
from adafocus.data.sampling import segment_indices

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def load_images(folder: str, names: List[str]) -> np.ndarray:
    """uint8 (T, H, W, 3) of the image files `names` in `folder`."""
    frames = []
    for name in names:
        with Image.open(os.path.join(folder, name)) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return stack_frames(folder, frames)


def image_names(folder: str) -> List[str]:
    """The image files of a frame folder, in name order (its frame order)."""
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))


def read_frame_folder_clip(folder: str, num_segments: int, train: bool = False,
                           rng: Optional[np.random.Generator] = None) -> Clip:
    """The TSN-sampled frames of a folder of images (frame order = name order); only those are read."""
    names = image_names(folder)
    if not names:
        raise ValueError(f"{folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    indices = segment_indices(len(names), num_segments, train, rng)
    return Clip(load_images(folder, [names[i] for i in indices]), indices.astype(np.int64), len(names))


class FrameFolderDataset(ListVideoDataset):
    """TSN-sampled clips from frame folders.

    filename_tmpl: frame file name, formatted with the 1-based frame number
    (plus `start_index - 1`). Items: video float (3, T, S, S), label (int, or
    a multi-hot float vector when multi_label), index.
    """

    def __init__(self, list_file, root, num_segments, transform, num_classes, multi_label=False,
                 filename_tmpl="img_{:05d}.jpg", start_index=1, seed=0):
        records = parse_list_file(list_file, has_num_frames=True, num_classes=num_classes)
        super().__init__(records, root, num_segments, transform, num_classes, multi_label, seed)
        self.filename_tmpl = filename_tmpl
        self.start_index = start_index

    def _load_frames(self, record, path, rng):
        indices = segment_indices(record.num_frames, self.num_segments, self.transform.train, rng)
        return load_images(path, [self.filename_tmpl.format(int(i) + self.start_index) for i in indices])
