"""The AdaFocusV3 model's configuration: one dataclass, presets, dict round trip.

Units: resolutions in pixels, cube_size as (Dt, Dh, Dw) in video frames/pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

BACKBONES = ("tiny", "mobilenet_v2", "resnet18", "resnet50")
MODES = ("deep_feature", "pixel", "random", "learned_t", "learned_xy")
POLICY_HEADS = ("heatmap", "sigmoid")


@dataclass
class ModelConfig:
    num_classes: int = 10
    # Glance encoder fG: G uniformly sampled frames, resized to glance_resolution^2.
    glance_backbone: str = "tiny"
    glance_frames: int = 8
    glance_resolution: int = 16
    glance_weights: Optional[str] = None  # local file path of a state dict; never downloaded
    glance_tsm: bool = False
    # Local encoder fL on the cubes.
    local_backbone: str = "tiny"
    local_weights: Optional[str] = None
    local_tsm: bool = False
    tsm_fold_div: int = 8
    # "tiny" backbones: channels per stage; the first log2(stride) stages halve the resolution.
    glance_tiny_channels: Tuple[int, ...] = (16, 32)
    glance_tiny_stride: int = 2
    local_tiny_channels: Tuple[int, ...] = (16, 32, 64)
    local_tiny_stride: int = 4
    # Cubes and policy.
    cube_size: Tuple[int, int, int] = (1, 32, 32)
    num_cubes: int = 2
    mode: str = "deep_feature"
    policy_head: str = "heatmap"
    policy_channels: int = 64
    # Classifier and loss.
    dropout: float = 0.0
    multi_label: bool = False
    aux_loss_weight: float = 0.0  # per-encoder auxiliary CE (glance frames, each cube); 0 = the paper's Eq. 1

    def __post_init__(self):
        self.cube_size = tuple(int(d) for d in self.cube_size)
        self.glance_tiny_channels = tuple(int(c) for c in self.glance_tiny_channels)
        self.local_tiny_channels = tuple(int(c) for c in self.local_tiny_channels)
        self.validate()

    def validate(self) -> None:
        for name in ("glance_backbone", "local_backbone"):
            if getattr(self, name) not in BACKBONES:
                raise ValueError(f"{name} must be one of {BACKBONES}, got {getattr(self, name)!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.policy_head not in POLICY_HEADS:
            raise ValueError(f"policy_head must be one of {POLICY_HEADS}, got {self.policy_head!r}")
        if len(self.cube_size) != 3 or min(self.cube_size) < 1:
            raise ValueError(f"cube_size must be 3 positive ints (Dt, Dh, Dw), got {self.cube_size}")
        for name in ("num_classes", "glance_frames", "glance_resolution", "num_cubes", "policy_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("glance_tiny_stride", "local_tiny_stride"):
            stride = getattr(self, name)
            if stride < 1 or stride & (stride - 1):
                raise ValueError(f"{name} must be a power of two, got {stride}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_exits(self) -> int:
        return self.num_cubes + 1

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **overrides) -> "ModelConfig":
        return ModelConfig.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """Named settings: "tiny" (2-core CPU), "paper_tsm" and "paper_long" (paper section 4 / DESIGN.md section 4)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


PRESETS: Dict[str, Dict[str, Any]] = {
    # Trains in minutes on 2 CPU cores: e.g. 16 frames of 64x64 with a 16x16 glance.
    "tiny": dict(),
    # Sth-Sth / Diving48: MN2+TSM glance on 8 frames at 224, R50+TSM on M=2 cubes of 128x128x12.
    "paper_tsm": dict(
        num_classes=174,
        glance_backbone="mobilenet_v2",
        glance_frames=8,
        glance_resolution=224,
        glance_tsm=True,
        local_backbone="resnet50",
        local_tsm=True,
        cube_size=(12, 128, 128),
        num_cubes=2,
        policy_channels=128,
        dropout=0.5,
    ),
    # ActivityNet / FCVID / Mini-Kinetics: 16 glance frames, up to 18 frame-wise 128x128x1 cubes.
    "paper_long": dict(
        num_classes=200,
        glance_backbone="mobilenet_v2",
        glance_frames=16,
        glance_resolution=224,
        local_backbone="resnet50",
        cube_size=(1, 128, 128),
        num_cubes=18,
        policy_channels=128,
        dropout=0.2,
        multi_label=True,
    ),
}
