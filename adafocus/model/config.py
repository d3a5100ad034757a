"""The AdaFocusV3 model's configuration: dataclasses, presets, dict round trip.

Units: resolutions in pixels, cube_size as (Dt, Dh, Dw) in video frames/pixels.
The glance network fG and the local network fL are each described by one
EncoderConfig (`glance`, `local`).

Older files spell the encoders flat (`glance_backbone`, `local_tiny_stride`, ...)
and the policy as one `mode`; both are still read, with a deprecation warning.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

BACKBONES = ("tiny", "mobilenet_v2", "resnet18", "resnet50")
# Where the cube centers come from: the policy pi, uniformly random cubes (the
# ablation), or the policy on one axis group and random on the other (Table 5).
POLICIES = ("learned", "random", "learned_t", "learned_xy")
# Which crop gradient trains the policy: the deep-feature trick (Eq. 5-6) or
# AdaFocusV2's trilinear pixel crop.
CROP_GRADIENTS = ("deep_feature", "pixel")
POLICY_HEADS = ("heatmap", "sigmoid")
LOSSES = ("ce", "bce")

# The old single `mode` field, as (policy, crop_gradient).
LEGACY_MODES = {
    "deep_feature": ("learned", "deep_feature"),
    "pixel": ("learned", "pixel"),
    "random": ("random", "deep_feature"),
    "learned_t": ("learned_t", "deep_feature"),
    "learned_xy": ("learned_xy", "deep_feature"),
}


@dataclass
class EncoderConfig:
    """A frame encoder: a 2D backbone applied to every frame, optionally with temporal shift."""

    backbone: str = "tiny"
    weights: Optional[str] = None  # local state-dict file, loaded when training starts; never downloaded
    tsm: bool = False
    # "tiny" backbones only: channels per stage; the first log2(stride) stages halve the resolution.
    tiny_channels: Tuple[int, ...] = (16, 32)
    tiny_stride: int = 2

    def __post_init__(self):
        self.tiny_channels = tuple(int(c) for c in self.tiny_channels)

    def validate(self, name: str) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"{name}.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        stride = self.tiny_stride
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"{name}.tiny_stride must be a power of two, got {stride}")
        if not self.tiny_channels or min(self.tiny_channels) < 1:
            raise ValueError(f"{name}.tiny_channels must be positive ints, got {self.tiny_channels}")

    @classmethod
    def from_value(cls, value: Any, name: str, default: "EncoderConfig") -> "EncoderConfig":
        """An EncoderConfig, or a mapping of some of its fields applied over `default`."""
        if isinstance(value, EncoderConfig):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping of EncoderConfig fields {_ENCODER_FIELDS}, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown {name} field(s) {unknown}; known: {sorted(known)}")
        return cls(**{**dataclasses.asdict(default), **value})


def _default_glance() -> EncoderConfig:
    return EncoderConfig(tiny_channels=(16, 32), tiny_stride=2)


def _default_local() -> EncoderConfig:
    return EncoderConfig(tiny_channels=(16, 32, 64), tiny_stride=4)


@dataclass
class ModelConfig:
    num_classes: int = 10
    # Glance network fG: G uniformly sampled frames, resized to glance_resolution^2.
    glance: EncoderConfig = field(default_factory=_default_glance)
    glance_frames: int = 8
    glance_resolution: int = 16
    # Local network fL on the cubes.
    local: EncoderConfig = field(default_factory=_default_local)
    tsm_fold_div: int = 8
    # Cubes and policy.
    cube_size: Tuple[int, int, int] = (1, 32, 32)
    num_cubes: int = 2
    policy: str = "learned"
    crop_gradient: str = "deep_feature"
    policy_head: str = "heatmap"
    policy_channels: int = 64
    # Classifier fC: width of the per-feature embedding (Linear -> BN -> ReLU, as in FrameExit and
    # AdaFocusV2) applied to the glance and to each cube's features before the max-pooling;
    # 0 = no embedding, the pooled features themselves (the older form; what old checkpoints hold).
    embed_width: int = 0
    # Loss: "ce" (the paper's Eq. 1; multi-hot targets are normalised) or
    # "bce" (independent sigmoids, an opt-in for multi-label datasets scored by mAP).
    dropout: float = 0.0
    loss: str = "ce"
    aux_loss_weight: float = 0.0  # per-encoder auxiliary loss (glance frames, each cube); 0 = Eq. 1
    # The full-video baseline (TSM+) runs fL on this many uniformly sampled frames at full
    # resolution; None = glance_frames, as the paper's TSM+ does (8 + 8 frames on Sth-Sth).
    baseline_frames: Optional[int] = None

    def __post_init__(self):
        self.glance = EncoderConfig.from_value(self.glance, "glance", _default_glance())
        self.local = EncoderConfig.from_value(self.local, "local", _default_local())
        self.cube_size = tuple(int(d) for d in self.cube_size)
        self.validate()

    def validate(self) -> None:
        self.glance.validate("glance")
        self.local.validate("local")
        for name, allowed in (("policy", POLICIES), ("crop_gradient", CROP_GRADIENTS),
                              ("policy_head", POLICY_HEADS), ("loss", LOSSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if len(self.cube_size) != 3 or min(self.cube_size) < 1:
            raise ValueError(f"cube_size must be 3 positive ints (Dt, Dh, Dw), got {self.cube_size}")
        for name in ("num_classes", "glance_frames", "glance_resolution", "num_cubes", "policy_channels", "tsm_fold_div"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_width < 0:
            raise ValueError(f"embed_width must be >= 0 (0 = no embedding), got {self.embed_width}")
        if self.baseline_frames is not None and int(self.baseline_frames) < 1:
            raise ValueError(f"baseline_frames must be >= 1 or null (= glance_frames), got {self.baseline_frames}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.aux_loss_weight < 0:
            raise ValueError(f"aux_loss_weight must be >= 0, got {self.aux_loss_weight}")

    @property
    def num_exits(self) -> int:
        return self.num_cubes + 1

    @property
    def full_video_frames(self) -> int:
        """Frames the full-video baseline runs fL on (baseline_frames, default glance_frames)."""
        return int(self.baseline_frames or self.glance_frames)

    def check_cube_frames(self, frames: int, frames_field: str = "the clip's frames") -> None:
        """Frame-wise cubes never reuse a frame an earlier cube took (paper section 4.1): M of them need M frames."""
        if self.cube_size[0] == 1 and self.num_cubes > frames:
            raise ValueError(f"model.num_cubes={self.num_cubes} frame-wise cubes (model.cube_size[0]=1) need at least "
                             f"{self.num_cubes} candidate frames, got {frames} ({frames_field}): a cube never reuses "
                             "a frame an earlier cube took")

    def check_clip(self, frames: int, height: int, width: int, frames_field: str = "the clip's frames") -> None:
        """Refuse clips of (frames, height, width) this model cannot run on as configured.

        frames_field names where the frame count comes from (e.g. data.num_segments) in the error.
        Frame-wise cubes never reuse a frame (paper section 4.1), so they need num_cubes frames.
        """
        if self.glance_frames > frames:
            raise ValueError(f"model.glance_frames={self.glance_frames}: expected at most the {frames} frames each "
                             f"clip has ({frames_field}); more would repeat frames")
        if self.cube_size[0] > frames or self.cube_size[1] > height or self.cube_size[2] > width:
            raise ValueError(f"model.cube_size={list(self.cube_size)}: expected a cube inside the {frames}x{height}x"
                             f"{width} clips (frames x pixels; {frames_field} and the frame size)")
        self.check_cube_frames(frames, frames_field)
        if self.full_video_frames > frames:
            raise ValueError(f"model.baseline_frames={self.full_video_frames}: expected at most the {frames} frames "
                             f"each clip has ({frames_field})")

    def to_dict(self) -> Dict[str, Any]:
        return _lists_for_tuples(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        values = upgrade_legacy_fields(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **overrides) -> "ModelConfig":
        return ModelConfig.from_dict(merge_model_dicts(self.to_dict(), overrides))

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """Named settings: "tiny" (2-core CPU), "paper_tsm" and "paper_long" (docs/design.md, "Presets")."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return cls.from_dict(merge_model_dicts(PRESETS[name], upgrade_legacy_fields(overrides)))


