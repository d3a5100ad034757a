"""The early-exit model as exportable graphs (ONNX, torch.export): a glance stage and a cube stage.

    glance stage  video (B, C, T, H, W) -> glance (B, E) the embedded pooled glance features
                                           (what every exit head takes; E = Cg without an
                                           embedding), logits (B, classes) of exit 0,
                                           centers (B, M, 3) of every cube (frame-wise cubes
                                           already de-duplicated, as EarlyExitRunner does)
    cube stage    video (N, C, T, H, W), rows (R,) int64, center (R, 3), local_max (R, E),
                  glance (R, E), exit_index () int64
                  -> logits (R, classes) of exit `exit_index`, local_max (R, E)

The cube stage crops cube `exit_index` of the videos `rows` of the batch (the ones still
running: the batch is never copied), runs fL, pools, embeds, takes the running maximum with
`local_max` (pass -inf before the first cube) and applies that exit's head. The crop is
index arithmetic and one gather on the flattened video (standard operators, no custom op),
with the integer-cube rule of cubecrop.integer_starts. A host loop over the stages with the
entropy rule of adafocus.inference.early_exit gives the same exits as EarlyExitRunner
(adafocus.inference.onnx_runner runs it with ONNX Runtime).

Every exit head is evaluated and the one asked for selected: an exit head is a linear layer,
under 1% of one cube's cost for the paper presets, and this keeps one graph for all exits.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

import torch
from torch import nn

from adafocus.inference.runner import EarlyExitRunner
from adafocus.model import AdaFocusV3

# ONNX opset of the exported graphs: 18 has Resize with antialiasing (the glance's downsizing).
ONNX_OPSET = 18
FORMATS = ("onnx", "torch-export")
GLANCE_FILE = {"onnx": "glance.onnx", "torch-export": "glance.pt2"}
CUBE_FILE = {"onnx": "cube.onnx", "torch-export": "cube.pt2"}


def gather_integer_cubes(video: torch.Tensor, rows: torch.Tensor, centers: torch.Tensor,
                         size: Sequence[int]) -> torch.Tensor:
    """Integer cubes (R, C, Dt, Dh, Dw) of the videos `rows` of `video` (N, C, T, H, W) at
    `centers` (R, 3), by one gather on the flattened video (exports as standard operators).

    Starts follow cubecrop.integer_starts: floor(clamp(c - D/2, 0, E - D) + 1/2) in float64.
    """
    n, c, t, h, w = video.shape
    dt, dh, dw = (int(d) for d in size)
    sizes = torch.tensor([dt, dh, dw], dtype=torch.float64, device=video.device)
    extents = torch.tensor([t, h, w], dtype=torch.float64, device=video.device)
    start = torch.minimum(torch.clamp(centers.double() - sizes / 2, min=0.0), extents - sizes)
    start = torch.floor(start + 0.5).long()  # (R, 3)
    device = video.device

    def axis(length: int) -> torch.Tensor:
        return torch.arange(length, device=device, dtype=torch.long)

    frame = (start[:, 0:1] + axis(dt)).view(-1, 1, dt, 1, 1)
    row = (start[:, 1:2] + axis(dh)).view(-1, 1, 1, dh, 1)
    column = (start[:, 2:3] + axis(dw)).view(-1, 1, 1, 1, dw)
    channel = axis(c).view(1, c, 1, 1, 1)
    base = rows.long().view(-1, 1, 1, 1, 1) * (c * t * h * w)
    index = base + channel * (t * h * w) + frame * (h * w) + row * w + column
    return video.reshape(-1)[index.reshape(-1)].view(-1, c, dt, dh, dw)


class GlanceStage(nn.Module):
    """Exit 0 and the centres of every cube, for a whole batch."""

    def __init__(self, model: AdaFocusV3):
        super().__init__()
        self.model = model
        self.runner = EarlyExitRunner(model)

    def forward(self, video: torch.Tensor):
        maps = self.model.glance(video)
        glance = self.model.classifier.embed_glance(maps.mean(dim=(2, 3, 4)))
        logits = self.model.classifier.glance_exit(glance)
        centers = self.runner.centers(maps, tuple(video.shape[2:]))
        return glance, logits, centers


class CubeStage(nn.Module):
    """One cube of the running videos, fL, the accumulated features and the exit's logits."""

    def __init__(self, model: AdaFocusV3):
        super().__init__()
        self.model = model

    def forward(self, video, rows, center, local_max, glance, exit_index):
        model = self.model
        cube = gather_integer_cubes(video, rows, center, model.config.cube_size)
        features = model.classifier.embed_local(model.local.pool(model.local.encode(cube)))
        local_max = torch.maximum(local_max, features)
        every_exit = torch.stack([model.classifier.local_exit(t, local_max, glance)
                                  for t in range(1, model.num_exits)])
        return every_exit[exit_index - 1], local_max


def stage_examples(model: AdaFocusV3, video_shape: Sequence[int], batch: int = 2) -> Dict[str, tuple]:
    """Example inputs of both stages for inputs of (C, T, H, W) = video_shape."""
    c, t, h, w = (int(d) for d in video_shape)
    video = torch.randn(batch, c, t, h, w)
    with torch.no_grad():
        glance, _, centers = GlanceStage(model).eval()(video)
    width = int(model.classifier.embed_local(torch.zeros(1, model.local.out_channels)).shape[-1])
    rows = torch.arange(batch)
    local_max = torch.full((batch, width), float("-inf"))
    return {
        "glance": (video,),
        "cube": (video, rows, centers[:, 0].contiguous(), local_max, glance, torch.tensor(1)),
    }


def export_stages(model: AdaFocusV3, video_shape: Sequence[int], out_dir: str, fmt: str = "onnx") -> Dict[str, str]:
    """Write both stages of `model` (in eval mode) to out_dir; returns {stage: file name}.

    Batch sizes are dynamic (the cube stage's video batch and running rows independently);
    the video's (C, T, H, W) is fixed to video_shape.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model = model.eval()
    examples = stage_examples(model, video_shape)
    videos, running = torch.export.Dim("videos", min=1, max=65536), torch.export.Dim("running", min=1, max=65536)
    shapes = {
        "glance": ({0: videos},),
        "cube": ({0: videos}, {0: running}, {0: running}, {0: running}, {0: running}, None),
    }
    names = {
        "glance": (["video"], ["glance", "logits", "centers"]),
        "cube": (["video", "rows", "center", "local_max", "glance", "exit_index"], ["logits", "local_max_out"]),
    }
    modules = {"glance": GlanceStage(model).eval(), "cube": CubeStage(model).eval()}
    files = {"glance": GLANCE_FILE[fmt], "cube": CUBE_FILE[fmt]}
    os.makedirs(out_dir, exist_ok=True)
    for stage, module in modules.items():
        path = os.path.join(out_dir, files[stage])
        with torch.no_grad():
            if fmt == "onnx":
                inputs, outputs = names[stage]
                program = torch.onnx.export(module, examples[stage], dynamic_shapes=shapes[stage], dynamo=True,
                                            opset_version=ONNX_OPSET, input_names=inputs, output_names=outputs,
                                            verbose=False)
                _save_atomically(program.save, path)
            else:
                program = torch.export.export(module, examples[stage], dynamic_shapes=shapes[stage])
                _save_atomically(lambda tmp: torch.export.save(program, tmp), path)
    return files


def _save_atomically(save, path: str) -> None:
    """save(tmp_path) beside `path`, then rename it over `path`; the temporary file never stays."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def stage_file_names(fmt: str) -> List[str]:
    return [GLANCE_FILE[fmt], CUBE_FILE[fmt]]
