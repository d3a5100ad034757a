"""`adafocus flops`: GMACs per exit of AdaFocusV3 and of the full-video baseline for any config.

No data, no weights, no accelerator: both networks are built on the meta device (shapes only)
and counted by adafocus.inference.cost, the cost model inference and evaluation charge. GMACs
are multiply-adds, the paper's "GFLOPs" (docs/design.md, "GFLOPs"). The clip shape is the
run's: (data.num_segments or data.synthetic.num_frames, frame height, width).
"""
from __future__ import annotations

from typing import List

import torch

from adafocus.inference.cost import baseline_components, component_gmacs, exits_from_components
from adafocus.training.config import RunConfig


def flops_report(config: RunConfig) -> dict:
    """The cost of `config`'s model and baseline on its clips, per exit and per component."""
    from adafocus.model import AdaFocusV3, FullVideoBaseline

    model_config = config.model_config()
    frames, height, width = config.clip_shape()
    model_config.check_clip(frames, height, width,
                            "data.synthetic.num_frames" if config.data.kind == "synthetic" else "data.num_segments")
    shape = (3, frames, height, width)
    with torch.device("meta"):
        model = AdaFocusV3(model_config)
        baseline = FullVideoBaseline(model_config)
    parts = component_gmacs(model, shape)
    exits = exits_from_components(parts, model_config.num_exits, model_config.policy)
    base_parts = baseline_components(baseline, shape)
    base = sum(base_parts.values())
    return {
        "preset": config.model.get("preset"),
        "video_shape": list(shape),
        "glance_frames": model_config.glance_frames,
        "glance_resolution": model_config.glance_resolution,
        "cube_size": list(model_config.cube_size),
        "num_cubes": model_config.num_cubes,
        "policy": model_config.policy,
        "embed_width": model_config.embed_width,
        "gmacs_per_exit": exits,
        "components": parts,
        "baseline": {"gmacs": base, "local_frames": model_config.full_video_frames, "components": base_parts},
        "baseline_over_all_cubes": base / exits[-1],
    }


def format_flops(report: dict) -> str:
    t, h, w = report["video_shape"][1:]
    dt, dh, dw = report["cube_size"]
    parts, base = report["components"], report["baseline"]
    lines: List[str] = [
        f"AdaFocusV3 (preset {report['preset'] or 'none'}, policy {report['policy']}) on {t}x{h}x{w} clips "
        "(frames x pixels); GMACs = multiply-adds (the paper's GFLOPs), cumulative per exit:",
    ]
    for index, gmacs in enumerate(report["gmacs_per_exit"]):
        lines.append(f"  exit {index:>2} {'(glance)' if index == 0 else f'(+cube {index})':<11} {gmacs:9.3f}")
    rows = [
        (f"glance fG, {report['glance_frames']} frames at {report['glance_resolution']}^2", parts["glance"]),
        ("policy (once, from exit 1; 0 for random cubes)", parts["policy"]),
        (f"fL on one {dh}x{dw}x{dt} cube", parts["local_cube"]),
        ("exit 0 head (glance embedding, linear)", parts["glance_head"]),
        ("each later exit's head (cube embedding, linear)", parts["local_head"]),
    ]
    lines.append("components:")
    lines += [f"  {label:<48} {gmacs:9.4f}" for label, gmacs in rows]
    lines.append(
        f"full-video baseline (TSM+): fG on {report['glance_frames']} frames + fL on {base['local_frames']} frames at "
        f"{h}x{w}: {base['gmacs']:.3f} GMACs (fG {base['components']['glance']:.3f}, fL {base['components']['local']:.3f}, "
        f"head {base['components']['head']:.4f}); x{report['baseline_over_all_cubes']:.2f} the cost of every cube")
    return "\n".join(lines)
