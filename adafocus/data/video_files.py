"""Video-file datasets (mp4/webm/avi/...), decoded with PyAV.

PyAV's wheels bundle FFmpeg, so this works wherever pip does. List lines:
`path label [label ...]` (or `path num_frames label ...` with
has_num_frames=True; the count is then ignored in favour of the decoded one).
"""
from __future__ import annotations

import numpy as np

from adafocus.data.list_file import ListVideoDataset, parse_list_file
from adafocus.data.sampling import segment_indices


def decode_video(path: str) -> np.ndarray:
    """All frames of the first video stream as uint8 (T, H, W, 3)."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} decoded to no frames")
    return np.stack(frames)


class VideoFileDataset(ListVideoDataset):
    """TSN-sampled clips decoded from video files (see FrameFolderDataset)."""

    def __init__(self, list_file, root, num_segments, transform, num_classes, multi_label=False,
                 has_num_frames=False, seed=0):
        records = parse_list_file(list_file, has_num_frames=has_num_frames, num_classes=num_classes)
        super().__init__(records, root, num_segments, transform, num_classes, multi_label, seed)

    def _load_frames(self, record, path, rng):
        frames = decode_video(path)
        indices = segment_indices(len(frames), self.num_segments, self.transform.train, rng)
        return frames[indices]
