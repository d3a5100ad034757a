"""GFLOPs accounting of the paper's settings (no training, no data): the numbers behind docs/design.md, "Presets".

Counts, with the cost model `adafocus flops` uses (adafocus.apps.flops.flops_report: FlopCounterMode on
meta tensors, multiply-adds = the paper's "GFLOPs"):

- configs/paper_tsm.yaml (Tables 3, 4): AdaFocusV3's cost per exit and the full-video baseline TSM+
  (fG and fL on 8 frames each, the paper's 35.1), plus the baseline on 12 and 16 fL frames;
  the exit shares that the paper's 14.0 (Sth-Sth V1) and 15.4 (V2) imply; the "12 frames in
  total" reading (two 6-frame cubes) and Table 4's 128x128x8 row, which refutes it.
- configs/paper_long.yaml and paper_long_96.yaml (Table 1): the cost per exit with 128x128x1 and
  96x96x1 cubes and how many cubes per video each of Table 1's GFLOPs implies.

    .venv/bin/python -m benchmarks.repro_gflops_paper     # ~1 min; writes benchmarks/results/repro_gflops_paper.json
"""
from __future__ import annotations

import os
import sys

import torch

from benchmarks import repro_common as rc

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PAPER_TSM_PLUS = 35.1  # Table 3
PAPER_TSM = {"sthv1": 14.0, "sthv2": 15.4}  # Table 3, AdaFocusV3 (also Table 4's 128x128x8 and x12 rows)
PAPER_LONG = {"activitynet": (10.9, 21.7), "fcvid": (7.8, 26.8), "mini_kinetics": (8.6, 17.5)}  # Table 1


def run_config(name: str, **model):
    from adafocus.training.config import RunConfig, load_yaml

    values = load_yaml(os.path.join(CONFIGS, name))
    values["model"] = {**values["model"], **model}
    return RunConfig.from_dict(values)


def glance_share(budget: float, exits) -> float:
    """Share of videos stopping at the glance (the rest after cube 1) for a mean cost `budget` below exit 1."""
    return (exits[1] - budget) / (exits[1] - exits[0])


def cubes_for(budget: float, report: dict):
    """Mean cubes per video a mean cost `budget` implies if no video stops at the glance (None: more than M)."""
    parts, exits = report["components"], report["gmacs_per_exit"]
    cubes = (budget - exits[0] - parts["policy"]) / (parts["local_cube"] + parts["local_head"])
    return cubes if cubes <= report["num_cubes"] else None


