"""Calibration on a split the report does not use: with no separate test list the early-exit
thresholds are solved on a fixed slice of the training list, which training leaves out."""
import json

import numpy as np
import pytest

from adafocus.data import build_dataset, calibration_holdout, split_sources
from adafocus.data.list_file import VideoRecord
from adafocus.training.config import DataConfig, RunConfig

from test_data_lists import write_frame_folder
from train_helpers import TINY


def records(n, prefix="v"):
    return [VideoRecord(f"{prefix}{i}", 6, (i % 3,)) for i in range(n)]


def test_holdout_is_a_fixed_partition_that_ignores_the_list_order():
    listed = records(200)
    train, held = calibration_holdout(listed, 0.1)
    assert len(held) == 20 and len(train) == 180
    assert sorted(train + held) == list(range(200)) and train == sorted(train) and held == sorted(held)
    assert calibration_holdout(listed, 0.1) == (train, held)  # no seed, no state: always the same videos
    held_paths = {listed[i].path for i in held}
    shuffled = [listed[i] for i in np.random.default_rng(0).permutation(200)]
    assert {shuffled[i].path for i in calibration_holdout(shuffled, 0.1)[1]} == held_paths
    assert held != list(range(20))  # not simply the first lines
    assert calibration_holdout(listed, 0.0) == (list(range(200)), [])
    assert len(calibration_holdout(records(9), 0.05)[1]) == 1  # a positive fraction holds out >= 1 video


@pytest.mark.parametrize("fraction, match", [(1.0, r"\[0, 1\)"), (-0.1, r"\[0, 1\)"), (0.9, "leaving none")])
def test_holdout_refuses_fractions_that_leave_nothing(fraction, match):
    with pytest.raises(ValueError, match=match):
        calibration_holdout(records(2), fraction)


def test_config_range_names_the_field():
    with pytest.raises(ValueError, match=r"data.calibration_fraction=1.5: expected a number in \[0, 1\)"):
        RunConfig.from_dict({"data": {"calibration_fraction": 1.5}})


def write_lists(tmp_path, n_train=40):
    (tmp_path / "train.txt").write_text("".join(f"t{i} 6 {i % 3}\n" for i in range(n_train)))
    (tmp_path / "val.txt").write_text("".join(f"v{i} 6 {i % 3}\n" for i in range(10)))
    (tmp_path / "test.txt").write_text("".join(f"s{i} 6 {i % 3}\n" for i in range(7)))
    return {"kind": "frames", "root": str(tmp_path), "train_list": str(tmp_path / "train.txt"),
            "val_list": str(tmp_path / "val.txt"), "num_segments": 4, "image_size": 32}


def paths(dataset):
    return [r.path for r in dataset.records]


def test_without_a_test_list_calibration_is_held_out_of_training(tmp_path):
    data = DataConfig(**write_lists(tmp_path), calibration_fraction=0.25)
    train, val, test = (build_dataset(data, split, 3) for split in ("train", "val", "test"))
    assert len(val) == 10 and len(train) == 30
    assert set(paths(train)).isdisjoint(paths(val)) and set(paths(train)) | set(paths(val)) == {f"t{i}" for i in range(40)}
    assert paths(test) == [f"v{i}" for i in range(10)]  # reported on val_list, which calibration never sees
    assert not val.transform.train  # evaluation preprocessing on the held-out slice
    sources = split_sources(data)
    assert "0.25 of data.train_list" in sources["calibration"] and "held out from training" in sources["calibration"]
    assert sources["report"].startswith("data.val_list") and sources["calibration_is_report"] is False


def test_with_a_test_list_val_list_calibrates_and_training_keeps_everything(tmp_path):
    data = DataConfig(**write_lists(tmp_path), test_list=str(tmp_path / "test.txt"), calibration_fraction=0.25)
    assert len(build_dataset(data, "train", 3)) == 40
    assert paths(build_dataset(data, "val", 3))[0] == "v0" and paths(build_dataset(data, "test", 3))[0] == "s0"
    assert split_sources(data)["calibration"].startswith("data.val_list")
    assert split_sources(data)["report"].startswith("data.test_list")


