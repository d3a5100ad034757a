"""2D CNN backbones that map frames to feature maps: torchvision models and tiny CPU presets.

Every backbone maps (N, 3, H, W) to (N, out_channels, H/stride, W/stride) (for
sizes divisible by the stride) and never downloads anything: torchvision models
are built with weights=None; pretrained weights load from a local file.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity, then ReLU (a ResNet BasicBlock without downsampling)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(x + branch)


class TinyCNN(nn.Module):
    """Narrow CNN for 2-core CPU training: per stage a 3x3 conv (stride 2 for the first
    log2(stride) stages) then one residual block (where TSM can shift)."""

    def __init__(self, channels: Sequence[int], stride: int, in_channels: int = 3):
        super().__init__()
        downsamples = int(math.log2(stride))
        if 2**downsamples != stride or downsamples > len(channels):
            raise ValueError(f"tiny backbone: stride {stride} needs a power of two <= 2**{len(channels)} (one per stage)")
        stages = []
        previous = in_channels
        for index, width in enumerate(channels):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 3, stride=2 if index < downsamples else 1, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    ResidualBlock(width),
                )
            )
            previous = width
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class Backbone(nn.Module):
    """A frame encoder with a known output width and total stride."""

    def __init__(self, body: nn.Module, out_channels: int, stride: int, name: str):
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.stride = stride
        self.name = name

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(frames)


class _ResNetTrunk(nn.Module):
    """A torchvision ResNet up to layer4 (no pooling, no fc); parameter names match torchvision's."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _MobileNetTrunk(nn.Module):
    """torchvision MobileNetV2's `features` (ends with the 1280-channel 1x1 conv); names match torchvision's."""

    def __init__(self, mobilenet: nn.Module):
        super().__init__()
        self.features = mobilenet.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_local_weights(body: nn.Module, path: str) -> None:
    """Load a torchvision-style state dict from a local file; classifier/fc entries are ignored.

    Accepts a bare state dict or a checkpoint with a "state_dict"/"model" entry, and strips a
    "module." prefix (DataParallel). Every trunk parameter must be present.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    # A temporal shift wraps a layer as `<layer>.net`: the file has torchvision's plain names.
    source = {key: key.replace(".net.", ".") for key in body.state_dict()}
    missing = [name for name in source.values() if name not in state]
    if missing:
        raise ValueError(f"weights file {path!r} lacks {len(missing)} backbone entries, e.g. {missing[:3]}")
    body.load_state_dict({key: state[name] for key, name in source.items()})


def build_backbone(
    name: str,
    *,
    tiny_channels: Sequence[int] = (16, 32),
    tiny_stride: int = 2,
    weights: Optional[str] = None,
) -> Backbone:
    """name: "tiny", "mobilenet_v2", "resnet18" or "resnet50"; weights: optional local state-dict path
    loaded now (models built from a config defer it: see ClipEncoder.load_pretrained)."""
    import torchvision

    if name == "tiny":
        body, channels, stride = TinyCNN(tiny_channels, tiny_stride), tiny_channels[-1], tiny_stride
    elif name == "mobilenet_v2":
        body, channels, stride = _MobileNetTrunk(torchvision.models.mobilenet_v2(weights=None)), 1280, 32
    elif name == "resnet18":
        body, channels, stride = _ResNetTrunk(torchvision.models.resnet18(weights=None)), 512, 32
    elif name == "resnet50":
        body, channels, stride = _ResNetTrunk(torchvision.models.resnet50(weights=None)), 2048, 32
    else:
        raise ValueError(f"unknown backbone {name!r}; choose tiny, mobilenet_v2, resnet18 or resnet50")
    if weights:
        load_local_weights(body, weights)
    return Backbone(body, channels, stride, name)


class ClipEncoder(nn.Module):
    """A 2D backbone applied to every frame of a clip, with optional temporal shift between frames.

    (N, C, T, H, W) -> (N, out_channels, T, H/stride, W/stride).
    `pretrained` names a local weights file that `load_pretrained` reads: building a model
    never reads a file, so a checkpoint (which holds every weight) loads anywhere.
    """

    def __init__(self, backbone: Backbone, tsm: bool = False, fold_div: int = 8, pretrained: Optional[str] = None):
        super().__init__()
        from adafocus.model.tsm import insert_temporal_shift

        self.backbone = backbone
        self.tsm = tsm
        self.pretrained = pretrained
        if tsm and insert_temporal_shift(backbone.body, fold_div) == 0:
            raise ValueError(f"backbone {backbone.name!r} has no residual block to put a temporal shift in")

    @classmethod
    def from_config(cls, config, fold_div: int) -> "ClipEncoder":
        """From an adafocus.model.config.EncoderConfig; weights are not loaded (see load_pretrained)."""
        backbone = build_backbone(config.backbone, tiny_channels=config.tiny_channels, tiny_stride=config.tiny_stride)
        return cls(backbone, tsm=config.tsm, fold_div=fold_div, pretrained=config.weights)

    def load_pretrained(self) -> bool:
        """Load the `pretrained` weights file into the backbone; False if there is none."""
        if not self.pretrained:
            return False
        load_local_weights(self.backbone.body, self.pretrained)
        return True

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        from adafocus.model.tsm import set_segments

        n, c, t, h, w = clips.shape
        if self.tsm:
            set_segments(self.backbone, t)
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
        maps = self.backbone(frames)
        return maps.view(n, t, *maps.shape[1:]).transpose(1, 2)


def load_pretrained_encoders(model: nn.Module) -> list:
    """Load every encoder's local pretrained weights (training from scratch); returns the files read."""
    loaded = []
    for module in model.modules():
        if isinstance(module, ClipEncoder) and module.load_pretrained():
            loaded.append(module.pretrained)
    return loaded
