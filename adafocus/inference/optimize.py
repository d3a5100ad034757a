"""Inference-time settings that change speed, never results beyond rounding.

`optimize_for_inference(model, ...)` folds every eval-mode batch norm into the convolution
before it, sets, per encoder, the memory format its convolutions run in, and optionally
compiles the encoders' backbones with torch.compile. Which settings pay
off depends on the backbone and the frame size (benchmarks/results/bench_inference_*.json has
the measurements behind the defaults, from `python -m benchmarks.bench_inference`); `adafocus
bench` measures them on your machine.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

# On CPU the torchvision backbones run faster in channels-last (MobileNetV2's depthwise
# convolutions most: about 1.6x), the narrow tiny CNNs slower (benchmarks.bench_inference).
DEFAULT_MEMORY_FORMAT = {"mobilenet_v2": "channels_last", "resnet18": "channels_last", "resnet50": "channels_last"}


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _conv_of(module: nn.Module) -> Optional[nn.Module]:
    """The convolution `module` is, or wraps as `.net` (a temporal shift in front of it)."""
    if isinstance(module, _CONVS):
        return module
    inner = getattr(module, "net", None)
    return inner if isinstance(inner, _CONVS) else None


def _fold(owner: nn.Module, conv_name: str, norm_name: str) -> bool:
    conv_holder, norm = getattr(owner, conv_name), getattr(owner, norm_name)
    conv = _conv_of(conv_holder)
    if conv is None or not isinstance(norm, _NORMS) or norm.training or not norm.track_running_stats:
        return False
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm)
    if conv_holder is conv:
        setattr(owner, conv_name, fused)
    else:
        conv_holder.net = fused
    setattr(owner, norm_name, nn.Identity())
    return True


def fold_batch_norms(model: nn.Module) -> int:
    """Fold each eval-mode batch norm into the convolution feeding it, in place; returns how many.

    Pairs are found as neighbours in a Sequential (torchvision's Conv-BN-activation blocks, our
    tiny CNN, the policy) and as convN/bnN attributes (ResNet blocks, our residual block); a
    temporal shift wrapping the convolution is kept in front of the folded one.
    """
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                folded += _fold(module, first, second)
        for name in list(module._modules):
            if name.startswith("conv"):
                norm_name = "bn" + name[len("conv"):]
                if norm_name in module._modules:
                    folded += _fold(module, name, norm_name)
    return folded


def default_memory_format(backbone: str, device: torch.device) -> str:
    if device.type != "cpu":
        return "contiguous"
    return DEFAULT_MEMORY_FORMAT.get(backbone, "contiguous")


def optimize_for_inference(model: nn.Module, glance_memory_format: Optional[str] = None,
                           local_memory_format: Optional[str] = None, compile_encoders: bool = False) -> Dict[str, str]:
    """Prepare an AdaFocusV3 or FullVideoBaseline (eval mode) for inference, in place (its
    weights change form: use it for inference only afterwards).

    Memory formats: "contiguous" or "channels_last" (None: the default for the backbone and
    device). A convolution whose weight is channels-last makes its output channels-last, so
    converting an encoder's weights is enough. Compiling replaces each backbone by its compiled
    wrapper: use the model for inference only afterwards (its state-dict keys change). Returns
    the settings applied.
    """
    if model.training:
        raise ValueError("optimize_for_inference needs a model in eval mode (call model.eval() first)")
    device = next(model.parameters()).device
    applied = {"batch_norms_folded": fold_batch_norms(model)}
    for name, requested in (("glance", glance_memory_format), ("local", local_memory_format)):
        encoder = getattr(model, name).encoder
        fmt = requested or default_memory_format(encoder.backbone.name, device)
        if fmt not in MEMORY_FORMATS:
            raise ValueError(f"{name} memory format must be one of {tuple(MEMORY_FORMATS)}, got {fmt!r}")
        encoder.backbone.body.to(memory_format=MEMORY_FORMATS[fmt])
        applied[f"{name}_memory_format"] = fmt
        if compile_encoders:
            # One graph per batch shape: the glance always sees the full batch, each cube stage
            # its running rows (dynamo recompiles up to its cache limit, then runs eager).
            # dynamic=True did not finish compiling the TSM presets in 27 min on 2 CPU cores.
            encoder.backbone.body = torch.compile(encoder.backbone.body, dynamic=False)
    applied["compile"] = bool(compile_encoders)
    return applied
