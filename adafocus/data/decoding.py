"""Decoding only the sampled frames of a video file, in memory that does not grow with its length.

`read_video_clip(path, num_segments, train, rng, decoder)` returns a `Clip`: the
TSN-sampled frames as uint8 (T, H, W, 3), the source-video index of each, and how
many frames the video has. Only the sampled frames are converted to RGB and kept,
so a 3-minute 720p video costs what a 3-second one does.

Decoders (`decoder=`):
- "pyav": always available (PyAV's wheels bundle FFmpeg). One demux pass reads every
  packet's timestamp and keyframe flag (no decoding), which gives the exact frame
  count and an index; decoding then runs forward from the start, seeking to the
  keyframe before a wanted frame whenever one lies past the current position, so
  long videos with sparse samples decode little more than the sampled GOPs.
- "torchcodec": optional (`pip install torchcodec`; it needs FFmpeg's shared
  libraries, e.g. Debian's `ffmpeg` package): `VideoDecoder.get_frames_at`.
- "auto": torchcodec when it imports and its FFmpeg libraries load, else PyAV.

Frame indices are 0-based in presentation order. A video whose container promises
more frames than can be decoded ("ends early", e.g. a truncated download) is sampled
from the frames that exist; `Clip.ended_early` says so and `ends_early_message` words
the warning.
"""
from __future__ import annotations

import bisect
import functools
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional, Sequence

import numpy as np

from adafocus.data.sampling import segment_indices

logger = logging.getLogger(__name__)

DECODERS = ("auto", "pyav", "torchcodec")

# A seek only pays when it skips at least this many frames: it flushes the decoder (and
# its frame threads), which costs about as much as decoding a few frames.
SEEK_MIN_SKIP = 8


@dataclass
class Clip:
    """Sampled frames of one video."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    indices: np.ndarray  # (T,) int64: the source-video frame index of each sampled frame
    num_frames: int  # frames of the video the samples were drawn from (the decodable ones)
    expected_frames: Optional[int] = None  # what the container promised, when more than num_frames

    @property
    def ended_early(self) -> bool:
        return self.expected_frames is not None and self.expected_frames > self.num_frames


def ends_early_message(clip: Clip) -> str:
    """What to tell about a clip that `ended_early`, after the video's path."""
    return (f"ends early: {clip.num_frames} of the {clip.expected_frames} frames its container lists "
            f"could be decoded (truncated or damaged file?)")


