"""Temporal shift module (TSM, Lin et al. 2019) for 2D backbones run on frame stacks.

Residual shift as in the TSM code the AdaFocus repos use ("blockres", fold_div 8,
not in place): inside a residual branch, 1/fold_div of the channels move one
frame toward earlier frames, another 1/fold_div one frame toward later frames,
zeros at the clip ends. Costs no multiply-adds.

The frame count of a batch is not known when the module is built (the glance sees
G frames, a cube Dt, an enlarged training cube Dt+1), so the encoder sets it
before each forward with `set_segments`.
"""
from __future__ import annotations

import torch
from torch import nn


def temporal_shift(x: torch.Tensor, segments: int, fold_div: int = 8) -> torch.Tensor:
    """x (N*T, C, H, W) with T = segments consecutive frames per clip -> same shape, channels shifted in time."""
    nt, c, h, w = x.shape
    if nt % segments:
        raise ValueError(f"batch of {nt} frames is not a whole number of clips of {segments} frames")
    x = x.view(nt // segments, segments, c, h, w)
    fold = c // fold_div
    if torch.compiler.is_exporting():
        return _shift_by_concatenation(x, fold).view(nt, c, h, w)
    # Every element is written once: zero-filling the whole output first would add a full
    # write pass to what is only a copy.
    out = torch.empty_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # frame t sees frame t+1's channels
    out[:, -1:, :fold] = 0  # ... the last frame has no next frame
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # frame t sees frame t-1's channels
    out[:, :1, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


def _shift_by_concatenation(x: torch.Tensor, fold: int) -> torch.Tensor:
    """temporal_shift of x (N, T, C, H, W) as concatenations of slices: the same values, in the
    form exported graphs take. The slice assignments of the eager form become ScatterND and
    Transpose nodes in ONNX, each a full copy of the tensor in ONNX Runtime (the exported
    ResNet-50 + TSM ran at half PyTorch's speed: benchmarks/bench_onnx.py)."""
    zeros = x.new_zeros(x.shape[0], 1, fold, *x.shape[3:])
    from_next = torch.cat((x[:, 1:, :fold], zeros), dim=1)  # frame t sees frame t+1's channels
    from_previous = torch.cat((zeros, x[:, :-1, fold : 2 * fold]), dim=1)
    return torch.cat((from_next, from_previous, x[:, :, 2 * fold :]), dim=2)


class TemporalShift(nn.Module):
    """Shift the input of `net` (a residual branch's first layer) in time, then apply `net`."""

    def __init__(self, net: nn.Module, fold_div: int = 8):
        super().__init__()
        self.net = net
        self.fold_div = fold_div
        self.segments = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.segments, self.fold_div))


def insert_temporal_shift(backbone: nn.Module, fold_div: int = 8) -> int:
    """Wrap the first layer of every residual branch of `backbone` in place; returns how many were wrapped.

    Knows torchvision's BasicBlock/Bottleneck (conv1), MobileNetV2's InvertedResidual
    with a skip connection (conv[0], as the TSM code does) and our tiny ResidualBlock.
    """
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from adafocus.model.backbones import ResidualBlock

    wrapped = 0
    for module in backbone.modules():
        if isinstance(module, (BasicBlock, Bottleneck, ResidualBlock)) and not isinstance(module.conv1, TemporalShift):
            module.conv1 = TemporalShift(module.conv1, fold_div)
            wrapped += 1
        elif isinstance(module, InvertedResidual) and module.use_res_connect and not isinstance(module.conv[0], TemporalShift):
            module.conv[0] = TemporalShift(module.conv[0], fold_div)
            wrapped += 1
    return wrapped


def set_segments(module: nn.Module, segments: int) -> None:
    """Tell every TemporalShift inside `module` how many consecutive frames form one clip."""
    for shift in module.modules():
        if isinstance(shift, TemporalShift):
            shift.segments = segments
