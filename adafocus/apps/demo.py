"""`adafocus demo`: the embedded end-to-end demonstration (`make demo`).

0. Generate the synthetic "find the red digit" task (adafocus.data.synthetic)
   and pretrain the tiny fL on still digit patches (adafocus.apps.pretrain: the
   demo's stand-in for the ImageNet weights the paper starts from).
1. Warm up a tiny AdaFocusV3 with random cubes (fG, fL, fC) (docs/design.md,
   "Training").
2. From that same warm-up checkpoint, two branches with identical budgets,
   trained in parallel (one process and thread each):
   - AdaFocusV3: the policy is switched on and trained through the
     deep-feature crop gradient (policy learned, crop_gradient deep_feature);
   - the control: the same model keeps random cubes (policy random).
3. Evaluate both (integer cubes, thresholds solved on val, applied to test)
   and print: accuracy and cube hit rate after 0/1/2/4 cubes, the early-exit
   point vs the glance-only and all-cubes points, and where the plots are.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Optional

from adafocus.training.config import RunConfig, load_yaml, merge_dicts
from adafocus.utils.files import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "configs", "demo.yaml")

PRETRAIN_STEPS = 400

QUICK_OVERRIDES = {"data": {"synthetic": {"train_size": 256, "val_size": 128, "test_size": 128}},
                   "train": {"epochs": 2, "random_policy_epochs": 1}}


def demo_configs(output_dir: str, config_path: Optional[str] = None, quick: bool = False):
    """(learned-policy config, random-policy config), identical but for the policy and folder."""
    path = config_path or DEFAULT_CONFIG
    if not os.path.exists(path):
        raise FileNotFoundError(f"demo config {path} not found: run from the repository or pass --config")
    values = load_yaml(path)
    if quick:
        values = merge_dicts(values, QUICK_OVERRIDES)
    learned = merge_dicts(values, {"model": {"policy": "learned", "crop_gradient": "deep_feature"},
                                   "train": {"output_dir": os.path.join(output_dir, "adafocus"), "tensorboard": True}})
    control = merge_dicts(learned, {"model": {"policy": "random"}, "train": {"output_dir": os.path.join(output_dir, "random_policy")}})
    return RunConfig.from_dict(learned), RunConfig.from_dict(control)


def _pct(x: float) -> str:
    return f"{x * 100:5.1f}%"


def format_table(learned: dict, control: dict, seconds: float) -> str:
    g = learned["gflops_per_exit"]
    m = len(g) - 1
    shown = [k for k in (0, 1, 2, 4, m) if k <= m]
    shown = sorted(set(shown))
    lines = ["", "AdaFocusV3 demo: find the red digit (synthetic, 10 classes, test split)", ""]
    lines.append(f"{'cubes':>16} {'MFLOPs':>7} | {'learned policy':^21} | {'random policy':^21}")
    lines.append(f"{'':>16} {'':>7} | {'top-1':>8} {'cube hits':>11}  | {'top-1':>8} {'cube hits':>11}")
    for k in shown:
        name = "0 (glance only)" if k == 0 else str(k)
        row = f"{name:>16} {g[k] * 1e3:7.2f} |"
        for rep in (learned, control):
            hits = rep["policy"].get("hit_rate_after")
            hit = "-" if k == 0 or hits is None else _pct(hits[k - 1])
            row += f" {_pct(rep['test']['top1'][k]):>8} {hit:>11}  |"
        lines.append(row)
    ee = learned["early_exit"]
    all_acc, all_g = learned["test"]["top1"][-1], g[-1]
    lines.append("")
    lines.append(f"early exit (learned policy; entropy thresholds solved on val for a budget of "
                 f"{ee['budget'] / all_g * 100:.0f}% of the all-cubes GFLOPs, applied to test):")
    lines.append(f"  {_pct(ee['test_accuracy'])} top-1 at {ee['test_gflops'] * 1e3:.2f} MFLOPs = "
                 f"{ee['test_gflops'] / all_g * 100:.0f}% of all cubes ({_pct(all_acc)} at {all_g * 1e3:.2f}); "
                 f"glance only {_pct(learned['test']['top1'][0])} at {g[0] * 1e3:.2f}")
    lines.append("  videos exiting after 0..%d cubes: %s" % (m, " ".join(f"{x * 100:.0f}%" for x in ee["test_exit_fractions"])))
    sl, sc = learned["policy"]["center_spread"], control["policy"]["center_spread"]
    lines.append(f"center spread across videos (t, y, x): learned {sl['t']:.1f} {sl['y']:.1f} {sl['x']:.1f}; "
                 f"random {sc['t']:.1f} {sc['y']:.1f} {sc['x']:.1f}")
    lines.append("")
    checks = [
        ("learned policy beats random after 1 cube",
         learned["test"]["top1"][1] - control["test"]["top1"][1] >= 0.10,
         f"{_pct(learned['test']['top1'][1])} vs {_pct(control['test']['top1'][1])}"),
        ("early exit within 1 point of all cubes at <= 60% of its GFLOPs",
         ee["test_accuracy"] >= all_acc - 0.01 and ee["test_gflops"] <= 0.6 * all_g,
         f"{_pct(ee['test_accuracy'])} vs {_pct(all_acc)} at {ee['test_gflops'] / all_g * 100:.0f}%"),
        ("glance alone cannot read the digit (p0 <= 50%)", learned["test"]["top1"][0] <= 0.5,
         _pct(learned["test"]["top1"][0])),
    ]
    for text, ok, detail in checks:
        lines.append(f"[{'PASS' if ok else 'FAIL'}] {text}: {detail}")
    lines.append("")
    lines.append(f"plots: {learned['curve_png']} (learned), {control['curve_png']} (random), {learned['comparison_png']} (both)")
    lines.append(f"curves: {learned['curve_json']}, {control['curve_json']}")
    if "pretrain" in learned:
        lines.append(f"fL pretrained on still digit patches: {learned['pretrain']['patch_accuracy'] * 100:.1f}% "
                     f"on held-out patches ({learned['pretrain']['path']})")
    lines.append(f"demo wall time: {seconds / 60:.1f} min")
    return "\n".join(lines)


def _train_and_evaluate(config_dict: dict) -> dict:
    """One branch: resume from the shared warm-up checkpoint, train to the end, evaluate."""
    from adafocus.apps.evaluate import evaluate_checkpoint
    from adafocus.training.trainer import Trainer

    if not logging.getLogger().handlers:  # a spawned worker starts without logging set up
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    config = RunConfig.from_dict(config_dict)
    trainer = Trainer(config, resume=True)
    trainer.fit()
    trainer.close()
    return evaluate_checkpoint(config, progress=False)


def run_demo(output_dir: str = "outputs/demo", quick: bool = False, config_path: Optional[str] = None,
             parallel: Optional[bool] = None) -> int:
    from adafocus.apps.pretrain import pretrain_local
    from adafocus.data.synthetic import SyntheticConfig, load_split
    from adafocus.evaluation.plots import plot_curve
    from adafocus.training.trainer import Trainer

    start = time.time()
    learned_cfg, control_cfg = demo_configs(output_dir, config_path, quick)
    if parallel is None:
        parallel = (os.cpu_count() or 1) >= 2
    if parallel:
        learned_cfg.train.progress = control_cfg.train.progress = False
    warmup = learned_cfg.train.random_policy_epochs
    for folder in (learned_cfg.train.output_dir, control_cfg.train.output_dir):
        if os.path.exists(os.path.join(folder, "checkpoint.pt")):
            os.remove(os.path.join(folder, "checkpoint.pt"))  # a demo always starts from scratch

    synthetic = SyntheticConfig.from_dict(learned_cfg.data.synthetic)
    logger.info("generating the synthetic task (%d/%d/%d videos of %dx%dx%d) into %s", synthetic.train_size,
                synthetic.val_size, synthetic.test_size, synthetic.num_frames, synthetic.height, synthetic.width,
                learned_cfg.data.cache_dir)
    for split in ("train", "val", "test"):
        load_split(synthetic, split, learned_cfg.data.cache_dir)
    logger.info("data ready in %.0fs", time.time() - start)

    if learned_cfg.train.threads > 0:
        import torch

        torch.set_num_threads(learned_cfg.train.threads)
    # Stage 0: fL learns to read digits on still patches (the stand-in for ImageNet weights).
    weights = os.path.join(output_dir, "local_pretrained.pt")
    pretrain = pretrain_local(learned_cfg.model_config(), synthetic, weights, steps=20 if quick else PRETRAIN_STEPS,
                              seed=learned_cfg.train.seed)
    for cfg in (learned_cfg, control_cfg):
        cfg.model["local"] = {**(cfg.model.get("local") or {}), "weights": weights}

    logger.info("warm-up: %d epochs with random cubes (shared by both branches)", warmup)
    trainer = Trainer(learned_cfg)
    trainer.fit(until_epoch=warmup)
    trainer.close()
    os.makedirs(control_cfg.train.output_dir, exist_ok=True)
    shutil.copyfile(trainer.checkpoint_path, os.path.join(control_cfg.train.output_dir, "checkpoint.pt"))

    branches = [learned_cfg.to_dict(), control_cfg.to_dict()]
    if parallel:
        # One process per branch, one thread each: the two branches use both cores, and
        # tiny convolutions do not scale across threads anyway.
        logger.info("training both branches in parallel: AdaFocusV3 (policy learns through the deep-feature "
                    "crop gradient) and the control (random cubes)")
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(2) as pool:
            learned, control = pool.map(_train_and_evaluate, branches)
    else:
        logger.info("AdaFocusV3 branch: the policy learns where to look (deep-feature crop gradient)")
        learned = _train_and_evaluate(branches[0])
        logger.info("control branch: random cubes")
        control = _train_and_evaluate(branches[1])
    learned["comparison_png"] = os.path.join(output_dir, "curves.png")
    plot_curve(learned, learned["comparison_png"], others={"random policy, early exit": control})
    seconds = time.time() - start
    learned["pretrain"] = pretrain
    table = format_table(learned, control, seconds)
    print(table)
    with atomic_write(os.path.join(output_dir, "demo_summary.txt")) as f:
        f.write(table + "\n")
    with atomic_write(os.path.join(output_dir, "demo_summary.json")) as f:
        json.dump({"learned": learned, "random": control, "seconds": seconds}, f, indent=1)
    return 0
