"""The cost model: GMACs per exit of AdaFocusV3 and per video of the baseline, for any input shape.

Measured with FlopCounterMode on the real modules and input sizes (docs/design.md, "GFLOPs").

The paper's "GFLOPs" are multiply-adds (GMACs); FlopCounterMode counts a multiply-add
as 2 FLOPs, so every number here is FlopCounterMode's count / 2 / 1e9. Modules run on
a "meta" copy (shapes only, no arithmetic), so counting a ResNet-50 costs nothing.
Ops without a registered formula count 0 (resizing, pooling, softmax, integer crops).
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adafocus.model.video_checks import video_dims


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


def component_gmacs(model: nn.Module, video_shape: Sequence[int]) -> Dict[str, float]:
    """GMACs per video of each component of an AdaFocusV3: glance (fG on G frames), policy,
    local_cube (fL on one cube), glance_head (exit 0: fC's glance embedding and head) and local_head
    (one later exit: one cube's embedding and the exit's head; the glance is embedded once, at
    exit 0), each measured on the very calls inference makes (adafocus.inference.EarlyExitRunner)."""
    c, t, h, w = video_dims(video_shape)
    meta = meta_copy(model)
    cfg = model.config
    r = cfg.glance_resolution
    grid = model.glance.grid_size()
    glance_channels, local_channels = model.glance.out_channels, model.local.out_channels
    classifier = meta.classifier

    def empty(*shape):
        return torch.empty(shape, device="meta")

    def exit_zero(glance):
        return classifier.glance_exit(classifier.embed_glance(glance))

    def later_exit(embedded_glance, cube_features):
        return classifier.local_exit(1, classifier.embed_local(cube_features), embedded_glance)

    embedded_width = classifier.embed_glance(empty(1, glance_channels)).shape[-1]
    return {
        "glance": count_gmacs(meta.glance.encode, empty(1, c, cfg.glance_frames, r, r)),
        "policy": count_gmacs(lambda x: meta.policy(x, (t, h, w)), empty(1, glance_channels, *grid)),
        "local_cube": count_gmacs(meta.local.encode, empty(1, c, *cfg.cube_size)),
        "glance_head": count_gmacs(exit_zero, empty(1, glance_channels)),
        "local_head": count_gmacs(later_exit, empty(1, embedded_width), empty(1, local_channels)),
    }


def exits_from_components(parts: Dict[str, float], num_exits: int, policy: str) -> List[float]:
    """Cumulative GMACs to reach exit 0..M. The policy network is charged once, from exit 1 on,
    and not at all for random cubes (which never run it)."""
    policy_cost = 0.0 if policy == "random" else parts["policy"]
    exits = [parts["glance"] + parts["glance_head"]]
    for t in range(1, num_exits):
        exits.append(exits[-1] + parts["local_cube"] + parts["local_head"] + (policy_cost if t == 1 else 0.0))
    return exits


def gmacs_per_exit(model: nn.Module, video_shape: Sequence[int], policy: str = "learned") -> List[float]:
    """Cumulative GMACs per video to reach exit 0..M of an AdaFocusV3 for `policy`'s centers."""
    return exits_from_components(component_gmacs(model, video_shape), model.config.num_exits, policy)


def baseline_gmacs(baseline: nn.Module, video_shape: Sequence[int]) -> float:
    """GMACs per video of a FullVideoBaseline (fG on its glance frames, fL on config.full_video_frames)."""
    c, t, h, w = video_dims(video_shape)
    return count_gmacs(meta_copy(baseline), torch.empty(1, c, t, h, w, device="meta"))


def baseline_components(baseline: nn.Module, video_shape: Sequence[int]) -> Dict[str, float]:
    """GMACs per video of each part of a FullVideoBaseline: glance (fG on its G frames), local
    (fL at full resolution on config.full_video_frames frames) and head; they add up to baseline_gmacs."""
    c, t, h, w = video_dims(video_shape)
    meta = meta_copy(baseline)
    cfg = baseline.config
    r = cfg.glance_resolution
    return {
        "glance": count_gmacs(meta.glance.encode, torch.empty(1, c, cfg.glance_frames, r, r, device="meta")),
        "local": count_gmacs(meta.local.encode, torch.empty(1, c, cfg.full_video_frames, h, w, device="meta")),
        "head": count_gmacs(meta.head, torch.empty(1, meta.head.in_features, device="meta")),
    }