@pytest.mark.parametrize("same_as_train", [False, True])
def test_no_holdout_is_flagged_as_calibrating_on_the_report_split(tmp_path, same_as_train):
    lists = write_lists(tmp_path)
    if same_as_train:  # reporting on the training list: nothing is held out anyway
        data = DataConfig(**{**lists, "val_list": lists["train_list"]}, calibration_fraction=0.25)
    else:
        data = DataConfig(**lists, calibration_fraction=0.0)
    assert len(build_dataset(data, "train", 3)) == 40
    assert paths(build_dataset(data, "val", 3)) == paths(build_dataset(data, "test", 3))
    sources = split_sources(data)
    assert sources["calibration_is_report"] is True and "optimistic" in sources["calibration"]


def test_synthetic_task_keeps_its_val_and_test():
    data = RunConfig.from_dict(TINY).data
    assert len(build_dataset(data, "val", 10)) == 16 and len(build_dataset(data, "train", 10)) == 32
    assert split_sources(data) == {"calibration": "the synthetic val split", "report": "the synthetic test split",
                                   "calibration_is_report": False}


def test_train_then_eval_uses_the_held_out_slice(tmp_path):
    from adafocus.apps.evaluate import evaluate_checkpoint
    from adafocus.evaluation import format_report
    from adafocus.training.trainer import Trainer

    rng = np.random.default_rng(0)
    for name in [f"t{i}" for i in range(12)] + [f"v{i}" for i in range(5)]:
        write_frame_folder(tmp_path / "frames" / name, rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
    (tmp_path / "train.txt").write_text("".join(f"t{i} 6 {i % 3}\n" for i in range(12)))
    (tmp_path / "val.txt").write_text("".join(f"v{i} 6 {i % 3}\n" for i in range(5)))
    config = RunConfig.from_dict({
        "model": {**TINY["model"], "num_classes": 3},
        "data": {"kind": "frames", "root": str(tmp_path / "frames"), "train_list": str(tmp_path / "train.txt"),
                 "val_list": str(tmp_path / "val.txt"), "num_segments": 4, "image_size": 32,
                 "filename_tmpl": "img_{:05d}.png", "flip": False, "calibration_fraction": 0.25},
        "train": {**TINY["train"], "epochs": 1, "random_policy_epochs": 1, "batch_size": 3,
                  "output_dir": str(tmp_path / "run")},
        "eval": {"batch_size": 4, "budgets": 3},
    })
    trainer = Trainer(config)
    held = set(paths(build_dataset(config.data, "val", 3)))
    assert len(held) == 3 and held.isdisjoint(paths(trainer.train_set)) and len(trainer.train_set) == 9
    trainer.fit()
    trainer.close()
    report = evaluate_checkpoint(config, progress=False)
    splits = report["splits"]
    assert splits["num_calibration_videos"] == 3 and splits["num_report_videos"] == 5
    assert "held out from training" in splits["calibration"] and "val.txt" in splits["report"]
    with open(report["curve_json"]) as f:
        assert json.load(f)["splits"] == splits
    text = format_report(report)
    assert "thresholds solved on 3 videos: 0.25 of data.train_list" in text and "reported on 5 videos: data.val_list" in text


def test_eval_refuses_a_slice_the_checkpoint_was_trained_on(tmp_path):
    from adafocus.apps.evaluate import check_calibration_unseen

    lists = write_lists(tmp_path)
    data = DataConfig(**lists, calibration_fraction=0.25)
    check_calibration_unseen(data, {**lists, "calibration_fraction": 0.25}, "run.pt")  # the same slice
    check_calibration_unseen(data, None, "run.pt")  # not a trainer checkpoint: nothing to compare
    with pytest.raises(ValueError, match="run.pt was trained on the whole training list"):
        check_calibration_unseen(data, dict(lists), "run.pt")  # before calibration_fraction existed
    with pytest.raises(ValueError, match="holding out 0.1 of"):
        check_calibration_unseen(data, {**lists, "calibration_fraction": 0.1}, "run.pt")
    with pytest.raises(ValueError, match="whole training list"):  # trained with a test list: no slice
        check_calibration_unseen(data, {**lists, "test_list": str(tmp_path / "test.txt")}, "run.pt")
    # Calibrating on val_list (a test list is given) needs no slice, whatever training did.
    check_calibration_unseen(DataConfig(**lists, test_list=str(tmp_path / "test.txt")), dict(lists), "run.pt")
