"""Benchmark the cube-crop ops against grid_sample and a plain slice copy.

For every workload (benchmarks/workloads.py) and every available backend of
the device, times the forward and the backward (video + centre gradients),
warm, median of --repeats, next to
  grid_sample  F.grid_sample(align_corners=False, trilinear) on a prebuilt grid
               of the same sample positions (backward: gradients to input and grid)
  slice        a plain integer slice copy of the same cubes: the memory floor
               (backward: a zero video gradient plus each cube's gradient added at its slice)
and for crop_cubes_int, the unfused float-convert + normalise + slice pipeline.
Prints a table (ms, x grid_sample = grid_sample time / ours, x slice = our
time / slice time) and writes JSON with the machine's description.

    python benchmarks/bench_ops.py --out benchmarks/results/bench_ops_cpu.json
    python benchmarks/bench_ops.py --quick            # small shapes, a smoke test
    python benchmarks/bench_ops.py --device cuda      # CUDA events, GB/s vs a clone
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cubecrop  # noqa: E402
from adafocus.utils.files import atomic_write  # noqa: E402
from benchmarks import workloads as wl  # noqa: E402


# ---------------------------------------------------------------- timing


class Timer:
    """Median wall time of a callable in ms, warm; CUDA-synchronised with events on a GPU."""

    def __init__(self, device: torch.device, repeats: int, warmup: int = 2, clock: str = "wall"):
        self.device = device
        self.repeats = repeats
        self.warmup = warmup
        # "thread": CPU time of the calling thread (run with 1 thread): robust on a machine shared
        # with other jobs, where wall time measures the scheduler more than the kernel.
        self.clock = time.thread_time if clock == "thread" else time.perf_counter

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        if self.device.type == "cuda":
            for _ in range(self.repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(self.repeats):
                t0 = self.clock()
                fn()
                times.append((self.clock() - t0) * 1e3)
        return statistics.median(times)


def copy_bandwidth_gbs(device: torch.device, timer: Timer) -> float:
    """Achievable memory bandwidth: bytes read + written by clone() of a large tensor."""
    x = torch.empty(64 * 2**20, dtype=torch.float32, device=device).fill_(1.0)  # 256 MiB
    ms = timer(lambda: x.clone())
    return 2 * x.numel() * x.element_size() / (ms * 1e-3) / 1e9


def machine_info(device: torch.device) -> dict:
    info = {
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------- results


class Results:
    def __init__(self, device: torch.device, bandwidth: Optional[float]):
        self.rows = []
        self.device = device
        self.bandwidth = bandwidth

    def add(self, workload: str, direction: str, impl: str, ms: float, nbytes: Optional[int] = None) -> None:
        row = {"workload": workload, "pass": direction, "impl": impl, "ms": ms}
        if nbytes is not None and self.device.type == "cuda":
            row["GB/s"] = nbytes / (ms * 1e-3) / 1e9
        self.rows.append(row)

    def finish(self) -> None:
        """Ratios against the baselines of the same workload and pass."""
        for row in self.rows:
            same = {r["impl"]: r["ms"] for r in self.rows if r["workload"] == row["workload"] and r["pass"] == row["pass"]}
            if "grid_sample" in same:
                row["x_grid_sample"] = same["grid_sample"] / row["ms"]  # speed-up over grid_sample
            for floor in ("slice", "convert_normalise_slice"):
                if floor in same:
                    row["x_" + floor] = row["ms"] / same[floor]  # time relative to the floor
                    break

    def table(self) -> str:
        lines = [
            f"{'workload':<11} {'pass':<8} {'impl':<26} {'ms':>9} {'x grid_sample':>14} {'x floor':>8}"
            + ("  GB/s" if self.device.type == "cuda" else "")
        ]
        for r in self.rows:
            floor = r.get("x_slice", r.get("x_convert_normalise_slice"))
            line = (
                f"{r['workload']:<11} {r['pass']:<8} {r['impl']:<26} {r['ms']:>9.3f} "
                f"{_fmt(r.get('x_grid_sample')):>14} {_fmt(floor):>8}"
            )
            if "GB/s" in r:
                line += f"  {r['GB/s']:.0f}"
            lines.append(line)
        return "\n".join(lines)


def _fmt(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.2f}"


# ---------------------------------------------------------------- workloads


def crop_backends(device: torch.device, with_reference: bool) -> list:
    return [b for b in cubecrop.available_backends(device) if b != "reference" or with_reference]


def bench_crop(w: wl.CropWorkload, backends: list, timer: Timer, results: Results, check: bool) -> None:
    video, centers, size = w.video, w.centers, w.size
    extents = video.shape[2:]
    k = centers.shape[1]
    elt = video.element_size()
    out_bytes = video.shape[0] * k * video.shape[1] * size[0] * size[1] * size[2] * elt
    grad_out = torch.randn((video.shape[0], k, video.shape[1]) + tuple(size), device=video.device, dtype=video.dtype)
    # Bytes a memory-bound kernel moves: forward reads about a cube and writes one;
    # backward reads grad_out and the video's cube, writes the whole video gradient.
    fwd_bytes = 2 * out_bytes
    bwd_bytes = 2 * out_bytes + video.numel() * elt

    grid = wl.cube_grid(centers, size, extents)
    with torch.no_grad():
        results.add(w.name, "forward", "grid_sample", timer(lambda: wl.grid_sample_crop(video, grid)), fwd_bytes)
        starts = wl.integer_starts(centers, size, extents)
        results.add(w.name, "forward", "slice", timer(lambda: wl.slice_cubes(video, starts, size)), fwd_bytes)
        # The copy alone, into an output allocated (and paged in) once: what allocation costs shows here.
        buffer = wl.slice_cubes(video, starts, size)
        results.add(w.name, "forward", "slice_preallocated", timer(lambda: wl.slice_cubes(video, starts, size, buffer)), fwd_bytes)
        for backend in backends:
            fn = lambda: cubecrop.crop_cubes(video, centers, size, backend=backend)  # noqa: E731
            if check:
                _check_same_crop(fn(), wl.grid_sample_as_cubes(wl.grid_sample_crop(video, grid), k), backend)
            results.add(w.name, "forward", backend, timer(fn), fwd_bytes)

    video_g = video.detach().requires_grad_(True)
    grid_g = grid.detach().requires_grad_(True)
    out = wl.grid_sample_crop(video_g, grid_g)
    g = grad_out.transpose(1, 2).reshape(out.shape)  # our (N, K, C, ...) as grid_sample's (N, C, K*Dt, ...)
    results.add(w.name, "backward", "grid_sample",
                timer(lambda: torch.autograd.grad(out, (video_g, grid_g), g, retain_graph=True)), bwd_bytes)
    results.add(w.name, "backward", "slice",
                timer(lambda: wl.slice_cubes_backward(grad_out, video.shape, starts, size)), bwd_bytes)
    centers_g = centers.detach().requires_grad_(True)
    for backend in backends:
        out = cubecrop.crop_cubes(video_g, centers_g, size, backend=backend)
        results.add(w.name, "backward", backend,
                    timer(lambda: torch.autograd.grad(out, (video_g, centers_g), grad_out, retain_graph=True)), bwd_bytes)
    del out


def bench_feature(w: wl.FeatureWorkload, backends: list, timer: Timer, results: Results, check: bool) -> None:
    features, size = w.features, w.size
    offsets = w.offsets  # (M, 1, 3) in cells
    extents = features.shape[2:]
    elt = features.element_size()
    out_bytes = features.shape[0] * features.shape[1] * size[0] * size[1] * size[2] * elt
    fwd_bytes = 2 * out_bytes
    bwd_bytes = 2 * out_bytes + features.numel() * elt
    grad_out = torch.randn((features.shape[0], features.shape[1]) + tuple(size), device=features.device, dtype=features.dtype)
    grid = wl.cube_grid(offsets, size, extents)
    starts = wl.integer_starts(offsets, size, extents)
    with torch.no_grad():
        results.add(w.name, "forward", "grid_sample", timer(lambda: wl.grid_sample_crop(features, grid)), fwd_bytes)
        results.add(w.name, "forward", "slice", timer(lambda: wl.slice_cubes(features, starts, size)), fwd_bytes)
        for backend in backends:
            fn = lambda: cubecrop.feature_offset_crop(features, w.centers, w.origin, w.stride, backend=backend)  # noqa: E731
            if check:
                _check_same_crop(fn(), wl.grid_sample_crop(features, grid), backend)
            results.add(w.name, "forward", backend, timer(fn), fwd_bytes)
    features_g = features.detach().requires_grad_(True)
    grid_g = grid.detach().requires_grad_(True)
    out = wl.grid_sample_crop(features_g, grid_g)
    results.add(w.name, "backward", "grid_sample",
                timer(lambda: torch.autograd.grad(out, (features_g, grid_g), grad_out, retain_graph=True)), bwd_bytes)
    results.add(w.name, "backward", "slice",
                timer(lambda: wl.slice_cubes_backward(grad_out.unsqueeze(1), features.shape, starts, size)), bwd_bytes)
    centers_g = w.centers.detach().requires_grad_(True)
    for backend in backends:
        out = cubecrop.feature_offset_crop(features_g, centers_g, w.origin, w.stride, backend=backend)
        results.add(w.name, "backward", backend,
                    timer(lambda: torch.autograd.grad(out, (features_g, centers_g), grad_out, retain_graph=True)), bwd_bytes)
    del out


def bench_int(w: wl.IntWorkload, backends: list, timer: Timer, results: Results, check: bool) -> None:
    video, centers, size = w.video, w.centers, w.size
    extents = video.shape[1:4]
    starts = wl.integer_starts(centers, size, extents)
    n, k, c = video.shape[0], centers.shape[1], video.shape[4]
    out_elems = n * k * c * size[0] * size[1] * size[2]
    nbytes = out_elems * (1 + 4)  # read uint8, write float32
    results.add(w.name, "forward", "convert_normalise_slice",
                timer(lambda: wl.convert_normalise_slice(video, starts, size, w.mean, w.std)), nbytes)
    results.add(w.name, "forward", "slice_convert_normalise",
                timer(lambda: wl.slice_convert_normalise(video, starts, size, w.mean, w.std)), nbytes)
    for backend in backends:
        fn = lambda: cubecrop.crop_cubes_int(video, centers, size, channels_last=True, mean=w.mean, std=w.std, backend=backend)  # noqa: E731
        if check:
            _check_same_crop(fn(), wl.convert_normalise_slice(video, starts, size, w.mean, w.std), backend)
        results.add(w.name, "forward", backend, timer(fn), nbytes)


def _check_same_crop(ours: torch.Tensor, theirs: torch.Tensor, backend: str) -> None:
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-4, atol=1e-4,
                               msg=lambda m: f"backend {backend} and the baseline disagree: {m}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workloads", default=",".join(wl.WORKLOADS), help=f"comma list of {wl.WORKLOADS}")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per entry (median); default 7 (CPU), 50 (CUDA)")
    parser.add_argument("--quick", action="store_true", help="small shapes and 2 repeats: a smoke test")
    parser.add_argument("--with-reference", action="store_true", help="also time the (slow) reference backend")
    parser.add_argument("--no-check", action="store_true", help="skip checking each backend against the baseline")
    parser.add_argument("--clock", default="wall", choices=("wall", "thread"),
                        help="wall: wall time with all threads; thread: CPU time of one thread (sets 1 thread; "
                        "use it on a loaded machine)")
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms(True, warn_only=True): our video gradients take "
                        "their gather path; grid_sample's backward only warns")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = set(names) - set(wl.WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {wl.WORKLOADS}")
    repeats = args.repeats or (2 if args.quick else (50 if device.type == "cuda" else 7))
    if args.clock == "thread":
        if device.type == "cuda":
            parser.error("--clock thread is for CPU runs")
        torch.set_num_threads(1)
    timer = Timer(device, repeats, warmup=1 if args.quick else 2, clock=args.clock)
    backends = crop_backends(device, args.with_reference)
    bandwidth = copy_bandwidth_gbs(device, timer) if device.type == "cuda" else None
    results = Results(device, bandwidth)
    check = not args.no_check

    for name in names:
        if name == "tsm":
            bench_crop(wl.tsm_workload(device, args.quick), backends, timer, results, check)
        elif name == "long_video":
            bench_crop(wl.long_video_workload(device, args.quick), backends, timer, results, check)
        elif name == "feature":
            bench_feature(wl.feature_workload(device, args.quick), backends, timer, results, check)
        elif name == "int":
            bench_int(wl.int_workload(device, args.quick), backends, timer, results, check)
    results.finish()

    report = {
        "machine": machine_info(device),
        "backends": backends,
        "repeats": repeats,
        "clock": args.clock,
        "quick": args.quick,
        "deterministic": args.deterministic,
        "copy_bandwidth_GBs": bandwidth,
        "results": results.rows,
    }
    print(f"# {report['machine']['cpu_model']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device.type}, {args.clock} clock, median of {repeats}")
    if bandwidth is not None:
        print(f"# copy bandwidth (clone): {bandwidth:.0f} GB/s")
    print("# x grid_sample: grid_sample time / this time (higher is better); x floor: this time / slice time")
    print(results.table())
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(report, f, indent=2)
        print(f"# wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
