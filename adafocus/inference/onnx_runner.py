"""Batched early exit on exported ONNX graphs with ONNX Runtime (`adafocus export` writes them).

    runner = OnnxEarlyExitRunner("exported/")      # manifest.json + glance.onnx + cube.onnx
    out = runner(video)                             # InferenceOutput, like EarlyExitRunner's

The loop is EarlyExitRunner's: exit 0 for the whole batch, then one cube stage per exit on
the videos still running, stopping each video at the first exit whose entropy is within its
threshold (adafocus.inference.early_exit.exit_mask, the same rule). onnxruntime is optional
(`pip install cubecrop[onnx]`).
"""
from __future__ import annotations

import json
import os
import numpy as np
import torch

from adafocus.inference import early_exit
from adafocus.inference.runner import InferenceOutput

MANIFEST = "manifest.json"


def load_manifest(model_dir: str) -> dict:
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} holds no {MANIFEST}: write one with `adafocus export`")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from None


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("the onnxruntime runtime needs the onnxruntime package: pip install onnxruntime "
                           "(or the project's [onnx] extra)") from None
    return onnxruntime


class OnnxEarlyExitRunner:
    """EarlyExitRunner's interface on ONNX Runtime sessions (CPU unless providers say otherwise)."""

    def __init__(self, model_dir: str, providers=None, threads: int = 0, allow_spinning: bool = True):
        """threads: intra-op threads per session (0: ONNX Runtime's default); allow_spinning:
        whether a session's threads busy-wait for work after a run (ONNX Runtime's default)."""
        ort = _onnxruntime()
        self.manifest = load_manifest(model_dir)
        if self.manifest.get("format") != "onnx":
            raise ValueError(f"{model_dir} holds {self.manifest.get('format')!r} graphs; the onnxruntime runtime needs "
                             "`adafocus export --format onnx`")
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        providers = providers or ["CPUExecutionProvider"]
        files = self.manifest["files"]
        self.glance = ort.InferenceSession(os.path.join(model_dir, files["glance"]), options, providers=providers)
        self.cube = ort.InferenceSession(os.path.join(model_dir, files["cube"]), options, providers=providers)
        self.num_exits = int(self.manifest["num_exits"])
        self.feature_width = int(self.manifest["local_feature_width"])
        self.exit_thresholds = torch.tensor(self.manifest["thresholds"], dtype=torch.float32)
        self._cost = torch.tensor(self.manifest["gmacs_per_exit"], dtype=torch.float64)

    def gmacs_per_exit(self, video_shape=None) -> list:
        """GMACs per exit for the exported input shape (the graphs take no other)."""
        return self._cost.tolist()

    def __call__(self, video, thresholds=None, return_all_exits: bool = False, exit_plan=None) -> InferenceOutput:
        """As EarlyExitRunner.__call__ (exit_plan (B,): the exit each video takes, for timing)."""
        array = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
        array = np.ascontiguousarray(array, dtype=np.float32)
        expected = tuple(self.manifest["video_shape"])
        if array.ndim != 5 or tuple(array.shape[1:]) != expected:
            raise ValueError(f"video must be (B, {', '.join(map(str, expected))}) for these graphs, got {array.shape}")
        eta = early_exit.check_thresholds(self.exit_thresholds if thresholds is None else thresholds, self.num_exits)
        b, m = array.shape[0], self.num_exits - 1
        glance, logits0, centers = self.glance.run(None, {"video": array})
        logits0 = torch.from_numpy(logits0)
        centers_t = torch.from_numpy(np.asarray(centers))
        if return_all_exits:
            every = [logits0]
            local_max = np.full((b, self.feature_width), -np.inf, dtype=np.float32)
            for t in range(1, m + 1):
                logits, local_max = self._cube(array, np.arange(b), centers, glance, local_max, t)
                every.append(torch.from_numpy(logits))
            stacked = torch.stack(every)
            picked, exit_index, gflops = early_exit.simulate(stacked, eta, self._cost)
            return InferenceOutput(picked, exit_index, gflops, centers_t, stacked)

        exit_plan = early_exit.check_exit_plan(exit_plan, b, m)
        out_logits = torch.empty_like(logits0)
        exit_index = torch.full((b,), m, dtype=torch.long)
        stops = early_exit.stops_at(0, logits0, torch.arange(b), eta, m, exit_plan)
        out_logits[stops] = logits0[stops]
        exit_index[stops] = 0
        running = torch.nonzero(~stops).flatten()
        local_max = np.full((running.numel(), self.feature_width), -np.inf, dtype=np.float32)
        for t in range(1, m + 1):
            if running.numel() == 0:
                break
            logits, local_max = self._cube(array, running.numpy(), centers, glance, local_max, t)
            logits = torch.from_numpy(logits)
            stops = early_exit.stops_at(t, logits, running, eta, m, exit_plan)
            out_logits[running[stops]] = logits[stops]
            exit_index[running[stops]] = t
            keep = ~stops
            running, local_max = running[keep], local_max[keep.numpy()]
        return InferenceOutput(out_logits, exit_index, self._cost[exit_index], centers_t)

    def _cube(self, video: np.ndarray, rows: np.ndarray, centers: np.ndarray, glance: np.ndarray,
              local_max: np.ndarray, t: int):
        rows = rows.astype(np.int64)
        return self.cube.run(None, {
            "video": video, "rows": rows, "center": np.ascontiguousarray(centers[rows, t - 1]),
            "local_max": np.ascontiguousarray(local_max), "glance": np.ascontiguousarray(glance[rows]),
            "exit_index": np.array(t, dtype=np.int64)})
