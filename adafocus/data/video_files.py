"""Video-file datasets (mp4/webm/avi/...), decoded with PyAV or, optionally, torchcodec.

PyAV's wheels bundle FFmpeg, so it works wherever pip does and is the
default and the fallback. torchcodec (optional, not in requirements.txt; it
needs FFmpeg's shared libraries on the system) decodes only the sampled
frames, which is much faster on long videos. `decoder` picks one:
"auto" (torchcodec when it imports and its FFmpeg libraries load, else PyAV),
"pyav" or "torchcodec" (an error if it is not usable).

List lines: `path label [label ...]` (or `path num_frames label ...` with
has_num_frames=True; the count is then ignored in favour of the decoded one).
"""
from __future__ import annotations

import functools

import numpy as np

from adafocus.data.list_file import ListVideoDataset, parse_list_file
from adafocus.data.sampling import segment_indices

DECODERS = ("auto", "pyav", "torchcodec")


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


@functools.lru_cache(maxsize=None)
def torchcodec_error() -> str | None:
    """None if torchcodec imports and its FFmpeg libraries load, else why not."""
    try:
        import torchcodec  # noqa: F401
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - loads the FFmpeg-linked core library
    except (ImportError, RuntimeError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def resolve_decoder(decoder: str) -> str:
    """"pyav" or "torchcodec" for a `decoder` option value (see the module docstring)."""
    if decoder not in DECODERS:
        raise ValueError(f"data.decoder={decoder!r}: expected one of {', '.join(DECODERS)}")
    if decoder == "pyav":
        return "pyav"
    error = torchcodec_error()
    if error is None:
        return "torchcodec"
    if decoder == "torchcodec":
        raise RuntimeError(
            f"data.decoder='torchcodec' but torchcodec is not usable ({error}); install torchcodec "
            "and FFmpeg's shared libraries, or set data.decoder to 'auto' or 'pyav'")
    return "pyav"


def decode_frames_torchcodec(path: str, num_segments: int, train: bool, rng) -> np.ndarray:
    """Only the TSN-sampled frames of `path`, via torchcodec, as uint8 (T, H, W, 3)."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path)
    num_frames = len(decoder)
    if num_frames <= 0:
        raise ValueError(f"{path} has no frames")
    indices = segment_indices(num_frames, num_segments, train, rng)
    batch = decoder.get_frames_at([int(i) for i in indices])
    return np.ascontiguousarray(batch.data.permute(0, 2, 3, 1).numpy())


class VideoFileDataset(ListVideoDataset):
    """TSN-sampled clips decoded from video files (see FrameFolderDataset)."""

    def __init__(self, list_file, root, num_segments, transform, num_classes, multi_label=False,
                 has_num_frames=False, seed=0, decoder="auto"):
        records = parse_list_file(list_file, has_num_frames=has_num_frames, num_classes=num_classes)
        super().__init__(records, root, num_segments, transform, num_classes, multi_label, seed)
        self.decoder = resolve_decoder(decoder)

    def _load_frames(self, record, path, rng):
        if self.decoder == "torchcodec":
            return decode_frames_torchcodec(path, self.num_segments, self.transform.train, rng)
        frames = decode_video(path)
        indices = segment_indices(len(frames), self.num_segments, self.transform.train, rng)
        return frames[indices]
