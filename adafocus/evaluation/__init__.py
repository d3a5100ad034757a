"""Evaluation: metrics (one definition each), the Eq. 7 threshold calibration, per-exit and
early-exit reports, plots. Builds on adafocus.inference."""
from adafocus.evaluation import calibration, metrics
from adafocus.evaluation.evaluate import build_report, collect, format_report

__all__ = ["build_report", "calibration", "collect", "format_report", "metrics"]
