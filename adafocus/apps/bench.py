"""`adafocus bench`: inference throughput (videos/s) on the current device, in one run.

Compares, with the same backbones, input videos and batch size: AdaFocusV3 with batched
early exit, AdaFocusV3 with every cube, AdaFocusV3 stopping everyone at the glance (which
isolates the glance stage's cost), and the full-video baseline. Variants are timed in
interleaved rounds (A B C D A B C D ...) and each reports its median round, so a slow drift
of the machine's load hits all of them alike.

The early-exit mix comes from the checkpoint's thresholds, or from `--exit-mix p0,p1,...`:
those shares of the batch are sent to each exit whatever their entropy (for models without
calibrated thresholds: random weights give every video the same entropy).
Inputs are random tensors of `--video-size` when given, else test-split videos when a
checkpoint's dataset can be read, else random tensors of the run's input shape.
"""
from __future__ import annotations

import contextlib
import logging
import statistics
import time
from typing import Dict, List, Optional

import torch

from adafocus.training.config import RunConfig

logger = logging.getLogger(__name__)

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_exit_mix(text: Optional[str], num_exits: int) -> Optional[List[float]]:
    """"0.3,0.7,0" -> [0.3, 0.7, 0.0]: one share per exit, summing to 1."""
    if text is None:
        return None
    try:
        shares = [float(x) for x in str(text).replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise ValueError(f"--exit-mix must be comma-separated numbers, one per exit ({num_exits}), got {text!r}") from None
    if len(shares) != num_exits or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError(f"--exit-mix needs {num_exits} non-negative shares (exits 0..{num_exits - 1}) summing to 1, "
                         f"got {text!r}")
    return shares


def exit_plan_for(shares: List[float], batch_size: int) -> torch.Tensor:
    """(B,) exits with `shares` of the batch at each exit (largest remainders round), videos in order."""
    exact = torch.tensor(shares, dtype=torch.float64) * batch_size
    counts = torch.floor(exact + 1e-9).long()
    for k in torch.argsort(exact - counts, descending=True)[: batch_size - int(counts.sum())].tolist():
        counts[k] += 1
    return torch.repeat_interleave(torch.arange(len(shares)), counts)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_video_size(text: Optional[str]) -> Optional[tuple]:
    """"16,224,224" -> (16, 224, 224): frames, height, width."""
    if text is None:
        return None
    try:
        size = tuple(int(x) for x in str(text).replace(" ", "").split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"--video-size must be three positive integers T,H,W (e.g. 16,224,224), got {text!r}")
    return size


def _input_batch(config: RunConfig, num_classes: int, batch_size: int, from_dataset: bool,
                 video_size: Optional[tuple] = None) -> tuple:
    """(video batch, 'test split' | 'random')."""
    generator = torch.Generator().manual_seed(config.train.seed)
    if video_size is not None:
        return torch.randn(batch_size, 3, *video_size, generator=generator), "random"
    if from_dataset:
        from adafocus.data import build_dataset, collate_videos

        try:
            dataset = build_dataset(config.data, "test", num_classes, config.train.seed)
            batch = collate_videos([dataset[i % len(dataset)] for i in range(batch_size)])
            if batch["video"] is not None and batch["video"].shape[0] == batch_size:
                return batch["video"], "test split"
        except (ValueError, OSError) as error:
            logger.info("bench: no test split (%s); timing random videos", error)
    data = config.data
    if data.kind == "synthetic":
        from adafocus.data.synthetic import SyntheticConfig

        s = SyntheticConfig.from_dict(data.synthetic)
        shape = (3, s.num_frames, s.height, s.width)
    else:
        shape = (3, data.num_segments, data.image_size, data.image_size)
    return torch.randn(batch_size, *shape, generator=generator), "random"


def time_interleaved(variants: Dict[str, callable], rounds: int, iterations: int, device: torch.device,
                     warmup: int = 1, pause_s: float = 0.0) -> Dict[str, float]:
    """Median seconds per call of each variant over `rounds` interleaved rounds of `iterations` calls;
    pause_s: an untimed wait before each variant's calls (a thread pool that busy-waits after
    its run, as ONNX Runtime's does, goes quiet before the next variant is timed)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    seconds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            if pause_s:
                time.sleep(pause_s)
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            _sync(device)
            seconds[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(values) for name, values in seconds.items()}


def run_bench(config: RunConfig, batch_size: int = 32, iterations: int = 3, rounds: int = 3,
              checkpoint: Optional[str] = None, exit_mix: Optional[str] = None, dtype: str = "fp32",
              compile_encoders: bool = False, glance_memory_format: Optional[str] = None,
              local_memory_format: Optional[str] = None, video_size: Optional[str] = None,
              retain_memory: bool = True) -> dict:
    from adafocus.inference import EarlyExitRunner, baseline_gmacs, no_exit_thresholds
    from adafocus.inference.allocator import retain_freed_memory
    from adafocus.inference.optimize import optimize_for_inference
    from adafocus.model import AdaFocusV3, FullVideoBaseline
    from adafocus.training.checkpoint import load_model
    from adafocus.training.distributed import pick_device

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    device = pick_device(config.train.device)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    if checkpoint:
        model, _ = load_model(checkpoint, device)
    else:
        torch.manual_seed(config.train.seed)
        model = AdaFocusV3(config.model_config()).to(device).eval()
    model_config = model.config
    baseline = FullVideoBaseline(model_config).to(device).eval()
    settings = optimize_for_inference(model, glance_memory_format, local_memory_format, compile_encoders)
    settings["retain_freed_memory"] = retain_memory and device.type == "cpu" and retain_freed_memory()
    optimize_for_inference(baseline, glance_memory_format, local_memory_format, compile_encoders)
    video, source = _input_batch(config, model_config.num_classes, batch_size, from_dataset=bool(checkpoint),
                                 video_size=parse_video_size(video_size))
    video = video.to(device)
    runner = EarlyExitRunner(model)
    num_exits = model_config.num_exits
    autocast = (torch.autocast(device.type, dtype=DTYPES[dtype]) if DTYPES[dtype] is not None
                else contextlib.nullcontext())

    with torch.inference_mode(), autocast:
        shares = parse_exit_mix(exit_mix, num_exits)
        plan = None if shares is None else exit_plan_for(shares, batch_size).to(device)
        glance_only = torch.full((num_exits,), float("inf"))
        all_cubes = no_exit_thresholds(num_exits)
        early = runner(video, exit_plan=plan)
        seconds = time_interleaved({
            "early_exit": lambda: runner(video, exit_plan=plan),
            "all_cubes": lambda: runner(video, thresholds=all_cubes),
            "glance_only": lambda: runner(video, thresholds=glance_only),
            "baseline": lambda: baseline(video),
        }, rounds, iterations, device)

    exits = runner.gmacs_per_exit(video.shape)
    base = baseline_gmacs(baseline, video.shape)
    early_gmacs = float(early.gflops.mean())
    per_video = {name: s / batch_size for name, s in seconds.items()}
    fractions = torch.bincount(early.exit_index.cpu(), minlength=num_exits).double().div(batch_size).tolist()
    cube_seconds = max(per_video["all_cubes"] - per_video["glance_only"], 1e-12)
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "dtype": dtype,
        "inputs": source,
        "video_shape": list(video.shape[1:]),
        "rounds": rounds,
        "iterations_per_round": iterations,
        "settings": settings,
        "exit_fractions": fractions,
        "exit_mix_requested": shares,
        "gmacs": {"early_exit": early_gmacs, "all_cubes": exits[-1], "glance_only": exits[0], "baseline": base,
                  "per_exit": exits},
        "videos_per_s": {name: 1.0 / s for name, s in per_video.items()},
        "gmacs_per_s": {
            "glance_stage": exits[0] / per_video["glance_only"],
            "cube_stages": (exits[-1] - exits[0]) / cube_seconds,
            "all_cubes": exits[-1] / per_video["all_cubes"],
            "early_exit": early_gmacs / per_video["early_exit"],
            "baseline": base / per_video["baseline"],
        },
    }
    result["speedup_vs_baseline"] = {
        "early_exit": per_video["baseline"] / per_video["early_exit"],
        "all_cubes": per_video["baseline"] / per_video["all_cubes"],
    }
    return result


def format_bench(result: dict) -> str:
    """The bench result as a small table."""
    g, v, r = result["gmacs"], result["videos_per_s"], result["gmacs_per_s"]
    mix = " / ".join(f"{x:.2f}" for x in result["exit_fractions"])
    lines = [f"device {result['device']}, {result['threads']} threads, batch {result['batch_size']}, {result['dtype']}, "
             f"inputs {result['inputs']} {tuple(result['video_shape'])}, median of {result['rounds']} rounds",
             f"{'':>24} {'GMACs/video':>12} {'videos/s':>10} {'GMAC/s':>8} {'vs baseline':>12}"]
    rows = [("AdaFocusV3 early exit", "early_exit", r["early_exit"]), ("AdaFocusV3 all cubes", "all_cubes", r["all_cubes"]),
            ("AdaFocusV3 glance only", "glance_only", r["glance_stage"]), ("full-video baseline", "baseline", r["baseline"])]
    for label, key, rate in rows:
        speed = v["baseline"] and v[key] / v["baseline"]
        lines.append(f"{label:>24} {g[key]:>12.3f} {v[key]:>10.2f} {rate:>8.1f} {speed:>11.2f}x")
    lines.append(f"exit mix (exits 0..{len(result['exit_fractions']) - 1}): {mix}; cube stages {r['cube_stages']:.1f} GMAC/s; "
                 f"settings {result['settings']}")
    return "\n".join(lines)
