"""GFLOPs accounting: multiply-adds measured with FlopCounterMode on the real modules and input sizes.

The paper's "GFLOPs" are multiply-adds (GMACs); FlopCounterMode counts a multiply-add
as 2 FLOPs, so every number here is FlopCounterMode's count / 2 / 1e9. Modules run on
a "meta" copy (shapes only, no arithmetic), so counting a ResNet-50 costs nothing.
Ops without a registered formula count 0 (resizing, pooling, softmax, integer crops).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def meta_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` on the meta device (no memory for weights, no compute)."""
    # Seeding deepcopy's memo with meta stand-ins means no weight is ever copied (a CUDA model stays put).
    memo = {}
    for param in module.parameters():
        memo[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    duplicate = copy.deepcopy(module, memo)
    # Hooks the caller put on the real module (profilers, feature taps) must not see the counting run.
    for sub in duplicate.modules():
        for hooks in (sub._forward_hooks, sub._forward_pre_hooks, sub._backward_hooks, sub._backward_pre_hooks):
            hooks.clear()
    return duplicate.to("meta").eval()


def count_gmacs(fn: Callable, *inputs) -> float:
    """GMACs of one call fn(*inputs), gradients off."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return counter.get_total_flops() / 2 / 1e9


def module_gmacs(module: nn.Module, *shapes, **kwargs) -> float:
    """GMACs of module(*inputs) for float32 inputs of the given shapes, measured on a meta copy."""
    meta = meta_copy(module)
    inputs = [torch.empty(shape, device="meta") for shape in shapes]
    return count_gmacs(lambda *xs: meta(*xs, **kwargs), *inputs)
