"""`adafocus infer`: classify videos with early exit and show where the model looked.

Inputs: video files (anything PyAV decodes), frame folders (image files in
name order), .npy arrays (T, H, W, 3) uint8, or folders holding any of these.
Each video is sampled and preprocessed the way the checkpoint's evaluation
split was (TSN center sampling through the datasets' own readers, which decode
only the sampled frames; resize + center crop and the dataset's normalisation),
then run through one runner call, `runner(video, thresholds=...)`, with the
thresholds `pick_thresholds` chooses (see its docstring and `--budget`).

Every input is tried; the ones that fail (missing, empty, not a video, truncated)
are reported one line each and make `run_inference`'s caller exit 1.
"""
from __future__ import annotations

import logging
import math
import os
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from adafocus.apps.cli import one_line
from adafocus.data.clips import read_clip
from adafocus.data.decoding import Clip, ends_early_message, resolve_decoder
from adafocus.data.frames import IMAGE_EXTENSIONS
from adafocus.data.transforms import ClipTransform
from adafocus.data.video_files import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)


def _has_images(folder: str) -> bool:
    return any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(folder))


def find_videos(inputs: List[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(videos, failures): folders expanded (a folder of images is one video; otherwise its video files,
    frame folders and .npy arrays); a path that does not exist, or a folder with no video, is a failure."""
    found, failures = [], []
    for path in inputs:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            if _has_images(path):
                found.append(path)
                continue
            children = []
            for name in sorted(os.listdir(path)):
                child = os.path.join(path, name)
                if name.lower().endswith(VIDEO_EXTENSIONS + (".npy",)) or (os.path.isdir(child) and _has_images(child)):
                    children.append(child)
            if children:
                found.extend(children)
            else:
                failures.append((path, "folder holds no video files, frame folders or .npy arrays"))
        else:
            failures.append((path, "does not exist"))
    return found, failures


class Preprocess:
    """The evaluation preprocessing of the checkpoint's dataset."""

    def __init__(self, run_config: dict, num_frames: Optional[int] = None, image_size: Optional[int] = None):
        data = run_config.get("data", {})
        if data.get("kind", "synthetic") == "synthetic":
            from adafocus.data.synthetic import MEAN, STD, SyntheticConfig

            synthetic = SyntheticConfig.from_dict(data.get("synthetic"))
            self.num_frames = num_frames or synthetic.num_frames
            self.size = (image_size or synthetic.height, image_size or synthetic.width)
            self.mean, self.std = MEAN, STD
            self.transform = None  # synthetic frames are used whole, only resized
        else:
            self.num_frames = num_frames or int(data.get("num_segments", 16))
            side = image_size or int(data.get("image_size", 224))
            self.size = (side, side)
            self.transform = ClipTransform(size=side, train=False)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(3, T, h, w) normalised float from the sampled uint8 frames (T, H, W, 3)."""
        if self.transform is not None:
            return self.transform(frames)
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255)
        if tuple(video.shape[-2:]) != self.size:
            video = F.interpolate(video.transpose(0, 1), size=self.size, mode="bilinear", align_corners=False,
                                  antialias=True).transpose(0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1, 1)
        return (video - mean) / std

    def display(self, frames: np.ndarray) -> np.ndarray:
        """The sampled frames as the model saw them, before normalisation (T, h, w, 3) float [0, 1]."""
        video = self(frames)
        mean = torch.tensor(self.transform.mean if self.transform else self.mean).view(3, 1, 1, 1)
        std = torch.tensor(self.transform.std if self.transform else self.std).view(3, 1, 1, 1)
        return (video * std + mean).clamp(0, 1).permute(1, 2, 3, 0).numpy()


def check_budget(budget: Optional[float]) -> None:
    if budget is not None and (math.isnan(budget) or budget <= 0):
        raise ValueError(f"--budget {budget}: expected a positive number of GFLOPs per video (or inf for every cube)")


def pick_thresholds(state: dict, budget: Optional[float], num_exits: int, all_cubes: bool = False):
    """Entropy thresholds for one infer run.

    all_cubes or budget=inf: every video runs every cube (no early exit). A finite budget: the
    thresholds `adafocus eval` solved on val for the largest budget whose val GFLOPs fit in it.
    None: the thresholds stored in the checkpoint (eval's reported early-exit point; every
    cube if eval was never run).
    """
    from adafocus.inference.early_exit import no_exit_thresholds

    check_budget(budget)
    if all_cubes or (budget is not None and math.isinf(budget)):
        return no_exit_thresholds(num_exits)
    if budget is None:
        return None
    table = state.get("budget_thresholds")
    if not table:
        raise ValueError("--budget needs thresholds solved by `adafocus eval`, and this checkpoint has none: run "
                         "`adafocus eval` on it first, or use --all-cubes")
    fitting = [row for row in table if row["val_gflops"] <= budget]
    if not fitting:
        cheapest = min(row["val_gflops"] for row in table)
        raise ValueError(f"--budget {budget} GFLOPs is below the cheapest solved point ({cheapest:.4g} GFLOPs)")
    return max(fitting, key=lambda row: row["val_gflops"])["thresholds"]


def _caption_frames(label: str, source: List[int]) -> str:
    if len(source) == 1:
        return f"{label}: frame {source[0]}"
    return f"{label}: frames {source[0]}-{source[-1]} ({len(source)} sampled)"


def contact_sheet(rows: List[dict], cube_size, glance_frames: int):
    """A matplotlib figure, one row per video: the frame of each cube it used with the cube drawn on
    it, or, for a video that stopped at the glance (exit 0), the glance frames, marked as such.
    Captions give source-video frame indices (row["indices"])."""
    import cubecrop
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    from adafocus.model.glance import glance_frame_indices

    shown_glance = min(glance_frames, 8)
    columns = max(1, max(len(r["cubes"]) if r["cubes"] else shown_glance for r in rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=(max(2.2 * columns, 4.4), 2.6 * len(rows)), squeeze=False, dpi=100)
    for axis in axes.flat:
        axis.axis("off")
    dt, dh, dw = cube_size
    for r, row in enumerate(rows):
        frames, source = row["frames"], [int(i) for i in row["indices"]]
        if row["cubes"]:
            starts = cubecrop.integer_starts(torch.tensor(row["cubes"], dtype=torch.float64), cube_size, frames.shape[:3])
            for c, (start_t, y0, x0) in enumerate(starts.tolist()):
                axis = axes[r, c]
                axis.imshow(frames[start_t], interpolation="nearest")
                axis.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), dw, dh, fill=False, lw=2, ec="yellow"))
                axis.set_title(_caption_frames(f"cube {c + 1}", source[start_t : start_t + dt]), fontsize=7)
            what = f"exit {row['exit']} after {row['exit']} cube(s)"
        else:
            picked = glance_frame_indices(len(frames), glance_frames).tolist()
            keep = np.linspace(0, len(picked) - 1, shown_glance).round().astype(int) if len(picked) > shown_glance else range(len(picked))
            for c, g in enumerate(picked[i] for i in keep):
                axis = axes[r, c]
                axis.imshow(frames[g], interpolation="nearest")
                axis.add_patch(patches.Rectangle((-0.5, -0.5), frames.shape[2], frames.shape[1], fill=False, lw=3,
                                                 ec="deepskyblue", ls="--"))
                axis.set_title(_caption_frames("glance", [source[g]]), fontsize=7)
            shown = f"{shown_glance} of {glance_frames}" if glance_frames > shown_glance else f"{glance_frames}"
            what = f"exit 0: glance only, no cube ({shown} glance frames shown)"
        label = axes[r, 0].text(0, -0.08, f"{os.path.basename(row['path'])}: class {row['top'][0]['class']} "
                                f"({what}, {row['gflops'] * 1e3:.2f} MFLOPs)", transform=axes[r, 0].transAxes,
                                fontsize=7, va="top")
        label.set_in_layout(False)  # it may run across the row; the layout should size the frames only
    fig.tight_layout()
    return fig


def save_contact_sheet(path: str, rows: List[dict], cube_size, glance_frames: int) -> None:
    """`contact_sheet` written (atomically) to `path`; the format follows its suffix (png by default)."""
    import matplotlib.pyplot as plt

    from adafocus.utils.files import atomic_write

    fig = contact_sheet(rows, cube_size, glance_frames)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=os.path.splitext(path)[1][1:].lower() or "png")
    plt.close(fig)


RUNTIMES = ("torch", "onnxruntime")


def load_runner(source: str, device: torch.device, runtime: str = "torch"):
    """(runner, state, cube_size, glance_frames) for a checkpoint (runtime "torch") or a folder written
    by `adafocus export` (runtime "onnxruntime"). `runner(video, thresholds=...) -> InferenceOutput` is
    the one model call; `state` holds the run config and the solved thresholds."""
    if runtime == "onnxruntime":
        from adafocus.inference.onnx_runner import OnnxEarlyExitRunner

        runner = OnnxEarlyExitRunner(source, threads=torch.get_num_threads())
        manifest = runner.manifest
        state = {"config": manifest.get("run_config", {}), "budget_thresholds": manifest.get("budget_thresholds", [])}
        return runner, state, tuple(manifest["cube_size"]), int(manifest["glance_frames"])
    from adafocus.inference import EarlyExitRunner
    from adafocus.inference.optimize import optimize_for_inference
    from adafocus.training.checkpoint import load_model

    model, state = load_model(source, device)
    optimize_for_inference(model)  # batch norms folded, per-backbone memory format: the same outputs, faster
    return EarlyExitRunner(model), state, tuple(model.config.cube_size), model.config.glance_frames


@torch.no_grad()
def run_inference(inputs: List[str], checkpoint: str, budget: Optional[float] = None, top_k: int = 5,
                  save_cubes: Optional[str] = None, device: str = "auto", num_frames: Optional[int] = None,
                  image_size: Optional[int] = None, print_results: bool = True, all_cubes: bool = False,
                  decoder: str = "auto", allow_truncated: bool = False, runtime: str = "torch",
                  model_dir: Optional[str] = None, retain_memory: bool = True) -> List[dict]:
    """One dict per input: the prediction, or {"path", "error"} for an input that could not be classified
    (printed as one `adafocus infer: error:` line on stderr when print_results).

    runtime "torch" runs `checkpoint`; "onnxruntime" runs the graphs `adafocus export` wrote to
    `model_dir` (their manifest gives the preprocessing and the thresholds; no checkpoint needed).
    retain_memory: on CPU, keep freed memory in the process (adafocus.inference.allocator)."""
    import sys

    from adafocus.training.distributed import pick_device

    if top_k < 1:
        raise ValueError(f"--top-k {top_k}: expected an integer >= 1")
    for name, value in (("--num-frames", num_frames), ("--image-size", image_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} {value}: expected an integer >= 1")
    check_budget(budget)
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        if not model_dir:
            raise ValueError("--runtime onnxruntime needs --model-dir (a folder written by `adafocus export`)")
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"--model-dir {model_dir}: no such folder")
        source = model_dir
    else:
        if not checkpoint:
            raise ValueError("--checkpoint is required (or --runtime onnxruntime --model-dir DIR)")
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
        source = checkpoint
    resolve_decoder(decoder, "--decoder")
    results: List[dict] = []

    def fail(path: str, message: str) -> None:
        results.append({"path": path, "error": message})
        if print_results:
            print(f"adafocus infer: error: {path}: {message}", file=sys.stderr)

    videos, missing = find_videos(inputs)
    for path, message in missing:
        fail(path, message)
    if not videos:
        return results

    device = pick_device(device)
    if retain_memory and device.type == "cpu":
        from adafocus.inference.allocator import retain_freed_memory

        retain_freed_memory()
    runner, state, cube_size, glance_frames = load_runner(source, device, runtime)
    thresholds = pick_thresholds(state, budget, runner.num_exits, all_cubes)
    if runtime == "onnxruntime":  # the graphs take one input shape: the one they were exported for
        _, frames, height, width = runner.manifest["video_shape"]
        if (num_frames or frames, image_size or height) != (frames, height):
            raise ValueError(f"--num-frames/--image-size must match the exported graphs' input ({frames} frames of "
                             f"{height}x{width}); export again with other values")
        num_frames, image_size = frames, height
    preprocess = Preprocess(state.get("config", {}), num_frames, image_size)
    sheet = []
    for path in videos:
        try:
            clip: Clip = read_clip(path, preprocess.num_frames, decoder=decoder)
        except Exception as error:  # noqa: BLE001 - report it and go on with the other videos
            fail(path, f"unreadable: {one_line(error)}")
            continue
        if clip.ended_early:
            if not allow_truncated:
                fail(path, ends_early_message(clip) + "; --allow-truncated classifies it from those frames")
                continue
            logger.warning("%s %s; classifying it from those", path, ends_early_message(clip))
        video = preprocess(clip.frames)[None].to(device)
        out = runner(video, thresholds=thresholds)
        if not bool(torch.isfinite(out.logits).all()):
            raise ValueError(f"{'model' if runtime == 'onnxruntime' else 'checkpoint'} {source} gives non-finite logits (NaN/inf) for {path}: its weights "
                             "are damaged or diverged; use an intact checkpoint")
        probs = out.logits.float().softmax(-1)[0]
        k = min(top_k, probs.numel())
        values, classes = probs.topk(k)
        exit_taken = int(out.exit_index[0])
        result = {
            "path": path,
            "top": [{"class": int(c), "probability": float(v)} for v, c in zip(values, classes)],
            "exit": exit_taken,
            "cubes_used": exit_taken,
            "gflops": float(out.gflops[0]),
            "centers": out.centers[0, :exit_taken].tolist(),
            "frame_indices": clip.indices.tolist(),
        }
        results.append(result)
        if print_results:
            tops = ", ".join(f"{t['class']} ({t['probability'] * 100:.1f}%)" for t in result["top"])
            print(f"{path}: top-{k} {tops}; exit {exit_taken} after {exit_taken} cube(s); "
                  f"{result['gflops']:.4g} GFLOPs")
        if save_cubes:
            sheet.append({**result, "frames": preprocess.display(clip.frames), "indices": clip.indices,
                          "cubes": result["centers"]})
    if save_cubes and sheet:
        save_contact_sheet(save_cubes, sheet, cube_size, glance_frames)
        if print_results:
            print(f"cubes drawn on the frames: {save_cubes}")
    return results
