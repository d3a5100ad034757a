"""Frame-folder datasets: one JPEG/PNG per frame, named by a template.

Layout: root/<path>/img_00001.jpg ... (mmaction2 default `img_{:05d}.jpg`;
TSM's Sth-Sth V1 uses `{:05d}.jpg`, AdaFocus ActivityNet `image_{:05d}.jpg`),
listed in a file with lines `path num_frames label [label ...]`.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from adafocus.data.list_file import ListVideoDataset, parse_list_file
from adafocus.data.sampling import segment_indices


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
        frames = []
        for i in indices:
            name = os.path.join(path, self.filename_tmpl.format(int(i) + self.start_index))
            with Image.open(name) as image:
                frames.append(np.asarray(image.convert("RGB")))
        if any(f.shape != frames[0].shape for f in frames):
            raise ValueError(f"frames of {path} differ in size")
        return np.stack(frames)
