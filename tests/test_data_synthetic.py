"""The synthetic "find the red digit" task: deterministic, split-disjoint, evidence where the box says."""
import numpy as np
import pytest
import torch

from adafocus.data.synthetic import SyntheticConfig, SyntheticVideos, TARGET_COLOR, _digit_pool, load_split, render_video

SMALL = SyntheticConfig(num_frames=8, height=32, width=32, train_size=6, val_size=4, test_size=4, digit_size=(8, 10))


def test_same_seed_same_video_and_any_order():
    a = [render_video(SMALL, "train", i) for i in range(4)]
    b = [render_video(SMALL, "train", i) for i in reversed(range(4))][::-1]
    for (va, la, ba, da), (vb, lb, bb, db) in zip(a, b):
        assert np.array_equal(va, vb) and la == lb and np.array_equal(ba, bb) and da == db


def test_seed_and_split_change_the_video():
    v0 = render_video(SMALL, "train", 0)[0]
    assert not np.array_equal(v0, render_video(SyntheticConfig(**{**SMALL.__dict__, "seed": 1}), "train", 0)[0])
    assert not np.array_equal(v0, render_video(SMALL, "val", 0)[0])


def test_train_and_eval_digit_images_are_disjoint():
    train, evaluation = _digit_pool("train", 0.25), _digit_pool("test", 0.25)
    assert len(np.intersect1d(train, evaluation)) == 0
    assert len(train) + len(evaluation) == 1797


def test_target_box_holds_the_red_digit():
    config = SyntheticConfig(num_frames=8, height=32, width=32, noise=(0.0, 0.0), contrast=(1.0, 1.0))
    for index in range(5):
        video, label, box, _ = render_video(config, "test", index)
        t0, t1, y0, y1, x0, x1 = box
        assert 0 <= label < 10 and 0 <= t0 < t1 <= 8 and 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
        inside = video[t0:t1, y0:y1, x0:x1].astype(float)
        redness = inside[..., 0] - inside[..., 1:].max(-1)
        assert redness.max() > 150  # a strongly red pixel inside the box
        outside = video.astype(float).copy()
        outside[t0:t1, y0:y1, x0:x1] = 0
        assert (outside[..., 0] - outside[..., 1:].max(-1)).max() < 100  # nothing else is that red


def test_labels_cover_all_classes():
    config = SyntheticConfig(num_frames=6, height=24, width=24, digit_size=(8, 8), duration=(2, 4))
    labels = {render_video(config, "train", i)[1] for i in range(200)}
    assert labels == set(range(10))


def test_dataset_items_and_cache(tmp_path):
    data = SyntheticVideos(SMALL, "val", cache_dir=str(tmp_path))
    assert len(data) == 4
    item = data[1]
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert item["target_box"].shape == (6,) and isinstance(item["label"], int)
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1
    again = SyntheticVideos(SMALL, "val", cache_dir=str(tmp_path))
    assert torch.equal(again[1]["video"], item["video"])
    fresh = SyntheticVideos(SMALL, "val", cache_dir=None, in_memory=False)
    assert torch.equal(fresh[1]["video"], item["video"])
    with pytest.raises(IndexError):
        data[4]


def test_bad_split_and_option_are_named():
    with pytest.raises(ValueError, match="split"):
        render_video(SMALL, "training", 0)
    with pytest.raises(ValueError, match="colour"):
        SyntheticConfig.from_dict({"colour": 1})
