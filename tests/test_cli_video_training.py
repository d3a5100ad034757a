"""Training on a list of real video files, then eval (its lowest budget always feasible) and infer on them."""
import numpy as np
import pytest
import torch
import yaml

from adafocus.apps.cli import main
from adafocus.evaluation.calibration import budget_curve, even_budgets
from adafocus.inference import EarlyExitRunner
from adafocus.model import AdaFocusV3, ModelConfig

from test_data_decoding import write_video

MODEL = {"preset": "tiny", "num_classes": 2, "glance_frames": 4, "glance_resolution": 8, "cube_size": [1, 16, 16],
         "num_cubes": 2, "glance": {"tiny_channels": [4, 8], "tiny_stride": 1},
         "local": {"tiny_channels": [4, 8], "tiny_stride": 4}, "policy_channels": 4}


def _clip(label, seed, frames=12, h=40, w=56):
    rng = np.random.default_rng(seed)
    video = np.full((frames, h, w, 3), 30, np.uint8)
    y, x = rng.integers(0, h - 12), rng.integers(0, w - 24)
    for t in range(frames):
        video[t, y : y + 12, x + t : x + t + 12] = (220, 30, 30) if label == 0 else (30, 30, 220)
    return video


def video_run_config(tmp_path, videos: int, val_videos: int, budgets: int):
    """`videos` small MP4 clips of 2 classes, a train list of all of them and a val list of the
    first `val_videos`, and a 1-epoch config training on them into tmp_path/run: its path."""
    root = tmp_path / "videos"
    root.mkdir()
    lines = []
    for i in range(videos):
        write_video(root / f"v{i}.mp4", _clip(i % 2, i), "libx264", options={"preset": "ultrafast"})
        lines.append(f"v{i}.mp4 {i % 2}\n")
    (tmp_path / "train.txt").write_text("".join(lines))
    (tmp_path / "val.txt").write_text("".join(lines[:val_videos]))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": MODEL,
        "data": {"kind": "videos", "root": str(root), "train_list": str(tmp_path / "train.txt"),
                 "val_list": str(tmp_path / "val.txt"), "num_segments": 8, "image_size": 32, "decoder": "pyav"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "threads": 1, "progress": False, "tensorboard": False,
                  "output_dir": str(tmp_path / "run")},
        "eval": {"batch_size": 4, "budgets": budgets}}))
    return config


def test_train_eval_infer_on_video_files(tmp_path, capsys):
    config = video_run_config(tmp_path, videos=8, val_videos=4, budgets=7)
    root = tmp_path / "videos"
    assert main(["train", "--config", str(config)]) == 0
    assert main(["eval", "--config", str(config)]) == 0
    assert "early exit" in capsys.readouterr().out
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert len(state["budget_thresholds"]) == 7
    assert state["budget_thresholds"][0]["budget"] == state["gflops_per_exit"][0]
    assert main(["infer", str(root / "v1.mp4"), str(root / "v2.mp4"), "--checkpoint",
                 str(tmp_path / "run" / "checkpoint.pt"), "--budget", str(state["gflops_per_exit"][0])]) == 0
    assert capsys.readouterr().out.count("top-2") == 2


@pytest.mark.parametrize("num_classes", [2, 3, 7, 10, 51, 101, 174, 200])
def test_lowest_budget_is_the_first_exits_cost_and_feasible(num_classes):
    fields = {key: value for key, value in MODEL.items() if key != "preset"}
    model = AdaFocusV3(ModelConfig.preset("tiny", **{**fields, "num_classes": num_classes})).eval()
    cost = EarlyExitRunner(model).gmacs_per_exit((1, 3, 8, 32, 32))
    budgets = even_budgets(cost, 20)
    assert budgets[0] == cost[0] and budgets[-1] == cost[-1] and all(a < b for a, b in zip(budgets, budgets[1:]))
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(len(cost), 40, num_classes, generator=generator)
    labels = torch.randint(0, num_classes, (40,), generator=generator)
    curve = budget_curve(logits, labels, cost, budgets)
    assert len(curve) == 20 and curve[0]["gflops"] <= cost[0] + 1e-12
