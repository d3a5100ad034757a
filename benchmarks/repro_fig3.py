"""Figure 3 of AdaFocusV3 in miniature: test accuracy vs GFLOPs with early exit.

Same task, backbones and schedule as benchmarks/repro_table5.py (configs/repro_table5.yaml):
- AdaFocusV3 (deep-feature gradient) with early exit: for each of --budgets GFLOPs budgets
  the entropy thresholds are solved on the val split (adafocus.thresholds, MSDNet's
  budgeted procedure, via adafocus.evaluate.early_exit_curve) and applied unchanged to test;
- (c) a fixed number of cubes k = 1..M, no early exit;
- (b) glance only (exit 0);
- (a) the full-video baseline ("TSM+", adafocus.model.FullVideoBaseline): the same fG and
  fL, fL on every frame at full resolution, trained with the same data, optimiser and
  number of epochs;
- and, for reference, the random-policy model of Table 5 with early exit.

The AdaFocusV3 / random-policy checkpoints are those repro_table5.py trained with the same
config (<train.output_dir>/seed<S>/<mode>/); a missing one is trained here the same way. The
baseline goes to <train.output_dir>/seed<S>/full_video_baseline/.

    .venv/bin/python -m benchmarks.repro_fig3            # seed 0; ~10 min on 2 cores after repro_table5.py

Writes benchmarks/results/repro_fig3.{json,png} (the thresholds of every budget are in the
JSON; benchmarks/repro_throughput.py uses them).
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from types import SimpleNamespace

import torch

from adafocus.inference import EarlyExitRunner, baseline_gmacs
from benchmarks import repro_common as rc


def baseline_trainer_model(model_config):
    """FullVideoBaseline with the interface adafocus.training.trainer.Trainer expects of a model
    (forward(video, policy) -> object with .logits list, loss(output, target))."""
    from adafocus.model import FullVideoBaseline

    class BaselineForTrainer(FullVideoBaseline):
        def forward(self, video, policy=None):  # the warm-up's policy="random" means nothing here
            return SimpleNamespace(logits=[super().forward(video)])

        def loss(self, output, target):
            return super().loss(output.logits[0], target)

    return BaselineForTrainer(model_config)


def train_baseline(config, folder: str):
    """Train the full-video baseline for config.train.epochs with the AdaFocus recipe's data/optimiser."""
    from adafocus.model import load_pretrained_encoders
    from adafocus.training.trainer import Trainer

    cfg = copy.deepcopy(config)
    cfg.train.output_dir = folder
    path = os.path.join(folder, "checkpoint.pt")
    if os.path.exists(path):
        os.remove(path)
    torch.manual_seed(cfg.train.seed)
    model = baseline_trainer_model(cfg.model_config())
    load_pretrained_encoders(model)
    trainer = Trainer(cfg, model=model)
    trainer.fit()
    trainer.close()
    return trainer.model.eval(), path


