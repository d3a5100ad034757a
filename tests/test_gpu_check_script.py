"""scripts/gpu_check.sh, tested where there is no GPU (GPU_CHECK_DRY_RUN=1).

On a lent GPU machine only $OUT comes back, and a run gets minutes: the dry run
checks that the script builds, selects the GPU tests only, writes its summary
into $OUT and nothing into benchmarks/results, and leaves the in-place build alone.
The full dry run builds the CPU extension out of place (minutes on 2 cores).
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
TAG = "dry_run_no_GPU"


def _run(out, timeout=1500, **env):
    full_env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def _in_place_builds():
    return {path.name: path.stat().st_mtime_ns for path in (ROOT / "cubecrop").glob("_C*.so")}


def _results_listing():
    folder = ROOT / "benchmarks" / "results"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_dry_run_writes_its_summary_into_out(tmp_path):
    out = tmp_path / "out"
    results, builds = _results_listing(), _in_place_builds()
    proc = _run(out, GPU_CHECK_DRY_RUN="1")
    report = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report

    summary = json.loads((out / f"gpu_check_{TAG}.json").read_text())
    assert summary["dry_run"] is True
    phases = summary["phases"]
    assert phases["build"]["status"] == "ok" and phases["tests"]["status"] == "ok", phases
    assert phases["bench"]["status"].startswith("skipped") and phases["bench_deterministic"]["status"].startswith("skipped")
    assert "| build | ok |" in (out / f"gpu_check_{TAG}.md").read_text()

    # The selection: GPU tests only. The op tests are parametrised on the cuda and
    # triton backends of CUDA tensors (conftest's CUBECROP_TEST_BACKENDS override).
    log = (out / f"gpu_check_{TAG}.log").read_text()  # every phase's log, joined
    assert "===== build: ok" in log and "===== tests: ok" in log
    ids = [line.strip() for line in log.splitlines() if line.startswith("tests/") and "::" in line]
    assert summary["tests_selected"] == len(ids) > 100, log[-2000:]
    op_ids = [i for i in ids if i.startswith("tests/test_ops_") and "[" in i]
    assert op_ids and not [i for i in op_ids if "cpu-cpu" in i or "cpu-triton" in i], op_ids[:5]
    assert not any(i.startswith("tests/test_ops_reference.py::") for i in ids)

    assert sorted(os.listdir(out)) == [f"gpu_check_{TAG}.{ext}" for ext in ("json", "log", "md")]
    assert _results_listing() == results, "the dry run wrote into benchmarks/results despite OUT"
    assert _in_place_builds() == builds, "the dry run touched the in-place build"
    assert list((ROOT / "build" / "gpu_check_dry" / "lib" / "cubecrop").glob("_C*.so"))


def test_each_phase_has_its_own_timeout(tmp_path):
    out = tmp_path / "out"
    proc = _run(out, GPU_CHECK_DRY_RUN="1", SKIP_BUILD="1", GPU_CHECK_TIMEOUT_TESTS="1", timeout=300)
    assert proc.returncode != 0, "a phase that timed out must fail the check"
    phases = json.loads((out / f"gpu_check_{TAG}.json").read_text())["phases"]
    assert phases["tests"]["status"] == "timeout" and phases["tests"]["seconds"] <= 15, phases
    assert phases["build"]["status"].startswith("skipped")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_before_touching_the_build(tmp_path):
    builds = _in_place_builds()
    proc = _run(tmp_path / "out", timeout=300)
    assert proc.returncode != 0
    assert "needs a GPU" in proc.stdout + proc.stderr
    assert _in_place_builds() == builds


def test_a_gpu_run_writes_what_the_gpu_machine_sends_back():
    """A lent GPU machine returns at most 8 files from $OUT, named in letters, digits, '.',
    '_' and '-': every file the script writes there (the GPU run writes more than the dry
    run, so they are read off the script) must fit."""
    text = SCRIPT.read_text()
    targets = set(re.findall(r'"\$OUT/([^"]+)"', text))
    names = {t.replace("$tag", "NVIDIA_H200").replace(".tmp", "") for t in targets}
    python_names = set(re.findall(r'f"((?:gpu_check|gpu_tests|bench_[a-z_]+)_\{tag\}\.[a-z]+)"', text))
    names |= {n.replace("{tag}", "NVIDIA_H200") for n in python_names}
    names.add("gpu_check_NVIDIA_H200.log")  # the joined log ($JOINED_LOG)
    assert len(names) <= 8, sorted(names)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names), sorted(names)
    assert {"gpu_check_NVIDIA_H200.md", "gpu_tests_NVIDIA_H200.xml", "bench_inference_cuda_NVIDIA_H200.json"} <= names
