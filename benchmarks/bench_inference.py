"""CPU inference at paper scale: what each setting of adafocus.inference.optimize is worth, and
the `adafocus bench` table for the paper presets.

1. Memory format per backbone and frame size (the encoders' workloads in the paper presets):
   median seconds per batch of frames, contiguous vs channels-last, interleaved.
2. torch.compile of the encoders' backbones (compile time excluded), per stage (--compile).
3. glibc's malloc thresholds vs retained freed memory (adafocus.inference.allocator) for
   paper_tsm's early exit and baseline, interleaved in one process (--allocator).
4. Stage rates: GMAC/s of each paper_tsm stage on its share of a batch of 10 (the glance,
   the early exit's policy and cubes of the 7 videos that go on, the baseline's fL) against
   large fp32 matrix products (what this machine's cores multiply-add at), interleaved; and
   the early exit's speedup over the baseline that these rates predict, with the glance as
   measured and at fL's rate (why the videos/s ratio stays below the GMACs ratio).
5. `adafocus bench` (adafocus.apps.bench.run_bench) for paper_tsm with the exit mix
   0.3 / 0.7 / 0.0 and paper_long with a mix over its 19 exits, random weights.

    .venv/bin/python -m benchmarks.bench_inference --threads 2 --allocator --out bench_inference_cpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from adafocus.inference.allocator import (RETAIN_MMAP_THRESHOLD, RETAIN_TRIM_THRESHOLD, SYSTEM_THRESHOLD,
                                          retain_freed_memory, set_malloc_thresholds)
from adafocus.model.backbones import build_backbone
from benchmarks import repro_common as rc

# (backbone, frame side, frames per batch): the glance, a paper_tsm cube batch, the baseline's frames.
WORKLOADS = [("mobilenet_v2", 224, 32), ("resnet50", 128, 24), ("resnet50", 224, 8), ("resnet18", 128, 24),
             ("tiny", 24, 256)]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def memory_format_table(rounds: int) -> list:
    rows = []
    for name, side, frames in WORKLOADS:
        kwargs = dict(tiny_channels=(12, 24, 48), tiny_stride=4) if name == "tiny" else {}
        backbone = build_backbone(name, **kwargs).eval()
        x = torch.randn(frames, 3, side, side)
        seconds = {fmt: [] for fmt in FORMATS}
        with torch.inference_mode():
            for _ in range(rounds):
                for fmt, memory_format in FORMATS.items():
                    backbone.body.to(memory_format=memory_format)
                    backbone(x)  # the first call after a format change re-packs weights
                    start = time.perf_counter()
                    backbone(x)
                    seconds[fmt].append(time.perf_counter() - start)
        median = {fmt: statistics.median(v) for fmt, v in seconds.items()}
        rows.append({"backbone": name, "side": side, "frames": frames, "seconds": median,
                     "channels_last_speedup": median["contiguous"] / median["channels_last"]})
        print(f"{name:>13} {side:>4}px x{frames:<4} contiguous {median['contiguous']:.3f}s  channels_last "
              f"{median['channels_last']:.3f}s  ({rows[-1]['channels_last_speedup']:.2f}x)", flush=True)
    return rows


def allocator_table(threads: int, rounds: int, retain_after: bool) -> dict:
    """paper_tsm's early exit (0.3 / 0.7 / 0) and its fair baseline with glibc's thresholds as a
    process starts with them vs retained (adafocus.inference.allocator), interleaved in one
    process. The "system" variant pins the initial 128 KiB thresholds (a fresh process lets
    them adapt up to 32 MiB; paper-scale activations are larger than either)."""
    from adafocus.apps.bench import exit_plan_for
    from adafocus.inference import EarlyExitRunner
    from adafocus.inference.optimize import optimize_for_inference
    from adafocus.model import AdaFocusV3, FullVideoBaseline

    config = rc.run_config("configs/paper_tsm.yaml").model_config()
    torch.manual_seed(0)
    model, baseline = AdaFocusV3(config).eval(), FullVideoBaseline(config).eval()
    optimize_for_inference(model)
    optimize_for_inference(baseline)
    runner, plan = EarlyExitRunner(model), exit_plan_for([0.3, 0.7, 0.0], 10)
    video = torch.rand(10, 3, 24, 224, 224)  # the preset's data shape
    thresholds = {"system": (SYSTEM_THRESHOLD, SYSTEM_THRESHOLD), "retained": (RETAIN_MMAP_THRESHOLD, RETAIN_TRIM_THRESHOLD)}
    calls = {"early_exit": lambda: runner(video, exit_plan=plan), "baseline": lambda: baseline(video)}
    seconds = {(a, c): [] for a in thresholds for c in calls}
    with torch.inference_mode():
        for _ in range(rounds):
            for allocator, values in thresholds.items():
                set_malloc_thresholds(*values)
                for name, call in calls.items():
                    call()  # the first call after a switch grows (or maps) the heap
                    start = time.perf_counter()
                    call()
                    seconds[(allocator, name)].append(time.perf_counter() - start)
    set_malloc_thresholds(*thresholds["retained" if retain_after else "system"])  # as the rest of the run
    median = {f"{a}/{c}": statistics.median(v) for (a, c), v in seconds.items()}
    out = {"seconds_per_batch_of_10": median, "rounds": rounds, "threads": threads,
           "speedup_retained": {c: median[f"system/{c}"] / median[f"retained/{c}"] for c in calls},
           "early_exit_vs_baseline": {a: median[f"{a}/baseline"] / median[f"{a}/early_exit"] for a in thresholds}}
    print(f"allocator (paper_tsm, batch 10): early exit {median['system/early_exit']:.2f}s -> "
          f"{median['retained/early_exit']:.2f}s, baseline {median['system/baseline']:.2f}s -> "
          f"{median['retained/baseline']:.2f}s; early exit vs baseline {out['early_exit_vs_baseline']['system']:.2f}x "
          f"(system) / {out['early_exit_vs_baseline']['retained']:.2f}x (retained)", flush=True)
    return out


def stage_rate_table(rounds: int, config_path: str = "configs/paper_tsm.yaml", videos: int = 10, going_on: int = 7,
                     video_size=(24, 224, 224)) -> dict:
    """A preset's stages on their share of a batch of `videos` clips of `video_size`, of which
    `going_on` pass the glance (paper_tsm's 10 and 7: the exit mix 0.3 / 0.7 / 0): the glance;
    the policy and one cube each of those going on; the baseline's fL. With fp32 2048^3 matrix
    products: GMAC/s each, interleaved, and the speedup the rates predict (the exit heads,
    under 0.1% of the GMACs, left out)."""
    from adafocus.apps.bench import time_interleaved
    from adafocus.inference import EarlyExitRunner
    from adafocus.inference.cost import count_gmacs
    from adafocus.inference.optimize import optimize_for_inference
    from adafocus.model import AdaFocusV3

    config = rc.run_config(config_path).model_config()
    torch.manual_seed(0)
    model = AdaFocusV3(config).eval()
    optimize_for_inference(model)
    runner = EarlyExitRunner(model)
    side = config.glance_resolution
    glance_input = torch.rand(videos, 3, config.glance_frames, side, side)
    cubes = torch.rand(going_on, 3, *config.cube_size)
    fl_input = torch.rand(videos, 3, config.full_video_frames, *video_size[1:])
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    with torch.inference_mode():
        glance_maps = model.glance.encode(glance_input)[:going_on]
        calls = {"glance": lambda: model.glance.encode(glance_input),
                 "policy": lambda: runner.centers(glance_maps, video_size),
                 "early_exit_cubes": lambda: model.local.encode(cubes),
                 "baseline_fl": lambda: model.local.encode(fl_input),
                 "matmul_2048": lambda: [a @ b for _ in range(4)]}  # about as long as the glance
        gmacs = {name: count_gmacs(call) for name, call in calls.items()}
        seconds = time_interleaved(calls, rounds=rounds, iterations=1, device=torch.device("cpu"))
    rate = {name: gmacs[name] / seconds[name] for name in calls}

    def speedup(glance_s: float) -> float:
        return (glance_s + seconds["baseline_fl"]) / (glance_s + seconds["policy"] + seconds["early_exit_cubes"])

    adaptive = ("glance", "policy", "early_exit_cubes")
    gmacs_ratio = (gmacs["glance"] + gmacs["baseline_fl"]) / sum(gmacs[name] for name in adaptive)
    out = {"gmacs": gmacs, "seconds": seconds, "gmacs_per_s": rate,
           "share_of_matmul_rate": {name: rate[name] / rate["matmul_2048"] for name in calls},
           "predicted_speedup": speedup(seconds["glance"]),
           "predicted_speedup_if_glance_at_fl_rate": speedup(gmacs["glance"] / rate["baseline_fl"]),
           "gmacs_ratio": gmacs_ratio, "rounds": rounds}
    for name in calls:
        print(f"{name:>17} {gmacs[name]:7.2f} GMACs {seconds[name]:.3f}s {rate[name]:6.1f} GMAC/s "
              f"({out['share_of_matmul_rate'][name]:.2f} of the matrix product's)", flush=True)
    print(f"early exit vs baseline from these rates {out['predicted_speedup']:.2f}x; with the glance at "
          f"fL's rate {out['predicted_speedup_if_glance_at_fl_rate']:.2f}x; GMACs ratio {gmacs_ratio:.2f}x", flush=True)
    return out


def exit_mix_for(num_exits: int) -> str:
    """A plausible mix for an untrained model: 30% stop at the glance, the rest spread over the first cubes."""
    if num_exits == 3:
        return "0.3,0.7,0"  # the paper_tsm setting: 14.0 GFLOPs needs >= 29.5% glance exits
    head = [0.3, 0.3, 0.2, 0.2]
    return ",".join(str(p) for p in head + [0] * (num_exits - len(head)))


def bench_presets(threads: int, rounds: int, compile_encoders: bool, retain_memory: bool) -> dict:
    from adafocus.apps.bench import format_bench, run_bench

    out = {}
    for preset in ("paper_tsm", "paper_long"):
        # The preset's own config file says how many frames a video is sampled to.
        config = rc.run_config(f"configs/{preset}.yaml", train={"threads": threads, "seed": 0})
        frames, side = config.data.num_segments, config.data.image_size
        mix = exit_mix_for(config.model_config().num_exits)
        result = run_bench(config, batch_size=10, iterations=1, rounds=rounds, exit_mix=mix,
                           compile_encoders=compile_encoders, video_size=f"{frames},{side},{side}",
                           retain_memory=retain_memory)
        result["exit_mix"] = mix
        out[preset] = result
        print(f"\n{preset} (compile={compile_encoders}, video {frames}x{side}x{side})\n{format_bench(result)}",
              flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-formats", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also run the preset benches with torch.compile")
    parser.add_argument("--allocator", action="store_true",
                        help="also time paper_tsm with glibc's own thresholds vs retained memory, interleaved")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc thresholds as they are (default: adafocus.inference.allocator)")
    parser.add_argument("--out", default="bench_inference_cpu.json", help="file name under benchmarks/results/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    retain = not args.system_malloc and retain_freed_memory()  # before the format table: it allocates too
    result = {"machine": rc.machine(), "command": rc.command_line("benchmarks.bench_inference", argv)}
    if not args.skip_formats:
        result["memory_formats"] = memory_format_table(args.rounds)
    if args.allocator:
        result["allocator"] = allocator_table(args.threads, args.rounds, retain_after=retain)
    result["retain_freed_memory"] = retain
    result["stage_rates"] = stage_rate_table(args.rounds)
    result["presets"] = bench_presets(args.threads, max(2, args.rounds // 2), False, retain)
    if args.compile:
        result["presets_compiled"] = bench_presets(args.threads, max(2, args.rounds // 2), True, retain)
    print(rc.write_json(args.out, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