def main() -> int:
    from adafocus.apps.flops import flops_report
    from adafocus.inference.cost import module_gmacs
    from adafocus.model.backbones import build_backbone

    with torch.device("meta"):
        mobilenet, resnet = build_backbone("mobilenet_v2"), build_backbone("resnet50")
    single = {
        "mobilenet_v2_224": module_gmacs(mobilenet, (1, 3, 224, 224)),
        "resnet50_96": module_gmacs(resnet, (1, 3, 96, 96)),
        "resnet50_128": module_gmacs(resnet, (1, 3, 128, 128)),
        "resnet50_224": module_gmacs(resnet, (1, 3, 224, 224)),
    }

    tsm = flops_report(run_config("paper_tsm.yaml"))
    e = tsm["gmacs_per_exit"]
    baseline_by_frames = {n: flops_report(run_config("paper_tsm.yaml", baseline_frames=n))["baseline"]["gmacs"]
                          for n in (8, 12, 16)}
    # Reading 2 of "128^2 x 12, M = 2": 12 frames in total, two 6-frame cubes. Table 4's "128^2 x 8" row
    # would then be two 4-frame cubes, which cost at most (every cube) less than the 14.0 reported for it.
    total_12 = flops_report(run_config("paper_tsm.yaml", cube_size=[6, 128, 128]))["gmacs_per_exit"]
    total_8 = flops_report(run_config("paper_tsm.yaml", cube_size=[4, 128, 128]))["gmacs_per_exit"]
    per_cube_8 = flops_report(run_config("paper_tsm.yaml", cube_size=[8, 128, 128]))["gmacs_per_exit"]
    per_cube_16 = flops_report(run_config("paper_tsm.yaml", cube_size=[16, 128, 128]))["gmacs_per_exit"]

    long = {"128": flops_report(run_config("paper_long.yaml")), "96": flops_report(run_config("paper_long_96.yaml"))}
    long_cubes = {dataset: {side: [cubes_for(b, report) for b in budgets] for side, report in long.items()}
                  for dataset, budgets in PAPER_LONG.items()}

    result = {
        "single_frame_gmacs": single,
        "paper_tsm": {
            "flops": tsm,
            "baseline_gmacs_by_fl_frames": baseline_by_frames,
            "paper": {"adafocus_v3": PAPER_TSM, "tsm_plus": PAPER_TSM_PLUS},
            "glance_share_if_rest_one_cube": {k: glance_share(b, e) for k, b in PAPER_TSM.items()},
            "reading_12_frames_in_total_gmacs_per_exit": total_12,
            "table4_128x8_if_8_frames_in_total_gmacs_per_exit": total_8,
            "table4_128x8_per_cube_gmacs_per_exit": per_cube_8,
            "table4_128x16_per_cube_gmacs_per_exit": per_cube_16,
        },
        "paper_long": {
            "gmacs_per_exit": {side: r["gmacs_per_exit"] for side, r in long.items()},
            "components": {side: r["components"] for side, r in long.items()},
            "paper_gflops": PAPER_LONG,
            "cubes_per_video_if_none_stop_at_glance": long_cubes,
        },
        "machine": rc.machine(),
        "command": "python -m benchmarks.repro_gflops_paper",
    }
    path = rc.write_json("repro_gflops_paper.json", result)

    print("GMACs (multiply-adds, the paper's GFLOPs), FlopCounterMode on meta tensors:")
    print("  one frame: " + ", ".join(f"{k} {v:.4f}" for k, v in single.items()))
    print(f"paper_tsm ({tsm['video_shape'][1]}-frame clips): AdaFocusV3 per exit " + " / ".join(f"{g:.2f}" for g in e)
          + f"; TSM+ (fG 8 + fL 8 frames) {tsm['baseline']['gmacs']:.2f} (paper {PAPER_TSM_PLUS}); fL on 12 / 16 frames: "
          f"{baseline_by_frames[12]:.2f} / {baseline_by_frames[16]:.2f}")
    for key, budget in PAPER_TSM.items():
        print(f"  {key} {budget}: below exit 1, so >= {glance_share(budget, e) * 100:.1f}% of videos stop at the glance "
              "(the rest after cube 1)")
    print("  reading '12 frames in total' (two 6-frame cubes): " + " / ".join(f"{g:.2f}" for g in total_12)
          + "; Table 4's 128x128x8 row read so (two 4-frame cubes) costs at most "
          f"{total_8[-1]:.2f} < 14.0 reported: refuted")
    print("  Table 4 per-cube reading: 128x128x8 " + " / ".join(f"{g:.2f}" for g in per_cube_8)
          + ", 128x128x16 " + " / ".join(f"{g:.2f}" for g in per_cube_16))
    for side, report in long.items():
        x = report["gmacs_per_exit"]
        print(f"paper_long {side}x{side}x1: exit 0 {x[0]:.2f}, exit 1 {x[1]:.2f}, then +{x[2] - x[1]:.3f} per cube, "
              f"exit 18 {x[-1]:.2f}")
    for dataset, sides in long_cubes.items():
        shown = "; ".join(f"{side}^2: " + ", ".join("more than 18" if c is None else f"{c:.1f}" for c in cubes)
                          for side, cubes in sides.items())
        print(f"  {dataset} {PAPER_LONG[dataset]} GFLOPs -> cubes per video (none stopping at the glance): {shown}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
