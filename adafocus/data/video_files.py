"""Video-file datasets (mp4/webm/avi/mkv/...): only the sampled frames are decoded and kept.

Decoding (PyAV, or torchcodec when usable; `decoder` = auto | pyav | torchcodec) is
adafocus.data.decoding's; `adafocus infer` reads videos through the same function.

List lines: `path label [label ...]` (or `path num_frames label ...` with
has_num_frames=True; the count is then ignored in favour of the container's).
"""
from __future__ import annotations

import logging

from adafocus.data.decoding import DECODERS, ends_early_message, read_video_clip, resolve_decoder, torchcodec_error  # noqa: F401
from adafocus.data.list_file import ListVideoDataset, parse_list_file

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".gif")


class VideoFileDataset(ListVideoDataset):
    """TSN-sampled clips decoded from video files (see FrameFolderDataset)."""

    def __init__(self, list_file, root, num_segments, transform, num_classes, multi_label=False,
                 has_num_frames=False, seed=0, decoder="auto"):
        records = parse_list_file(list_file, has_num_frames=has_num_frames, num_classes=num_classes)
        super().__init__(records, root, num_segments, transform, num_classes, multi_label, seed)
        self.decoder = resolve_decoder(decoder)

    def _load_frames(self, record, path, rng):
        clip = read_video_clip(path, self.num_segments, self.transform.train, rng, self.decoder)
        if clip.ended_early:
            logger.warning("%s %s; sampled from those", path, ends_early_message(clip))
        return clip.frames
