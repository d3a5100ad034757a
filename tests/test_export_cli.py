"""`adafocus export` + `adafocus infer --runtime onnxruntime` on real MP4 files: the same class and the
same exit per video as the PyTorch path, with thresholds that spread the videos over the exits."""
import json

import pytest
import torch

from adafocus.apps.cli import main

from test_cli_video_training import video_run_config

pytest.importorskip("onnxruntime", reason="onnxruntime is the optional [onnx] extra")
pytest.importorskip("onnxscript", reason="torch.onnx's exporter needs onnxscript (the [onnx] extra)")


def json_of(printed: str):
    return json.loads(printed[printed.index("\n[") + 1:] if not printed.startswith("[") else printed)


def test_export_then_onnxruntime_infer_matches_torch(tmp_path, capsys):
    config = video_run_config(tmp_path, videos=12, val_videos=12, budgets=5)
    root = tmp_path / "videos"
    assert main(["train", "--config", str(config)]) == 0
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    # Thresholds at the median entropy of each exit: the videos stop at different exits.
    from adafocus.inference import EarlyExitRunner, early_exit
    from adafocus.training.checkpoint import load_model, save_atomic

    model, state = load_model(str(checkpoint))
    video = torch.randn(16, 3, 8, 32, 32)
    every = EarlyExitRunner(model)(video, return_all_exits=True).all_logits
    eta = torch.stack([early_exit.entropy(logits) for logits in every]).median(dim=1).values
    state["state_dict"]["exit_thresholds"] = eta
    save_atomic(state, str(checkpoint))
    capsys.readouterr()

    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "exported")]) == 0
    manifest = json.loads((tmp_path / "exported" / "manifest.json").read_text())
    assert manifest["video_shape"] == [3, 8, 32, 32] and manifest["thresholds"] == pytest.approx(eta.tolist())
    capsys.readouterr()
    videos = [str(root / f"v{i}.mp4") for i in range(12)]
    assert main(["infer", *videos, "--checkpoint", str(checkpoint), "--json"]) == 0
    torch_results = json_of(capsys.readouterr().out)
    assert main(["infer", *videos, "--runtime", "onnxruntime", "--model-dir", str(tmp_path / "exported"), "--json"]) == 0
    onnx_results = json_of(capsys.readouterr().out)
    assert len({r["exit"] for r in torch_results}) >= 2, "the thresholds should spread the videos over the exits"
    assert [r["exit"] for r in onnx_results] == [r["exit"] for r in torch_results]
    assert [r["top"][0]["class"] for r in onnx_results] == [r["top"][0]["class"] for r in torch_results]
    for a, b in zip(onnx_results, torch_results):
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=1e-4)
    # The graphs take one input shape; the runtime needs its folder.
    assert main(["infer", videos[0], "--runtime", "onnxruntime", "--model-dir", str(tmp_path / "exported"),
                 "--num-frames", "4"]) == 2
    assert main(["infer", videos[0], "--runtime", "onnxruntime"]) == 2
    assert "--model-dir" in capsys.readouterr().err
