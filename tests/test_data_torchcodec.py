"""Optional torchcodec decoder for video files: same frames as PyAV, corrupt files skipped, fallback and errors."""
import builtins
import logging

import numpy as np
import pytest

from adafocus.data import ClipTransform, VideoFileDataset, collate_videos
from adafocus.data import video_files
from adafocus.data.sampling import segment_indices
from test_data_lists import write_mp4

HAVE_TORCHCODEC = video_files.torchcodec_error() is None
needs_torchcodec = pytest.mark.skipif(
    not HAVE_TORCHCODEC, reason=f"torchcodec not usable: {video_files.torchcodec_error()}")


def _dataset(tmp_path, decoder, lines="clip.mp4 0\n", num_segments=5, train=False):
    (tmp_path / "list.txt").write_text(lines)
    return VideoFileDataset(str(tmp_path / "list.txt"), str(tmp_path), num_segments=num_segments,
                            transform=ClipTransform(size=32, train=train, mean=(0, 0, 0), std=(1, 1, 1)),
                            num_classes=2, decoder=decoder)


def _clip(num=12, h=32, w=48):
    frames = np.zeros((num, h, w, 3), np.uint8)
    for t in range(num):
        frames[t, :, :, 0] = 18 * t  # red encodes the frame number
        frames[t, :, : w // 2, 1] = 200  # left half green: catches a transposed layout
        frames[t, h // 2 :, :, 2] = 120  # bottom half blue
    return frames


@pytest.fixture
def no_torchcodec(monkeypatch):
    """Make `import torchcodec` fail, as on a machine without it."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torchcodec" or name.startswith("torchcodec."):
            raise ImportError(f"No module named {name!r} (monkeypatched)")
        return real_import(name, *args, **kwargs)

    video_files.torchcodec_error.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake_import)
    yield
    monkeypatch.undo()
    video_files.torchcodec_error.cache_clear()


@needs_torchcodec
@pytest.mark.parametrize("train", [False, True])
def test_torchcodec_matches_pyav(tmp_path, train):
    frames = _clip()
    write_mp4(tmp_path / "clip.mp4", frames)
    pyav, codec = _dataset(tmp_path, "pyav", train=train), _dataset(tmp_path, "torchcodec", train=train)
    assert (pyav.decoder, codec.decoder) == ("pyav", "torchcodec")
    rng = lambda: np.random.default_rng(7)  # noqa: E731 - same sampled indices for both
    a = pyav._load_frames(pyav.records[0], str(tmp_path / "clip.mp4"), rng())
    b = codec._load_frames(codec.records[0], str(tmp_path / "clip.mp4"), rng())
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape == (5, 32, 48, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3  # lossy codec, two FFmpeg builds
    expected = frames[segment_indices(12, 5, train, rng())]
    assert np.abs(b.astype(int) - expected.astype(int)).mean() < 12
    item_a, item_b = pyav[0], codec[0]
    assert item_a["video"].shape == item_b["video"].shape == (3, 5, 32, 32)
    assert (item_a["video"] - item_b["video"]).abs().mean() < 3 / 255


@needs_torchcodec
def test_torchcodec_corrupt_and_missing_videos_are_skipped_and_counted(tmp_path, caplog):
    write_mp4(tmp_path / "good.mp4", _clip(6))
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video" * 10)
    data = _dataset(tmp_path, "torchcodec", "good.mp4 0\nbad.mp4 1\nmissing.mp4 1\n", num_segments=3, train=True)
    with caplog.at_level(logging.WARNING):
        batch = collate_videos([data[i] for i in range(3)])
    assert batch["num_skipped"] == 2 and batch["video"].shape[0] == 1 and batch["label"].tolist() == [0]
    assert "bad.mp4" in caplog.text and "missing.mp4" in caplog.text
    assert collate_videos([data[1]])["video"] is None


@needs_torchcodec
def test_auto_picks_torchcodec_when_usable(tmp_path):
    write_mp4(tmp_path / "clip.mp4", _clip())
    assert _dataset(tmp_path, "auto").decoder == "torchcodec"


def test_auto_falls_back_to_pyav_without_torchcodec(tmp_path, no_torchcodec):
    frames = _clip()
    write_mp4(tmp_path / "clip.mp4", frames)
    assert video_files.torchcodec_error() is not None
    data = _dataset(tmp_path, "auto")
    assert data.decoder == "pyav"
    item = data[0]
    assert item["video"].shape == (3, 5, 32, 32)
    red = item["video"][0].mean(dim=(1, 2)).numpy() * 255
    assert np.allclose(red, frames[segment_indices(12, 5, False), 0, 0, 0], atol=12)


@pytest.mark.parametrize("error", [RuntimeError("Could not load libtorchcodec: libavutil.so.59 not found"),
                                   OSError("libavcodec.so.61: cannot open shared object file")])
def test_auto_falls_back_when_ffmpeg_libraries_missing(tmp_path, monkeypatch, error):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise error
        return real_import(name, *args, **kwargs)

    video_files.torchcodec_error.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake_import)
    try:
        write_mp4(tmp_path / "clip.mp4", _clip())
        assert _dataset(tmp_path, "auto").decoder == "pyav"
        with pytest.raises(ValueError, match="data.decoder=.torchcodec.*not usable"):
            _dataset(tmp_path, "torchcodec")
    finally:
        monkeypatch.undo()
        video_files.torchcodec_error.cache_clear()


def test_explicit_torchcodec_unavailable_is_a_clear_error(tmp_path, no_torchcodec):
    write_mp4(tmp_path / "clip.mp4", _clip())
    with pytest.raises(ValueError, match=r"data\.decoder='torchcodec'.*not usable.*ImportError") as info:
        _dataset(tmp_path, "torchcodec")
    assert "'auto' or 'pyav'" in str(info.value)


def test_unknown_decoder_is_rejected(tmp_path):
    write_mp4(tmp_path / "clip.mp4", _clip())
    with pytest.raises(ValueError, match="data.decoder='ffmpeg'.*auto, pyav, torchcodec"):
        _dataset(tmp_path, "ffmpeg")


def test_config_has_decoder_field():
    from adafocus.training.config import DataConfig

    assert DataConfig().decoder == "auto"