def _lists_for_tuples(value):
    if isinstance(value, dict):
        return {k: _lists_for_tuples(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_lists_for_tuples(v) for v in value]
    return value


def merge_model_dicts(base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """base with overrides applied; the encoder sub-configs merge field by field."""
    out = dict(base)
    for key, value in overrides.items():
        if key in ("glance", "local") and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


_ENCODER_FIELDS = ("backbone", "weights", "tsm", "tiny_channels", "tiny_stride")


def upgrade_legacy_fields(values: Dict[str, Any]) -> Dict[str, Any]:
    """Map the older spellings onto the current fields, with a FutureWarning.

    `glance_backbone` -> glance.backbone (likewise weights, tsm, tiny_channels, tiny_stride, and
    local_*); `mode` -> (policy, crop_gradient); `multi_label: true` -> loss: bce. Where both
    spellings are given, the current one wins (it is the newer override).
    """
    values = dict(values or {})
    renamed = []
    for encoder in ("glance", "local"):
        for name in _ENCODER_FIELDS:
            old = f"{encoder}_{name}"
            if old in values:
                sub = dict(values.get(encoder) or {})
                sub.setdefault(name, values.pop(old))
                values[encoder] = sub
                renamed.append(f"{old} -> {encoder}.{name}")
    if "mode" in values:
        mode = values.pop("mode")
        if mode not in LEGACY_MODES:
            raise ValueError(f"mode must be one of {tuple(LEGACY_MODES)}, got {mode!r} "
                             f"(mode is deprecated: use policy {POLICIES} and crop_gradient {CROP_GRADIENTS})")
        policy, gradient = LEGACY_MODES[mode]
        values.setdefault("policy", policy)
        values.setdefault("crop_gradient", gradient)
        renamed.append(f"mode={mode} -> policy={policy}, crop_gradient={gradient}")
    if "multi_label" in values:
        multi = values.pop("multi_label")
        values.setdefault("loss", "bce" if multi else "ce")
        renamed.append(f"multi_label={multi} -> loss={values['loss']}")
    if renamed:
        warnings.warn("deprecated ModelConfig fields read as the current ones: " + "; ".join(renamed)
                      + " (write the new names to silence this)", FutureWarning, stacklevel=3)
    return values


PRESETS: Dict[str, Dict[str, Any]] = {
    # Trains in minutes on 2 CPU cores: e.g. 16 frames of 64x64 with a 16x16 glance.
    "tiny": dict(),
    # The paper's settings, with the paper table each comes from: docs/design.md, "Presets".
    # Sth-Sth / Diving48 (Tables 3, 4): MN2+TSM glance on 8 frames at 224, R50+TSM on M=2 cubes
    # of 128x128x12; clips of 24 sampled frames (configs/paper_tsm.yaml).
    "paper_tsm": dict(
        num_classes=174,
        glance=dict(backbone="mobilenet_v2", tsm=True),
        glance_frames=8,
        glance_resolution=224,
        local=dict(backbone="resnet50", tsm=True),
        cube_size=(12, 128, 128),
        num_cubes=2,
        policy_channels=128,
        embed_width=4096,
        dropout=0.5,
    ),
    # ActivityNet / FCVID / Mini-Kinetics (Table 1): 16 glance frames, up to 18 frame-wise
    # 128x128x1 cubes (96x96x1: configs/paper_long_96.yaml) from 48 candidate frames; CE loss.
    "paper_long": dict(
        num_classes=200,
        glance=dict(backbone="mobilenet_v2"),
        glance_frames=16,
        glance_resolution=224,
        local=dict(backbone="resnet50"),
        cube_size=(1, 128, 128),
        num_cubes=18,
        policy_channels=128,
        embed_width=4096,
        dropout=0.2,
    ),
}
