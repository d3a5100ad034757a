"""`adafocus bench`: inference throughput (videos/s) on the current device.

Compares, with identical backbones, input frames and batch size: AdaFocusV3 with batched early exit (the checkpoint's thresholds),
AdaFocusV3 with every cube, and the full-video baseline (fL on every frame).
Inputs are real test-split videos when the dataset is available (so the
early-exit mix is the real one), else random tensors.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import torch

from adafocus.training.config import RunConfig

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def videos_per_second(fn, video: torch.Tensor, iterations: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(video)
    _sync(video.device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn(video)
    _sync(video.device)
    return video.shape[0] * iterations / (time.perf_counter() - start)


def _input_batch(config: RunConfig, num_classes: int, batch_size: int) -> tuple:
    """(video batch, 'test split' | 'random'): real videos when the test split can be read."""
    from adafocus.data import build_dataset, collate_videos

    try:
        dataset = build_dataset(config.data, "test", num_classes, config.train.seed)
        items = [dataset[i % len(dataset)] for i in range(batch_size)]
        batch = collate_videos(items)
        if batch["video"] is not None and batch["video"].shape[0] == batch_size:
            return batch["video"], "test split"
    except (ValueError, FileNotFoundError, OSError) as error:
        logger.info("bench: no test split (%s); timing random videos", error)
    data = config.data
    if data.kind == "synthetic":
        from adafocus.data.synthetic import SyntheticConfig

        s = SyntheticConfig.from_dict(data.synthetic)
        shape = (3, s.num_frames, s.height, s.width)
    else:
        shape = (3, data.num_segments, data.image_size, data.image_size)
    return torch.randn(batch_size, *shape), "random"


def run_bench(config: RunConfig, batch_size: int = 32, iterations: int = 10, checkpoint: Optional[str] = None) -> dict:
    from adafocus.inference import EarlyExitRunner, baseline_gmacs, no_exit_thresholds
    from adafocus.model import AdaFocusV3, FullVideoBaseline
    from adafocus.training.checkpoint import load_model
    from adafocus.training.distributed import pick_device

    device = pick_device(config.train.device)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    if checkpoint:
        model, _ = load_model(checkpoint, device)
        model_config = model.config
    else:
        model_config = config.model_config()
        model = AdaFocusV3(model_config).to(device).eval()
    baseline = FullVideoBaseline(model_config).to(device).eval()
    video, source = _input_batch(config, model_config.num_classes, batch_size)
    video = video.to(device)

    runner = EarlyExitRunner(model)
    early = runner(video)
    all_cubes_eta = no_exit_thresholds(model_config.num_exits)
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "inputs": source,
        "video_shape": list(video.shape[1:]),
        "adafocus_early_exit_videos_per_s": videos_per_second(runner, video, iterations),
        "adafocus_all_cubes_videos_per_s": videos_per_second(lambda v: runner(v, thresholds=all_cubes_eta), video, iterations),
        "baseline_videos_per_s": videos_per_second(baseline, video, iterations),
        "adafocus_early_exit_gflops": float(early.gflops.mean()),
        "adafocus_all_cubes_gflops": runner.gmacs_per_exit(video.shape)[-1],
        "baseline_gflops": baseline_gmacs(baseline, video.shape),
        "exit_fractions": torch.bincount(early.exit_index.cpu(), minlength=model_config.num_exits).div(batch_size).tolist(),
    }
    result["speedup_vs_baseline"] = result["adafocus_early_exit_videos_per_s"] / result["baseline_videos_per_s"]
    return result
