"""The `adafocus` command: a tiny train -> eval -> infer -> bench cycle, and --help for every option."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from adafocus.apps.cli import build_parser, main
from adafocus.training.config import DataConfig, EvalConfig, TrainConfig
from adafocus.data.synthetic import SyntheticConfig, render_video

from train_helpers import TINY, tiny_config


def test_tiny_train_eval_infer_bench_cycle(tmp_path, capsys):
    config = tiny_config(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--config", config, "--train.output_dir", str(out), "--train.epochs", "2"]) == 0
    checkpoint = out / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    assert state["epoch"] == 2 and (out / "config.yaml").exists()

    assert main(["eval", "--config", config, "--train.output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "early exit" in printed and "cube hit rate" in printed
    report = json.loads((out / "curve.json").read_text())
    assert len(report["test"]["top1"]) == 3 and len(report["curve"]) == 5
    assert (out / "curve.png").stat().st_size > 1000
    state = torch.load(checkpoint, weights_only=False)
    assert len(state["budget_thresholds"]) == 5 and len(state["thresholds"]) == 3

    # Inputs in three forms: an mp4, a frame folder and a .npy array of a synthetic test video.
    video, label, _, _ = render_video(SyntheticConfig.from_dict(TINY["data"]["synthetic"]), "test", 0)
    np.save(tmp_path / "clip.npy", video)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(video):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    from test_data_lists import write_mp4

    write_mp4(tmp_path / "clip.mp4", video)
    sheet = tmp_path / "cubes.png"
    budget = report["gflops_per_exit"][-1]
    assert main(["infer", str(tmp_path / "clip.npy"), str(folder), str(tmp_path / "clip.mp4"),
                 "--checkpoint", str(checkpoint), "--top-k", "3", "--budget", str(budget),
                 "--save-cubes", str(sheet)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("top-3") == 3 and "GFLOPs" in printed and "exit" in printed
    assert sheet.stat().st_size > 1000

    assert main(["bench", "--config", config, "--checkpoint", str(checkpoint), "--batch-size", "4",
                 "--iterations", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["videos_per_s"]["baseline"] > 0 and result["videos_per_s"]["early_exit"] > 0


def test_help_explains_every_option():
    parser = build_parser()
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    for klass, section in ((DataConfig, "data"), (TrainConfig, "train"), (EvalConfig, "eval")):
        for name in klass.__dataclass_fields__:
            assert f"--{section}.{name}" in train_help
    assert "--model.cube_size" in train_help and "--resume" in train_help
    for command in ("eval", "infer", "bench", "demo"):
        text = parser._subparsers._group_actions[0].choices[command].format_help()
        assert "usage" in text


def test_python_dash_m_help_and_bad_option(tmp_path):
    done = subprocess.run([sys.executable, "-m", "adafocus", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout and "demo" in done.stdout
    config = tiny_config(tmp_path, train={**TINY["train"], "optimizer": "lion"})
    assert main(["train", "--config", config]) == 2


def test_override_types_are_parsed(tmp_path):
    from adafocus.apps.cli import build_parser
    from adafocus.training.config import config_from_args

    args = build_parser().parse_args(["train", "--config", tiny_config(tmp_path), "--train.lr", "0.5",
                                      "--data.flip", "false", "--model.cube_size", "[1, 8, 8]",
                                      "--set", "train.lr_multipliers={policy: 2.0}"])
    config = config_from_args(args)
    assert config.train.lr == 0.5 and config.data.flip is False
    assert config.model_config().cube_size == (1, 8, 8)
    assert config.train.lr_multipliers == {"policy": 2.0}
    with pytest.raises(ValueError, match="unknown train option"):
        config_from_args(build_parser().parse_args(["train", "--set", "train.learning_rate=1"]))
