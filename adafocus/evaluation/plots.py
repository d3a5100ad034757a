"""Accuracy-vs-GFLOPs plots of evaluation reports (matplotlib, no display needed)."""
from __future__ import annotations

import os
from typing import Dict, Optional

from adafocus.utils.files import atomic_write


def plot_curve(report: dict, path: str, others: Optional[Dict[str, dict]] = None) -> None:
    """Accuracy vs GFLOPs on test, with the glance-only and all-cubes points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for name, rep in [("AdaFocusV3 early exit", report)] + sorted((others or {}).items()):
        xs = [p["test_gflops"] * 1e3 for p in rep["curve"]]
        ys = [p["test_accuracy"] * 100 for p in rep["curve"]]
        ax.plot(xs, ys, "-o", ms=3, label=name)
    g = report["gflops_per_exit"]
    top1 = report["test"]["top1"] if not report["multi_label"] else report["test"]["mAP"]
    ax.plot([gf * 1e3 for gf in g], [a * 100 for a in top1], "s--", color="gray", ms=5, label="learned policy, fixed k cubes (k = 0..M)")
    ax.scatter([g[0] * 1e3], [top1[0] * 100], s=90, marker="v", color="tab:red", zorder=5, label="glance only (p0)")
    ax.scatter([g[-1] * 1e3], [top1[-1] * 100], s=90, marker="^", color="tab:green", zorder=5, label="all cubes")
    ax.set_xlabel("MFLOPs (multiply-adds) per video")
    ax.set_ylabel("test mAP (%)" if report["multi_label"] else "test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=os.path.splitext(path)[1].lstrip(".") or "png")
    plt.close(fig)
