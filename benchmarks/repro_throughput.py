"""Table 3 of AdaFocusV3 in miniature: measured videos/s on this CPU, batched early exit vs
the full-video baseline, same backbones, same batch, with the GFLOPs ratio beside it.

Models: the seed-0 AdaFocusV3 (deep-feature) checkpoint of benchmarks/repro_table5.py with
the entropy thresholds that benchmarks/repro_fig3.py solved on val (its "summary point":
the cheapest budget within 0.5 points of all cubes on val), and the full-video baseline
repro_fig3.py trained. Inference: `EarlyExitRunner(model)(video, thresholds)` (integer cubes, batch
compacted after each exit) vs `baseline(video)`, both under torch.inference_mode, on the
same batches of test videos already in memory (decoding not timed).

The machine is shared and loaded, so absolute videos/s are noisy: the two models are timed
in alternating rounds over the same batches, and the ratio is taken per round (median over
rounds), which cancels most of the slow drift of the load.

    .venv/bin/python -m benchmarks.repro_throughput        # ~3 min after repro_fig3.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from adafocus.inference import EarlyExitRunner, baseline_gmacs, no_exit_thresholds
from benchmarks import repro_common as rc


def main(argv=None) -> int:
    from adafocus.data import build_dataset
    from adafocus.training.checkpoint import load_model
    from adafocus.training.config import RunConfig
    from benchmarks.repro_fig3 import load_baseline

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fig3", default=os.path.join(rc.RESULTS, "repro_fig3.json"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--videos", type=int, default=384, help="test videos per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="repro_throughput", help="result name prefix under benchmarks/results/")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", default="wall", choices=("wall", "thread"),
                        help="wall: perf_counter with torch's threads; thread: CPU time of the one thread "
                             "(sets 1 thread), which other processes' load does not inflate")
    args = parser.parse_args(argv)
    if args.clock == "thread":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    with open(args.fig3) as f:
        fig3 = json.load(f)
    config = RunConfig.from_dict(fig3["config"])
    model, _ = load_model(fig3["checkpoint"], torch.device("cpu"))
    baseline = load_baseline(fig3["baseline"]["checkpoint"])
    point = fig3["summary_point"]
    thresholds = torch.tensor(point["thresholds"])

    dataset = build_dataset(config.data, "test", model.config.num_classes, config.train.seed)
    n = min(args.videos, len(dataset))
    videos = torch.stack([dataset[i]["video"] for i in range(n)])
    labels = torch.tensor([dataset[i]["label"] for i in range(n)])
    batches = [videos[i:i + args.batch_size] for i in range(0, n, args.batch_size)]
    no_exit = no_exit_thresholds(model.num_exits)  # every video runs every cube

    runner = EarlyExitRunner(model)
    runners = {
        "adafocus_early_exit": lambda x: runner(x, thresholds),
        "adafocus_all_cubes": lambda x: runner(x, no_exit),
        "full_video_baseline": lambda x: baseline(x).logits[0],
    }
    with torch.inference_mode():
        # Warm-up: one untimed pass over every batch. Early exit compacts each batch to the videos
        # still running, so every stage meets a new batch size, and oneDNN builds (and caches) its
        # convolution primitives per shape. In a first attempt, warming up on one batch left the
        # first timed rounds 10x slower than the later ones.
        for run in runners.values():
            for batch in batches:
                run(batch)
        times = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                t0 = clock()
                for batch in batches:
                    run(batch)
                times[name].append(clock() - t0)
        outs = [runner(b, thresholds) for b in batches]
        base_logits = torch.cat([baseline(b).logits[0] for b in batches])
    picked = torch.cat([o.logits for o in outs])
    gflops = torch.cat([o.gflops for o in outs])
    exits = torch.cat([o.exit_index for o in outs])
    base_gflops = baseline_gmacs(baseline, videos.shape)
    all_cubes_gflops = runner.gmacs_per_exit(videos.shape)[-1]

    vps = {name: [n / t for t in ts] for name, ts in times.items()}
    ratio = [b / a for a, b in zip(times["adafocus_early_exit"], times["full_video_baseline"])]
    ratio_all = [b / a for a, b in zip(times["adafocus_all_cubes"], times["full_video_baseline"])]
    result = {
        "videos": n, "batch_size": args.batch_size, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "clock": args.clock,
        "thresholds": point["thresholds"],
        "videos_per_s": {k: {"median": statistics.median(v), "all": v} for k, v in vps.items()},
        "speedup_early_exit_vs_baseline": {"median": statistics.median(ratio), "all": ratio},
        "speedup_all_cubes_vs_baseline": {"median": statistics.median(ratio_all), "all": ratio_all},
        "gflops": {"adafocus_early_exit_mean": float(gflops.mean()), "adafocus_all_cubes": all_cubes_gflops,
                   "full_video_baseline": base_gflops},
        "gflops_ratio_baseline_over_early_exit": base_gflops / float(gflops.mean()),
        "accuracy_on_timed_videos": {"adafocus_early_exit": float((picked.argmax(1) == labels).double().mean()),
                                     "full_video_baseline": float((base_logits.argmax(1) == labels).double().mean())},
        "exit_fractions": torch.bincount(exits, minlength=model.num_exits).double().div(n).tolist(),
        "machine": rc.machine(),
        "command": rc.command_line("benchmarks.repro_throughput", argv),
    }
    rc.write_json(f"{args.out}_{args.clock}_{torch.get_num_threads()}t.json", result)
    print(f"{n} test videos {tuple(videos.shape[1:])}, batch {args.batch_size}, {result['threads']} threads, {args.clock} clock, "
          f"{args.rounds} alternating rounds; load average {result['machine']['load_average']}")
    for name in runners:
        v = vps[name]
        print(f"  {name:22s} {statistics.median(v):8.1f} videos/s (rounds: {' '.join(f'{x:.0f}' for x in v)})")
    print(f"  speed-up early exit vs baseline: x{statistics.median(ratio):.2f} (per round {' '.join(f'{r:.2f}' for r in ratio)}); "
          f"all cubes vs baseline x{statistics.median(ratio_all):.2f}")
    print(f"  GFLOPs: early exit {float(gflops.mean()) * 1e3:.2f} M, all cubes {all_cubes_gflops * 1e3:.2f} M, baseline "
          f"{base_gflops * 1e3:.2f} M -> ratio x{result['gflops_ratio_baseline_over_early_exit']:.2f}")
    print(f"  accuracy on these videos: early exit {result['accuracy_on_timed_videos']['adafocus_early_exit'] * 100:.1f}%, "
          f"baseline {result['accuracy_on_timed_videos']['full_video_baseline'] * 100:.1f}%; exits per stage "
          + " ".join(f"{x * 100:.0f}%" for x in result["exit_fractions"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
