"""Decoding only the sampled frames: exact indices in every container, seeking = forward decoding,
bounded work and memory, videos that end early, and the readers `infer` shares with the datasets."""
import logging

import numpy as np
import pytest

from adafocus.data import ClipTransform, VideoFileDataset, collate_videos, decoding, read_clip
from adafocus.data.sampling import segment_indices

HAVE_TORCHCODEC = decoding.torchcodec_error() is None
DECODERS = ["pyav"] + (["torchcodec"] if HAVE_TORCHCODEC else [])


def numbered_frames(num, h=32, w=48):
    """Frames whose red channel encodes the frame number (step 4, so 64 frames fit in 0..255)."""
    frames = np.zeros((num, h, w, 3), np.uint8)
    for t in range(num):
        frames[t, :, :, 0] = (4 * t) % 256
        frames[t, :, : w // 2, 1] = 200  # left half green: catches a transposed layout
    return frames


def write_video(path, frames, codec="mpeg4", fps=8, options=None, container_options=None):
    import av

    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 20_000_000  # near-lossless: the frame numbers must survive
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_numbers(clip_frames):
    right = clip_frames[:, :, clip_frames.shape[2] // 2 :, 0]  # the half without green: no chroma crosstalk
    return np.round(right.astype(float).mean(axis=(1, 2)) / 4).astype(int)


CONTAINERS = [("clip.mp4", "mpeg4", {"g": "10"}), ("clip.mkv", "mpeg4", {"g": "10"}),
              ("clip.avi", "mpeg4", {"g": "10"}), ("clip.webm", "libvpx-vp9", {"g": "10"}),
              ("x264.mp4", "libx264", {"g": "10", "preset": "ultrafast"})]


class _CountingContainer:
    """An av container whose seeks are counted."""

    def __init__(self, container, counter):
        self._container, self._counter = container, counter

    def seek(self, *args, **kwargs):
        self._counter["seeks"] += 1
        return self._container.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)


@pytest.fixture
def counted(monkeypatch):
    """Counts of frames converted to RGB and of seeks in the PyAV reader."""
    counter = {"rgb": 0, "seeks": 0}
    real_open, real_rgb = decoding._open, decoding._to_rgb

    def counting_open(path):
        container, stream = real_open(path)
        return _CountingContainer(container, counter), stream

    def counting_rgb(frame):
        counter["rgb"] += 1
        return real_rgb(frame)

    monkeypatch.setattr(decoding, "_open", counting_open)
    monkeypatch.setattr(decoding, "_to_rgb", counting_rgb)
    return counter


@pytest.mark.parametrize("name, codec, options", CONTAINERS)
def test_sampled_frames_are_the_right_ones_with_and_without_seeking(tmp_path, monkeypatch, counted, name, codec, options):
    frames = numbered_frames(64)
    write_video(tmp_path / name, frames, codec, options=options)
    clips = {}
    for mode, skip in (("forward", 10**9), ("seek", 1)):
        monkeypatch.setattr(decoding, "SEEK_MIN_SKIP", skip)
        counted["seeks"] = 0
        for train in (False, True):
            clip = decoding.read_video_clip(str(tmp_path / name), 8, train, np.random.default_rng(5), "pyav")
            clips[mode, train] = clip
        clips[mode, "seeks"] = counted["seeks"]
    assert clips["forward", "seeks"] == 0 and clips["seek", "seeks"] > 0
    for train in (False, True):
        forward, seek = clips["forward", train], clips["seek", train]
        expected = segment_indices(64, 8, train, np.random.default_rng(5))
        assert forward.indices.tolist() == seek.indices.tolist() == expected.tolist()
        assert forward.num_frames == 64 and not forward.ended_early
        assert forward.frames.shape == (8, 32, 48, 3) and forward.frames.dtype == np.uint8
        assert np.array_equal(forward.frames, seek.frames)  # the same decoded pictures either way
        assert np.abs(frame_numbers(forward.frames) - expected).max() <= 1  # lossy codec
        assert forward.frames[:, :, :24, 1].mean() > 150 > forward.frames[:, :, 24:, 1].mean()


def test_only_the_sampled_frames_are_converted_to_rgb(tmp_path, counted):
    write_video(tmp_path / "long.mp4", numbered_frames(600, 16, 16), options={"g": "25"})
    clip = decoding.read_video_clip(str(tmp_path / "long.mp4"), 16, False, None, "pyav")
    assert clip.num_frames == 600 and len(clip.frames) == 16
    assert counted["rgb"] == 16
    assert 0 < counted["seeks"] <= 16  # sparse samples of a long video: seek to their GOPs


def test_short_video_repeats_frames_and_converts_each_once(tmp_path, counted):
    write_video(tmp_path / "short.mp4", numbered_frames(3))
    clip = decoding.read_video_clip(str(tmp_path / "short.mp4"), 8, False, None, "pyav")
    assert clip.indices.tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and counted["rgb"] == 3
    assert frame_numbers(clip.frames).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def _truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("name, container_options", [("cut.mkv", None), ("cut.mp4", {"movflags": "faststart"})])
def test_video_that_ends_early_is_sampled_from_what_decodes_and_reported(tmp_path, caplog, name, container_options):
    write_video(tmp_path / name, numbered_frames(64), container_options=container_options)
    _truncate(tmp_path / name, 0.5)
    clip = decoding.read_video_clip(str(tmp_path / name), 4, False, None, "pyav")
    assert clip.ended_early and clip.expected_frames == 64 and 10 < clip.num_frames < 60
    assert clip.indices.tolist() == segment_indices(clip.num_frames, 4, False).tolist()
    assert np.abs(frame_numbers(clip.frames) - clip.indices).max() <= 1
    assert f"{clip.num_frames} of the 64 frames" in decoding.ends_early_message(clip)
    (tmp_path / "list.txt").write_text(f"{name} 0\n")
    data = VideoFileDataset(str(tmp_path / "list.txt"), str(tmp_path), num_segments=4,
                            transform=ClipTransform(size=16, train=False), num_classes=1, decoder="pyav")
    with caplog.at_level(logging.WARNING):
        item = data[0]
    assert item["video"].shape == (3, 4, 16, 16)
    assert name in caplog.text and f"{clip.num_frames} of the 64 frames" in caplog.text


def test_mp4_cut_before_its_index_is_an_error_naming_the_file(tmp_path):
    write_video(tmp_path / "cut.mp4", numbered_frames(40))  # moov atom at the end: cut it off
    _truncate(tmp_path / "cut.mp4", 0.6)
    with pytest.raises(ValueError, match="cut.mp4"):
        read_clip(str(tmp_path / "cut.mp4"), 4)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not a video at all" * 20, "cut.mp4|Invalid data")])
def test_empty_and_non_video_files_are_errors(tmp_path, content, message):
    (tmp_path / "cut.mp4").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_clip(str(tmp_path / "cut.mp4"), 4)


def test_frame_folder_reads_only_the_sampled_images(tmp_path, monkeypatch):
    from PIL import Image

    from adafocus.data import frames as frames_module

    folder = tmp_path / "video"
    folder.mkdir()
    for t, frame in enumerate(numbered_frames(40, 8, 8)):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(frames_module.Image, "open", lambda p, *a, **k: (opened.append(p), real_open(p, *a, **k))[1])
    clip = read_clip(str(folder), 5)
    assert len(opened) == 5 and clip.num_frames == 40
    assert frame_numbers(clip.frames).tolist() == clip.indices.tolist() == [4, 12, 20, 28, 36]


def test_npy_array_is_memory_mapped_and_checked(tmp_path):
    np.save(tmp_path / "v.npy", numbered_frames(20, 4, 4))
    clip = read_clip(str(tmp_path / "v.npy"), 4)
    assert clip.indices.tolist() == [2, 7, 12, 17] and frame_numbers(clip.frames).tolist() == [2, 7, 12, 17]
    np.save(tmp_path / "f.npy", np.zeros((4, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="f.npy.*uint8"):
        read_clip(str(tmp_path / "f.npy"), 4)
    np.save(tmp_path / "s.npy", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"s.npy.*\(T, H, W, 3\)"):
        read_clip(str(tmp_path / "s.npy"), 4)


def test_dataset_and_infer_read_through_the_same_function(tmp_path):
    write_video(tmp_path / "clip.webm", numbered_frames(30), "libvpx-vp9")
    (tmp_path / "list.txt").write_text("clip.webm 0\n")
    data = VideoFileDataset(str(tmp_path / "list.txt"), str(tmp_path), num_segments=6,
                            transform=ClipTransform(size=32, train=False, mean=(0, 0, 0), std=(1, 1, 1)),
                            num_classes=1, decoder="pyav")
    clip = read_clip(str(tmp_path / "clip.webm"), 6, decoder="pyav")
    transform = ClipTransform(size=32, train=False, mean=(0, 0, 0), std=(1, 1, 1))
    assert np.allclose(data[0]["video"].numpy(), transform(clip.frames).numpy())
    assert collate_videos([data[0]])["video"].shape == (1, 3, 6, 32, 32)


@pytest.mark.skipif(not HAVE_TORCHCODEC, reason=f"torchcodec not usable: {decoding.torchcodec_error()}")
@pytest.mark.parametrize("name, codec, options", CONTAINERS[:1] + CONTAINERS[3:])
def test_torchcodec_gives_the_same_indices_and_pictures(tmp_path, name, codec, options):
    write_video(tmp_path / name, numbered_frames(64), codec, options=options)
    for train in (False, True):
        a = decoding.read_video_clip(str(tmp_path / name), 8, train, np.random.default_rng(2), "pyav")
        b = decoding.read_video_clip(str(tmp_path / name), 8, train, np.random.default_rng(2), "torchcodec")
        assert a.indices.tolist() == b.indices.tolist() and a.num_frames == b.num_frames == 64
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3


@pytest.mark.skipif(not HAVE_TORCHCODEC, reason=f"torchcodec not usable: {decoding.torchcodec_error()}")
def test_torchcodec_reports_a_video_that_ends_early(tmp_path):
    write_video(tmp_path / "cut.mkv", numbered_frames(64))
    _truncate(tmp_path / "cut.mkv", 0.5)
    clip = decoding.read_video_clip(str(tmp_path / "cut.mkv"), 4, False, None, "torchcodec")
    assert clip.ended_early and clip.num_frames < 64


def test_decode_benchmark_worker_reports_speed_and_memory(tmp_path):
    from benchmarks.bench_decode import worker, write_video as write_bench_video

    path = str(tmp_path / "b.mp4")
    write_bench_video(path, 1.0, 64, 48, 12)
    for variant in DECODERS + ["pyav_forward"]:
        result = worker(variant, path, 4, 2)
        assert result["num_frames"] == 12 and result["seconds_per_clip"] > 0
        assert result["peak_rss_mb"] >= result["rss_before_mb"] > 0
