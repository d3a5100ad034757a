"""Adaptive inference: the batched early-exit runner, the exit rule, frame de-duplication and
the cost model (GMACs per exit). Builds on adafocus.model; needs no labels."""
from adafocus.inference.cost import baseline_gmacs, component_gmacs, gmacs_per_exit
from adafocus.inference.early_exit import check_thresholds, entropy, exit_mask, no_exit_thresholds, simulate
from adafocus.inference.runner import EarlyExitRunner, InferenceOutput

__all__ = [
    "EarlyExitRunner",
    "InferenceOutput",
    "baseline_gmacs",
    "check_thresholds",
    "component_gmacs",
    "entropy",
    "exit_mask",
    "gmacs_per_exit",
    "no_exit_thresholds",
    "simulate",
]