@functools.lru_cache(maxsize=None)
def torchcodec_error() -> Optional[str]:
    """None if torchcodec imports and its FFmpeg libraries load, else why not."""
    try:
        import torchcodec  # noqa: F401
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - loads the FFmpeg-linked core library
    except (ImportError, RuntimeError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def resolve_decoder(decoder: str, option: str = "data.decoder") -> str:
    """"pyav" or "torchcodec" for a decoder option value (see the module docstring)."""
    if decoder not in DECODERS:
        raise ValueError(f"{option}={decoder!r}: expected one of {', '.join(DECODERS)}")
    if decoder == "pyav":
        return "pyav"
    error = torchcodec_error()
    if error is None:
        return "torchcodec"
    if decoder == "torchcodec":
        raise ValueError(
            f"{option}='torchcodec' but torchcodec is not usable ({error}); install it with `pip install "
            "torchcodec` and FFmpeg's shared libraries (Debian/Ubuntu: `apt-get install ffmpeg`), or set "
            f"{option} to 'auto' or 'pyav'")
    return "pyav"


def read_video_clip(path: str, num_segments: int, train: bool = False, rng: Optional[np.random.Generator] = None,
                    decoder: str = "auto") -> Clip:
    """The TSN-sampled frames of the video file `path` (see the module docstring)."""
    if resolve_decoder(decoder) == "torchcodec":
        try:
            return _torchcodec_clip(path, num_segments, train, rng)
        except Exception as error:  # noqa: BLE001 - PyAV is the fallback for any file torchcodec cannot read
            logger.debug("torchcodec could not read %s (%s: %s); trying PyAV", path, type(error).__name__, error)
    return _pyav_clip(path, num_segments, train, rng)


def stack_frames(path: str, frames: Sequence[np.ndarray]) -> np.ndarray:
    """(T, H, W, 3) from same-sized frames, or an error naming the video."""
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError(f"{path}: frames differ in size ({sorted({f.shape for f in frames})})")
    return np.stack(frames)


def _container_frames(container, stream):
    """(frame count in the header or None, frame count implied by duration x frame rate or None)."""
    return stream.frames or None, _duration_frames(container, stream)


def _duration_frames(container, stream) -> Optional[int]:
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return None
    if stream.duration and stream.time_base:
        seconds = Fraction(stream.duration) * stream.time_base
    elif container.duration:
        seconds = Fraction(container.duration, 1_000_000)
    else:
        return None
    return int(round(seconds * rate))


def _promised(counted: int, header: Optional[int], by_duration: Optional[int]) -> Optional[int]:
    """The container's frame count when it exceeds the frames found (a duration estimate may be a
    frame or two off, so it counts only when clearly more)."""
    if header and header > counted:
        return header
    if not header and by_duration and by_duration > counted + max(2, int(0.02 * by_duration)):
        return by_duration
    return None


class _PacketIndex:
    """Every frame's timestamp (presentation order) and which frames are keyframes, from one demux pass."""

    def __init__(self, container, stream):
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.pts is None:
                if packet.size:
                    pts = None  # a stream without timestamps: count only
                continue
            if pts is not None:
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
        self.count = 0
        self.pts: Optional[List[int]] = None
        self.keyframes: List[int] = []
        if pts is None:
            return
        order = sorted(range(len(pts)), key=pts.__getitem__)
        self.count = len(pts)
        sorted_pts = [pts[i] for i in order]
        if len(set(sorted_pts)) == len(sorted_pts):  # unique timestamps: frames can be found by pts
            self.pts = sorted_pts
            self.keyframes = [rank for rank, i in enumerate(order) if keys[i]]

    def index_of(self, pts: int) -> int:
        return min(bisect.bisect_left(self.pts, pts), len(self.pts) - 1)

    def keyframe_before(self, index: int) -> int:
        k = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[k] if k >= 0 else 0


def _open(path: str):
    import av

    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _to_rgb(frame) -> np.ndarray:
    """The one place a decoded frame becomes an RGB array (only sampled frames get here)."""
    return frame.to_ndarray(format="rgb24")


def _pyav_decode(path: str, wanted: Sequence[int], index: Optional[_PacketIndex]):
    """RGB frames for the sorted unique `wanted` indices ({index: frame}) and the number of frames
    decoded when the stream ended before the last wanted one (None if it did not)."""
    out: Dict[int, np.ndarray] = {}
    container, stream = _open(path)
    with container:
        seekable = index is not None and index.pts is not None
        frames = container.decode(stream)
        position = 0  # index of the next frame `frames` yields
        k = 0
        while k < len(wanted):
            target = wanted[k]
            if seekable:
                key = index.keyframe_before(target)
                if key - position >= SEEK_MIN_SKIP:
                    container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                    position = None
            frame = next(frames, None)
            if frame is None:
                return out, (position or 0)
            if seekable and frame.pts is not None:
                current = index.index_of(frame.pts)
            elif position is not None:
                current = position
            else:  # after a seek with no timestamp to place the frame: start over without seeking
                return _pyav_decode(path, wanted, None)
            while k < len(wanted) and wanted[k] <= current:
                if wanted[k] == current or wanted[k] not in out:
                    out[wanted[k]] = _to_rgb(frame)
                k += 1
            position = current + 1
    return out, None


def _pyav_count_decodable(path: str) -> int:
    container, stream = _open(path)
    with container:
        return sum(1 for _ in container.decode(stream))


def _pyav_clip(path: str, num_segments: int, train: bool, rng) -> Clip:
    container, stream = _open(path)
    with container:
        header, by_duration = _container_frames(container, stream)
        index = _PacketIndex(container, stream)
    count = index.count or header or by_duration
    if index.count == 0 and not count:
        count = _pyav_count_decodable(path)
    if not count:
        raise ValueError(f"{path} has no frames")
    rng_state = None if rng is None else rng.bit_generator.state
    indices = segment_indices(count, num_segments, train, rng)
    wanted = sorted(set(indices.tolist()))
    decoded, ended_at = _pyav_decode(path, wanted, index if index.count else None)
    if ended_at is not None:  # fewer frames decode than were demuxed: sample from those that do
        count = ended_at if index.pts is None else _pyav_count_decodable(path)
        if count == 0:
            raise ValueError(f"{path}: no frame could be decoded")
        if rng_state is not None:  # the same random offsets as the first draw, over the frames that exist
            rng.bit_generator.state = rng_state
        indices = segment_indices(count, num_segments, train, rng)
        wanted = sorted(set(indices.tolist()))
        decoded, ended_at = _pyav_decode(path, wanted, None)
        if ended_at is not None:
            raise ValueError(f"{path}: decoding is not repeatable (stopped at frame {ended_at}, then earlier)")
    frames = stack_frames(path, [decoded[i] for i in indices.tolist()])
    return Clip(frames, indices.astype(np.int64), count, _promised(count, header, by_duration))


def _torchcodec_clip(path: str, num_segments: int, train: bool, rng) -> Clip:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC")
    count = len(decoder)
    if count <= 0:
        raise ValueError(f"{path} has no frames")
    container, stream = _open(path)  # the container's own promise, read the same way as for PyAV
    with container:
        header, by_duration = _container_frames(container, stream)
    indices = segment_indices(count, num_segments, train, rng)
    batch = decoder.get_frames_at([int(i) for i in indices])
    frames = np.ascontiguousarray(batch.data.numpy())
    return Clip(frames, indices.astype(np.int64), count, _promised(count, header, by_duration))
