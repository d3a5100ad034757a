"""The AdaFocusV3 networks (nn.Modules only): fG, the policy pi, fL, fC, and the full-video baseline.

Nothing here runs inference loops, counts FLOPs or reads files: see adafocus.inference,
adafocus.evaluation and adafocus.training, which build on this package.
"""
from adafocus.model.adafocus_v3 import AdaFocusOutput, AdaFocusV3, check_thresholds, no_exit_thresholds
from adafocus.model.backbones import load_pretrained_encoders
from adafocus.model.baseline import FullVideoBaseline
from adafocus.model.config import (
    BACKBONES,
    CROP_GRADIENTS,
    POLICIES,
    PRESETS,
    EncoderConfig,
    ModelConfig,
)

__all__ = [
    "AdaFocusOutput",
    "AdaFocusV3",
    "BACKBONES",
    "CROP_GRADIENTS",
    "EncoderConfig",
    "FullVideoBaseline",
    "ModelConfig",
    "POLICIES",
    "PRESETS",
    "check_thresholds",
    "load_pretrained_encoders",
    "no_exit_thresholds",
]
