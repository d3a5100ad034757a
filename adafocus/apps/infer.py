"""`adafocus infer`: classify videos with early exit and show where the model looked.

Inputs: video files (anything PyAV decodes), frame folders (image files in
name order), .npy arrays (T, H, W, 3) uint8, or folders holding any of these.
Each video is sampled and preprocessed the way the checkpoint's evaluation
split was (TSN center sampling; resize + center crop and the dataset's
normalisation), then run through adafocus.inference.EarlyExitRunner with the thresholds
chosen by `--budget` (solved on val by `adafocus eval`), or the thresholds
stored in the checkpoint (by default the early-exit point `eval` reported;
no early exit if `eval` was never run).
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from adafocus.data.sampling import segment_indices
from adafocus.data.transforms import ClipTransform

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def find_videos(inputs: List[str]) -> List[str]:
    """Expand folders: a folder of images is one video; otherwise its videos/frame folders/.npy."""
    found = []
    for path in inputs:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            names = sorted(os.listdir(path))
            if any(n.lower().endswith(IMAGE_EXTENSIONS) for n in names):
                found.append(path)
                continue
            for name in names:
                child = os.path.join(path, name)
                if name.lower().endswith(VIDEO_EXTENSIONS + (".npy",)) or (
                        os.path.isdir(child) and any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(child))):
                    found.append(child)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    if not found:
        raise ValueError(f"no videos found in {inputs}")
    return found


def read_frames(path: str) -> np.ndarray:
    """uint8 (T, H, W, 3) from a video file, a frame folder or a .npy array."""
    if os.path.isdir(path):
        from PIL import Image

        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        frames = []
        for name in names:
            with Image.open(os.path.join(path, name)) as image:
                frames.append(np.asarray(image.convert("RGB")))
        return np.stack(frames)
    if path.endswith(".npy"):
        array = np.load(path)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"{path}: expected a (T, H, W, 3) array, got {array.shape}")
        return array.astype(np.uint8)
    from adafocus.data.video_files import decode_video

    return decode_video(path)


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
        clip = frames[segment_indices(len(frames), self.num_frames, train=False)]
        if self.transform is not None:
            return self.transform(clip)
        video = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float().div_(255)
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


def pick_thresholds(state: dict, budget: Optional[float]):
    """Thresholds for the largest solved budget whose val GFLOPs fit in `budget` (None: the stored ones)."""
    if budget is None:
        return None
    table = state.get("budget_thresholds")
    if not table:
        raise ValueError("this checkpoint has no solved thresholds: run `adafocus eval` on it first")
    fitting = [row for row in table if row["val_gflops"] <= budget]
    if not fitting:
        cheapest = min(row["val_gflops"] for row in table)
        raise ValueError(f"budget {budget} GFLOPs is below the cheapest solved point ({cheapest:.4g} GFLOPs)")
    return max(fitting, key=lambda row: row["val_gflops"])["thresholds"]


def save_contact_sheet(path: str, rows: List[dict], cube_size) -> None:
    """One row per video: the frame of each cube it used, the cube drawn on it."""
    import cubecrop
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    columns = max(1, max(len(r["cubes"]) for r in rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.4 * len(rows)), squeeze=False, dpi=100)
    for axis in axes.flat:
        axis.axis("off")
    dt, dh, dw = cube_size
    for r, row in enumerate(rows):
        frames = row["frames"]
        if not row["cubes"]:
            continue
        starts = cubecrop.integer_starts(torch.tensor(row["cubes"], dtype=torch.float64), cube_size, frames.shape[:3])
        for c, (start_t, y0, x0) in enumerate(starts.tolist()):
            axis = axes[r, c]
            axis.imshow(frames[start_t], interpolation="nearest")
            axis.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), dw, dh, fill=False, lw=2, ec="yellow"))
            axis.set_title(f"cube {c + 1}: frames {start_t}-{start_t + dt - 1}", fontsize=7)
        axes[r, 0].text(0, -0.25, f"{os.path.basename(row['path'])}: class {row['top'][0]['class']} "
                        f"(exit {row['exit']}, {row['gflops'] * 1e3:.2f} MFLOPs)", transform=axes[r, 0].transAxes,
                        fontsize=7, va="top")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def run_inference(inputs: List[str], checkpoint: str, budget: Optional[float] = None, top_k: int = 5,
                  save_cubes: Optional[str] = None, device: str = "auto", num_frames: Optional[int] = None,
                  image_size: Optional[int] = None, print_results: bool = True) -> List[dict]:
    from adafocus.inference import EarlyExitRunner
    from adafocus.training.checkpoint import load_model
    from adafocus.training.distributed import pick_device

    device = pick_device(device)
    model, state = load_model(checkpoint, device)
    runner = EarlyExitRunner(model)
    thresholds = pick_thresholds(state, budget)
    preprocess = Preprocess(state.get("config", {}), num_frames, image_size)
    results, sheet = [], []
    for path in find_videos(inputs):
        try:
            frames = read_frames(path)
        except Exception as error:  # noqa: BLE001 - report and go on with the other videos
            logger.warning("skipping unreadable video %s: %s", path, error)
            results.append({"path": path, "error": str(error)})
            continue
        video = preprocess(frames)[None].to(device)
        out = runner(video, thresholds=thresholds)
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
        }
        results.append(result)
        if print_results:
            tops = ", ".join(f"{t['class']} ({t['probability'] * 100:.1f}%)" for t in result["top"])
            print(f"{path}: top-{k} {tops}; exit {exit_taken} after {exit_taken} cube(s); "
                  f"{result['gflops']:.4g} GFLOPs")
        if save_cubes:
            sheet.append({**result, "frames": preprocess.display(frames), "cubes": result["centers"]})
    if save_cubes and sheet:
        save_contact_sheet(save_cubes, sheet, model.config.cube_size)
        if print_results:
            print(f"cubes drawn on the frames: {save_cubes}")
    return results
