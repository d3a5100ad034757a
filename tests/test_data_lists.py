"""List files, frame folders and video files (PyAV), TSN sampling, clip transforms, corrupt-file skipping."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from adafocus.data import ClipTransform, FrameFolderDataset, VideoFileDataset, collate_videos, parse_list_file
from adafocus.data.sampling import segment_indices


def _frames(num, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num, h, w, 3), dtype=np.uint8)


def write_frame_folder(folder, frames, tmpl="img_{:05d}.png"):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / tmpl.format(i + 1))


def write_mp4(path, frames, fps=8):
    from test_data_decoding import write_video

    write_video(path, frames, "mpeg4", fps)


def test_list_formats_space_comma_multilabel(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# comment\nvid/a 30 3\n\nvid/b,12,1,4\nvid/c 8 0 2 5\n")
    records = parse_list_file(str(path), has_num_frames=True, num_classes=6)
    assert [(r.path, r.num_frames, r.labels) for r in records] == [
        ("vid/a", 30, (3,)), ("vid/b", 12, (1, 4)), ("vid/c", 8, (0, 2, 5))]
    videos = tmp_path / "videos.txt"
    videos.write_text("a.mp4 2\nb.mp4,0,1\n")
    assert [r.labels for r in parse_list_file(str(videos), has_num_frames=False)] == [(2,), (0, 1)]


@pytest.mark.parametrize("line, message", [
    ("vid/a 30 6", "outside"), ("vid/a 30 -1", "outside"), ("vid/a x 1", "num_frames"), ("vid/a 30", "expected")])
def test_list_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        parse_list_file(str(path), has_num_frames=True, num_classes=6)
    assert "bad.txt:1" in str(info.value)


def test_segment_sampling():
    assert segment_indices(16, 4, train=False).tolist() == [2, 6, 10, 14]
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = segment_indices(16, 4, train=True, rng=rng)
        assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(idx))
    assert segment_indices(3, 8, train=False).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short video: repeats
    with pytest.raises(ValueError, match="num_frames"):
        segment_indices(0, 4, train=False)


def test_transform_same_crop_for_every_frame_and_no_flip_option():
    clip = np.zeros((4, 40, 60, 3), np.uint8)
    clip[:, :, :30] = 255  # left half white in every frame
    eval_out = ClipTransform(size=32, train=False, mean=(0, 0, 0), std=(1, 1, 1))(clip)
    assert eval_out.shape == (3, 4, 32, 32)
    assert torch.allclose(eval_out[:, 0], eval_out[:, 3])
    no_flip = ClipTransform(size=32, train=True, flip=False, mean=(0, 0, 0), std=(1, 1, 1))
    for seed in range(10):
        out = no_flip(clip, np.random.default_rng(seed))
        assert torch.equal(out[:, 0], out[:, 2])  # one crop for the whole clip
        assert out[0, 0, :, 0].mean() >= out[0, 0, :, -1].mean()  # never mirrored: white stays left
    flips = [ClipTransform(size=32, train=True, mean=(0, 0, 0), std=(1, 1, 1))(clip, np.random.default_rng(s))[0, 0, 0, 0] < 0.5
             for s in range(20)]
    assert any(flips)  # with flip=True some clips are mirrored


def test_frame_folder_dataset(tmp_path):
    frames = _frames(12)
    write_frame_folder(tmp_path / "frames" / "v0", frames)
    (tmp_path / "list.txt").write_text("v0 12 3\n")
    transform = ClipTransform(size=16, train=False, mean=(0, 0, 0), std=(1, 1, 1))
    data = FrameFolderDataset(str(tmp_path / "list.txt"), str(tmp_path / "frames"), num_segments=4,
                              transform=transform, num_classes=5, filename_tmpl="img_{:05d}.png")
    item = data[0]
    assert item["label"] == 3 and item["video"].shape == (3, 4, 16, 16)
    expected = transform(frames[segment_indices(12, 4, train=False)])
    assert torch.allclose(item["video"], expected)


def test_video_file_dataset_decodes_mp4(tmp_path):
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    for t in range(10):
        frames[t, :, :, 0] = 20 * t  # red channel encodes the frame number
    write_mp4(tmp_path / "clip.mp4", frames)
    (tmp_path / "list.txt").write_text("clip.mp4 1 2\n")
    data = VideoFileDataset(str(tmp_path / "list.txt"), str(tmp_path), num_segments=5,
                            transform=ClipTransform(size=32, train=False, mean=(0, 0, 0), std=(1, 1, 1)),
                            num_classes=3, multi_label=True)
    item = data[0]
    assert item["video"].shape == (3, 5, 32, 32)
    assert item["label"].tolist() == [0.0, 1.0, 1.0]
    red = item["video"][0].mean(dim=(1, 2)) * 255  # center frames 1, 3, 5, 7, 9
    assert np.allclose(red.numpy(), [20, 60, 100, 140, 180], atol=12)


def test_corrupt_and_missing_videos_are_skipped_and_counted(tmp_path, caplog):
    write_mp4(tmp_path / "good.mp4", _frames(6, 32, 32))
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video" * 10)
    (tmp_path / "list.txt").write_text("good.mp4 0\nbad.mp4 1\nmissing.mp4 1\n")
    data = VideoFileDataset(str(tmp_path / "list.txt"), str(tmp_path), num_segments=3,
                            transform=ClipTransform(size=16, train=True), num_classes=2)
    with caplog.at_level(logging.WARNING):
        batch = collate_videos([data[i] for i in range(3)])
    assert batch["num_skipped"] == 2 and batch["video"].shape[0] == 1 and batch["label"].tolist() == [0]
    assert "bad.mp4" in caplog.text and "missing.mp4" in caplog.text
    assert collate_videos([data[1]])["video"] is None