def load_baseline(path: str):
    from adafocus.model import ModelConfig

    state = torch.load(path, map_location="cpu", weights_only=False)
    model = baseline_trainer_model(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


@torch.no_grad()
def baseline_accuracy(model, config, split: str) -> float:
    from adafocus.data import build_dataset, collate_videos
    from adafocus.evaluation import metrics

    dataset = build_dataset(config.data, split, model.config.num_classes, config.train.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.eval.batch_size, collate_fn=collate_videos)
    logits, labels = [], []
    for batch in loader:
        logits.append(model(batch["video"]).logits[0])
        labels.append(batch["label"])
    return metrics.top1(torch.cat(logits), torch.cat(labels))


def adafocus_model(config, seed: int, mode: str):
    """The Table 5 checkpoint of (seed, mode), trained here if missing."""
    from adafocus.training.checkpoint import load_model

    seed_dir = os.path.join(config.train.output_dir, f"seed{seed}")
    path = os.path.join(seed_dir, mode, "checkpoint.pt")
    if os.path.exists(path):
        model, state = load_model(path, torch.device("cpu"))
        if int(state["epoch"]) == config.train.epochs:
            return model, path
    warm = os.path.join(seed_dir, "warmup", "checkpoint.pt")
    if not os.path.exists(warm):
        warm = rc.train_warmup(config, os.path.join(seed_dir, "warmup"))
    return rc.train_branch(config, warm, os.path.join(seed_dir, mode), mode), path


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for name, style in (("adafocus_early_exit", "-o"), ("random_policy_early_exit", ":.")):
        curve = result.get(name)
        if curve:
            label = "AdaFocusV3 (deep-feature), early exit" if name.startswith("adafocus") else "random policy, early exit"
            ax.plot([p["test_gflops"] * 1e3 for p in curve], [p["test_accuracy"] * 100 for p in curve], style, ms=3, label=label)
    fixed = result["fixed_cubes"]
    ax.plot([p["gflops"] * 1e3 for p in fixed[1:]], [p["test_accuracy"] * 100 for p in fixed[1:]], "s--", color="gray", ms=5,
            label="AdaFocusV3, fixed k cubes (k = 1..M)")
    ax.scatter([fixed[0]["gflops"] * 1e3], [fixed[0]["test_accuracy"] * 100], s=90, marker="v", color="tab:red", zorder=5,
               label="glance only (p0)")
    b = result["baseline"]
    ax.scatter([b["gflops"] * 1e3], [b["test_accuracy"] * 100], s=110, marker="*", color="black", zorder=5,
               label="full-video baseline (fL on every frame)")
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs (multiply-adds) per video, log scale")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Accuracy vs cost, synthetic task (seed %d)" % result["seed"], fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    from adafocus.evaluation.evaluate import early_exit_curve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(rc.ROOT, "configs", "repro_table5.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, default=20)
    parser.add_argument("--retrain-baseline", action="store_true")
    parser.add_argument("--out", default="repro_fig3", help="result name under benchmarks/results/ (.json and .png)")
    parser.add_argument("--baseline-only", action="store_true",
                        help="only train the full-video baseline (can run beside repro_table5.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.time()
    config = rc.run_config(args.config, train={"seed": args.seed})
    folder = os.path.join(config.train.output_dir, f"seed{args.seed}", "full_video_baseline")
    if args.baseline_only:
        baseline, base_path = train_baseline(config, folder)
        print(f"baseline trained in {time.time() - start:.0f}s: {base_path}; test top-1 "
              f"{baseline_accuracy(baseline, config, 'test') * 100:.1f}%")
        return 0

    model, path = adafocus_model(config, args.seed, "deep_feature")
    val = rc.collect_split(model, config, "val", eval_seed=args.seed)
    test = rc.collect_split(model, config, "test", eval_seed=args.seed)
    gflops = EarlyExitRunner(model).gmacs_per_exit(test["video_shape"])
    from adafocus.evaluation import metrics

    top1 = [metrics.top1(l, test["labels"]) for l in test["exit_logits"]]
    curve = early_exit_curve(val, test, gflops, args.budgets, multi_label=False)

    random_model, random_path = adafocus_model(config, args.seed, "random")
    rval = rc.collect_split(random_model, config, "val", eval_seed=args.seed)
    rtest = rc.collect_split(random_model, config, "test", eval_seed=args.seed)
    random_curve = early_exit_curve(rval, rtest, gflops, args.budgets, multi_label=False)

    base_path = os.path.join(folder, "checkpoint.pt")
    t0 = time.time()
    if os.path.exists(base_path) and not args.retrain_baseline:
        baseline = load_baseline(base_path)
    else:
        baseline, base_path = train_baseline(config, folder)
    baseline_seconds = time.time() - t0
    base = {"checkpoint": base_path, "gflops": baseline_gmacs(baseline, test["video_shape"]),
            "test_accuracy": baseline_accuracy(baseline, config, "test"), "train_seconds": baseline_seconds}

    result = {
        "seed": args.seed, "checkpoint": path, "random_checkpoint": random_path, "video_shape": test["video_shape"],
        "gflops_per_exit": gflops,
        "fixed_cubes": [{"cubes": k, "gflops": g, "test_accuracy": a} for k, (g, a) in enumerate(zip(gflops, top1))],
        "adafocus_early_exit": curve, "random_policy_early_exit": random_curve, "baseline": base,
        "config": config.to_dict(), "machine": rc.machine(),
        "command": rc.command_line("benchmarks.repro_fig3", argv),
    }
    # The point the report quotes: the cheapest budget whose val accuracy is within 0.5 points of all cubes on val.
    def summary_point(points, all_cubes_val_accuracy, tolerance=0.005):
        """Cheapest budget whose val accuracy is within 0.5 points of all cubes on val (chosen on val only)."""
        good = [p for p in points if p["val_accuracy"] >= all_cubes_val_accuracy - tolerance]
        return min(good, key=lambda p: p["val_gflops"]) if good else points[-1]

    val_all = metrics.top1(val["exit_logits"][-1], val["labels"])
    result["summary_point"] = summary_point(curve, val_all)
    rc.write_json(args.out + ".json", result)
    png = os.path.join(rc.RESULTS, args.out + ".png")
    plot(result, png)

    print(f"seed {args.seed}; MFLOPs per video after 0..M cubes: " + " ".join(f"{g * 1e3:.2f}" for g in gflops))
    print("fixed k cubes, test top-1: " + " ".join(f"k={k} {a * 100:.1f}" for k, a in enumerate(top1)))
    print(f"full-video baseline: {base['test_accuracy'] * 100:.1f}% at {base['gflops'] * 1e3:.2f} MFLOPs "
          f"(trained {baseline_seconds:.0f}s)")
    print("AdaFocusV3 early exit (thresholds from val, test): " +
          ", ".join(f"{p['test_accuracy'] * 100:.1f}%@{p['test_gflops'] * 1e3:.2f}" for p in curve))
    print("random policy early exit: " +
          ", ".join(f"{p['test_accuracy'] * 100:.1f}%@{p['test_gflops'] * 1e3:.2f}" for p in random_curve))
    sp = result["summary_point"]
    print(f"summary point (chosen on val): {sp['test_accuracy'] * 100:.1f}% at {sp['test_gflops'] * 1e3:.2f} MFLOPs "
          f"= {base['gflops'] / sp['test_gflops']:.1f}x fewer than the baseline; exits per stage "
          + " ".join(f"{x * 100:.0f}%" for x in sp["test_exit_fractions"]))
    print(f"wrote {png}; wall time {time.time() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
