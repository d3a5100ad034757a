"""`adafocus flops`: GMACs per exit and of the full-video baseline for any config, no data or weights."""
import json
from pathlib import Path

import pytest

from adafocus.apps.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def flops_json(capsys, *argv) -> dict:
    assert main(["flops", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_paper_tsm_matches_the_paper_arithmetic(capsys):
    report = flops_json(capsys, "--config", str(CONFIGS / "paper_tsm.yaml"))
    assert report["gmacs_per_exit"] == pytest.approx([2.40, 18.82, 34.84], rel=0.02)
    assert report["baseline"]["gmacs"] == pytest.approx(35.1, rel=0.02)  # Table 3's TSM+
    assert report["baseline"]["local_frames"] == 8 and report["video_shape"] == [3, 24, 224, 224]
    parts = report["components"]
    assert report["gmacs_per_exit"][1] - report["gmacs_per_exit"][0] == pytest.approx(
        parts["policy"] + parts["local_cube"] + parts["local_head"])


def test_any_config_and_overrides_and_the_table(capsys):
    # The data paths of paper_long do not exist here: nothing is read.
    report = flops_json(capsys, "--config", str(CONFIGS / "paper_long_96.yaml"))
    assert len(report["gmacs_per_exit"]) == 19
    assert report["components"]["local_cube"] == pytest.approx(0.7507, rel=0.01)  # ResNet-50 on 96x96
    report = flops_json(capsys, "--config", str(CONFIGS / "paper_long.yaml"), "--model.num_cubes", "4",
                        "--model.policy", "random")
    assert len(report["gmacs_per_exit"]) == 5
    steps = [b - a for a, b in zip(report["gmacs_per_exit"], report["gmacs_per_exit"][1:])]
    assert steps[0] == pytest.approx(steps[1])  # random cubes run no policy network
    assert main(["flops", "--config", str(CONFIGS / "demo.yaml")]) == 0
    text = capsys.readouterr().out
    assert "exit  4 (+cube 4)" in text and "full-video baseline (TSM+)" in text


def test_more_frame_wise_cubes_than_candidate_frames_is_one_line_naming_the_fields(capsys):
    assert main(["flops", "--config", str(CONFIGS / "paper_long.yaml"), "--data.num_segments", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adafocus flops: error: model.num_cubes=18 frame-wise cubes (model.cube_size[0]=1) need "
                          "at least 18 candidate frames, got 16 (data.num_segments)")
    assert len(err.strip().splitlines()) == 1
