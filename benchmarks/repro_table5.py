"""Table 5 of AdaFocusV3 in miniature: accuracy after t = 1, 2, 4 cubes per policy mode.

Variants (benchmarks.repro_common.VARIANTS, each a (policy, crop_gradient) pair): random policy, learned temporal only (learned_t),
learned spatial only (learned_xy), pixel-based crop gradient (pixel, AdaFocusV2 style)
and the deep-feature crop gradient (deep_feature, AdaFocusV3). No glance exit, no
early exit: every test video runs every cube (integer cubes, the inference path), and
the accuracy of exit t is reported, with the share of videos where one of the first t
cubes covers the target ("cube hit rate"). Mean +- sample std over the seeds.

Per seed, one random-cube warm-up (train.random_policy_epochs) is trained once and
each mode continues from that same checkpoint for the remaining epochs, as in
`adafocus demo` (so the modes differ only in how the cubes are chosen after it).

    .venv/bin/python -m benchmarks.repro_table5                 # 3 seeds x 5 modes, ~30 min on 2 cores
    .venv/bin/python -m benchmarks.repro_table5 --seeds 0 --modes random deep_feature   # a subset

Writes benchmarks/results/repro_table5.json (updated after every run) and
benchmarks/results/repro_table5.md; checkpoints under outputs/repro/table5/.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from benchmarks import repro_common as rc

MODES = ["random", "learned_t", "learned_xy", "pixel", "deep_feature"]
SHOWN_CUBES = (1, 2, 4)


def summarise(runs: dict) -> dict:
    """mode -> {top1_after: {t: (mean, std)}, hit_after: ..., seeds}."""
    table = {}
    for mode in MODES:
        seeds = [r for r in runs.values() if r["mode"] == mode]
        if not seeds:
            continue
        row = {"seeds": sorted(r["seed"] for r in seeds), "top1_after": {}, "hit_after": {}}
        for t in [0, *SHOWN_CUBES]:
            if t < len(seeds[0]["test_top1"]):
                row["top1_after"][t] = rc.mean_std([r["test_top1"][t] for r in seeds])
            if 1 <= t <= len(seeds[0]["hit_rate_after"]):
                row["hit_after"][t] = rc.mean_std([r["hit_rate_after"][t - 1] for r in seeds])
        row["train_seconds"] = rc.mean_std([r["seconds"] for r in seeds])
        table[mode] = row
    return table


def markdown(table: dict) -> str:
    pm = lambda ms: f"{ms[0] * 100:.1f} ± {ms[1] * 100:.1f}"  # noqa: E731
    head = "| policy | seeds | " + " | ".join(f"top-1 after {t}" for t in SHOWN_CUBES) + " | " + \
        " | ".join(f"hit rate after {t}" for t in SHOWN_CUBES) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(SHOWN_CUBES))]
    for mode, row in table.items():
        accs = " | ".join(pm(row["top1_after"][t]) if t in row["top1_after"] else "-" for t in SHOWN_CUBES)
        hits = " | ".join(pm(row["hit_after"][t]) if t in row["hit_after"] else "-" for t in SHOWN_CUBES)
        lines.append(f"| {mode} | {len(row['seeds'])} | {accs} | {hits} |")
    return "\n".join(lines)


def parallel_and_merge(args, argv) -> int:
    """--jobs N: one child process per seed (its own --out), then merge; --merge: merge only."""
    import json
    import subprocess

    names = args.merge
    if not names:
        names, children = [], []
        for seed in args.seeds:
            name = args.out.replace(".json", f"_seed{seed}.json")
            names.append(name)
            cmd = [sys.executable, "-m", "benchmarks.repro_table5", "--config", args.config, "--seeds", str(seed),
                   "--modes", *args.modes, "--out", name] + (["--fresh"] if args.fresh else [])
            log = open(os.path.join(rc.RESULTS, "..", "..", "outputs", "repro", f"table5_seed{seed}.log"), "w")
            children.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=rc.ROOT))
            while sum(c.poll() is None for c in children) >= args.jobs:
                time.sleep(5)
        for child in children:
            child.wait()
    runs, machines = {}, []
    for name in names:
        with open(os.path.join(rc.RESULTS, name)) as f:
            part = json.load(f)
        runs.update(part["runs"])
        machines.append(part["machine"])
    table = summarise(runs)
    rc.write_json(args.out, {"config": rc.run_config(args.config).to_dict(), "machine": machines, "runs": runs,
                             "table": table, "merged_from": names,
                             "command": rc.command_line("benchmarks.repro_table5", argv)})
    text = markdown(table)
    print(text)
    with open(os.path.join(rc.RESULTS, args.out.replace(".json", ".md")), "w") as f:
        f.write(text + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(rc.ROOT, "configs", "repro_table5.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--out", default="repro_table5.json", help="file name under benchmarks/results/")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs recorded in --out")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run the seeds in this many parallel processes (one JSON per seed, merged at the end)")
    parser.add_argument("--merge", nargs="*", default=None,
                        help="only merge these per-seed JSON files (names under benchmarks/results/) into --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import json

    if args.merge is not None or args.jobs > 1:
        return parallel_and_merge(args, argv)
    out_path = os.path.join(rc.RESULTS, args.out)
    runs = {}
    if os.path.exists(out_path) and not args.fresh:
        with open(out_path) as f:
            runs = json.load(f).get("runs", {})
    base = rc.run_config(args.config)
    start = time.time()
    for seed in args.seeds:
        config = rc.run_config(args.config, train={"seed": seed})
        seed_dir = os.path.join(config.train.output_dir, f"seed{seed}")
        t0 = time.time()
        warm = rc.train_warmup(config, os.path.join(seed_dir, "warmup"))
        warm_seconds = time.time() - t0
        for mode in args.modes:
            t0 = time.time()
            model = rc.train_branch(config, warm, os.path.join(seed_dir, mode), mode)
            seconds = time.time() - t0 + warm_seconds
            test = rc.collect_split(model, config, "test", eval_seed=seed)
            from adafocus.evaluation import metrics

            top1 = [metrics.top1(logits, test["labels"]) for logits in test["exit_logits"]]
            hits = [metrics.hit_rate_after(test["hits"], k) for k in range(1, test["hits"].shape[1] + 1)]
            runs[f"{mode}/seed{seed}"] = {
                "mode": mode, "seed": seed, "test_top1": top1, "hit_rate_after": hits,
                "center_spread": metrics.center_spread(test["centers"]), "seconds": seconds,
                "checkpoint": os.path.join(seed_dir, mode, "checkpoint.pt"),
            }
            logging.info("%s seed %d: top-1 after 0..M cubes %s, hit rate after 1..M %s (%.0fs)", mode, seed,
                         " ".join(f"{a * 100:.1f}" for a in top1), " ".join(f"{h * 100:.1f}" for h in hits), seconds)
            table = summarise(runs)
            rc.write_json(args.out, {"config": base.to_dict(), "machine": rc.machine(), "runs": runs, "table": table,
                                     "command": rc.command_line("benchmarks.repro_table5", argv)})
    table = summarise(runs)
    text = markdown(table)
    print(text)
    print(f"wall time {time.time() - start:.0f}s")
    with open(os.path.join(rc.RESULTS, args.out.replace(".json", ".md")), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
