"""The benchmark scripts' own arithmetic: what they record beside their timings."""
import math
import sys

import pytest

from adafocus.inference import cost
from adafocus.model import AdaFocusV3, FullVideoBaseline
from adafocus.training.config import RunConfig, load_yaml
from benchmarks import repro_common
from benchmarks.bench_inference import stage_rate_table


def test_result_files_record_the_arguments_the_script_ran_with(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_inference.py", "--threads", "2", "--allocator"])
    assert repro_common.command_line("benchmarks.bench_inference") == \
        "python -m benchmarks.bench_inference --threads 2 --allocator"
    assert repro_common.command_line("benchmarks.bench_onnx", ["--rounds", "5"]) == \
        "python -m benchmarks.bench_onnx --rounds 5"
    assert repro_common.command_line("benchmarks.bench_onnx", []) == "python -m benchmarks.bench_onnx"


def test_stage_rates_time_what_each_stage_of_the_model_costs():
    videos, going_on, video_size = 3, 2, (16, 48, 48)
    table = stage_rate_table(1, "configs/demo.yaml", videos=videos, going_on=going_on, video_size=video_size)
    config = RunConfig.from_dict(load_yaml("configs/demo.yaml")).model_config()
    parts = cost.component_gmacs(AdaFocusV3(config).eval(), (3, *video_size))
    baseline = cost.baseline_components(FullVideoBaseline(config).eval(), (3, *video_size))
    gmacs = table["gmacs"]
    assert gmacs["glance"] == pytest.approx(videos * parts["glance"])
    assert gmacs["policy"] == pytest.approx(going_on * parts["policy"])
    assert gmacs["early_exit_cubes"] == pytest.approx(going_on * parts["local_cube"])
    assert gmacs["baseline_fl"] == pytest.approx(videos * baseline["local"])
    assert gmacs["matmul_2048"] == pytest.approx(4 * 2048 ** 3 / 1e9)
    assert all(seconds > 0 for seconds in table["seconds"].values())
    assert all(math.isfinite(table[key]) and table[key] > 0
               for key in ("predicted_speedup", "predicted_speedup_if_glance_at_fl_rate", "gmacs_ratio"))
