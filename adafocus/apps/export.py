"""`adafocus export`: a checkpoint's early-exit inference as graphs plus a manifest.

    adafocus export --checkpoint runs/x/checkpoint.pt --out exported/ [--format onnx|torch-export]

Writes the glance stage and the cube stage (adafocus.inference.export) and manifest.json:
the input shape the graphs take, the preprocessing of the checkpoint's run (its data
section, what `adafocus infer` reproduces), the stored thresholds and those solved per
budget by `adafocus eval`, GMACs per exit, and the graphs' input/output names.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Optional

import torch

from adafocus.inference import EarlyExitRunner
from adafocus.inference.export import FORMATS, ONNX_OPSET, export_stages
from adafocus.inference.onnx_runner import MANIFEST
from adafocus.training.checkpoint import load_model
from adafocus.utils.files import atomic_write

logger = logging.getLogger(__name__)


def video_shape_of_run(run_config: dict, num_frames: Optional[int] = None, image_size: Optional[int] = None) -> tuple:
    """(C, T, H, W) of the videos the checkpoint's run fed the model (its evaluation preprocessing)."""
    data = run_config.get("data", {})
    if data.get("kind", "synthetic") == "synthetic":
        from adafocus.data.synthetic import SyntheticConfig

        synthetic = SyntheticConfig.from_dict(data.get("synthetic"))
        return (3, num_frames or synthetic.num_frames, image_size or synthetic.height, image_size or synthetic.width)
    side = image_size or int(data.get("image_size", 224))
    return (3, num_frames or int(data.get("num_segments", 16)), side, side)


def export_checkpoint(checkpoint: str, out_dir: str, fmt: str = "onnx", num_frames: Optional[int] = None,
                      image_size: Optional[int] = None) -> dict:
    """Export one checkpoint; returns the manifest (also written to out_dir/manifest.json)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    model, state = load_model(checkpoint, "cpu")
    run_config = state.get("config", {})
    video_shape = video_shape_of_run(run_config, num_frames, image_size)
    return export_model(model, out_dir, video_shape, fmt, run_config=run_config, checkpoint=os.path.abspath(checkpoint),
                        epoch=state.get("epoch"), budget_thresholds=state.get("budget_thresholds", []))


def export_model(model, out_dir: str, video_shape, fmt: str = "onnx", run_config: Optional[dict] = None,
                 checkpoint: Optional[str] = None, epoch: Optional[int] = None, budget_thresholds=()) -> dict:
    """Export an AdaFocusV3 (eval mode) for inputs of (C, T, H, W) = video_shape; returns the
    manifest (also written to out_dir/manifest.json). run_config: the data section `adafocus
    infer` preprocesses by (none for a model that was never trained from a config)."""
    video_shape = tuple(int(d) for d in video_shape)
    with warnings.catch_warnings():
        # The exporters narrate their passes and warn about names they merge; none of it is actionable here.
        warnings.simplefilter("ignore")
        for name in ("torch.onnx", "onnx_ir", "onnxscript"):
            logging.getLogger(name).setLevel(logging.WARNING)
        files = export_stages(model, video_shape, out_dir, fmt)
    runner = EarlyExitRunner(model)
    width = int(model.classifier.embed_local(torch.zeros(1, model.local.out_channels)).shape[-1])
    manifest = {
        "format": fmt,
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "files": files,
        "checkpoint": checkpoint,
        "epoch": epoch,
        "video_shape": list(video_shape),
        "dynamic": "batch: any number of videos; the cube stage's running rows independently",
        "num_classes": model.config.num_classes,
        "num_exits": model.num_exits,
        "cube_size": list(model.config.cube_size),
        "glance_frames": model.config.glance_frames,
        "local_feature_width": width,
        "gmacs_per_exit": runner.gmacs_per_exit(video_shape),
        "thresholds": model.exit_thresholds.tolist(),
        "budget_thresholds": list(budget_thresholds),
        "run_config": run_config or {},
        "inputs": {
            "glance": {"video": "float32 (B, C, T, H, W), normalised as the run's data section says"},
            "cube": {"video": "the glance stage's input batch", "rows": "int64 (R,): videos still running",
                     "center": "float32 (R, 3): their cube centres (t, y, x) for this exit",
                     "local_max": "float32 (R, local_feature_width): -inf before the first cube",
                     "glance": "float32 (R, E): their rows of the glance stage's `glance` output (the glance "
                               "features as every exit head takes them)",
                     "exit_index": "int64 scalar in 1..M"},
        },
        "outputs": {"glance": ["glance", "logits", "centers"], "cube": ["logits", "local_max_out"]},
    }
    with atomic_write(os.path.join(out_dir, MANIFEST)) as f:
        json.dump(manifest, f, indent=1)
    return manifest
