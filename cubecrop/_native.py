"""Python half of the native (C++/CUDA) ops: fake kernels, autograd, FLOP formulas.

The schemas and kernels are in csrc/; see csrc/ops.cpp for each op's contract.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from cubecrop import _extension  # noqa: F401  (loads the library that defines the ops)
from cubecrop._flops import crop_backward_flops, crop_forward_flops, crop_int_flops

_ops = torch.ops.cubecrop


@torch.library.register_fake("cubecrop::crop_cubes")
def _crop_cubes_fake(video, centers, size, padding_mode):
    torch._check(video.dim() == 5, lambda: "video must be (N, C, T, H, W)")
    torch._check(centers.dim() == 3 and centers.shape[2] == 3, lambda: "centers must be (N, K, 3)")
    n, c = video.shape[:2]
    return video.new_empty((n, centers.shape[1], c, *size))


@torch.library.register_fake("cubecrop::crop_cubes_backward")
def _crop_cubes_backward_fake(grad_out, video, centers, size, padding_mode, need_video_grad, need_centers_grad):
    grad_video = torch.empty_like(video, memory_format=torch.contiguous_format) if need_video_grad else video.new_empty((0,))
    grad_centers = torch.empty_like(centers, memory_format=torch.contiguous_format) if need_centers_grad else centers.new_empty((0,))
    return grad_video, grad_centers


@torch.library.register_fake("cubecrop::crop_cubes_int")
def _crop_cubes_int_fake(video, centers, size, channels_last, mean, std, out_dtype):
    n = video.shape[0]
    c = video.shape[4] if channels_last else video.shape[1]
    return video.new_empty((n, centers.shape[1], c, *size), dtype=out_dtype)


def _setup_context(ctx, inputs, output):
    video, centers, size, padding_mode = inputs
    ctx.size = list(size)
    ctx.padding_mode = padding_mode
    # The video gradient needs no tensor but its shape; the centre gradient needs the video.
    ctx.save_for_backward(video, centers)


def _backward(ctx, grad_out):
    video, centers = ctx.saved_tensors
    need_video, need_centers = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_video, grad_centers = _ops.crop_cubes_backward(
        grad_out.contiguous(), video, centers, ctx.size, ctx.padding_mode, need_video, need_centers
    )
    return (grad_video if need_video else None, grad_centers if need_centers else None, None, None)


torch.library.register_autograd("cubecrop::crop_cubes", _backward, setup_context=_setup_context)


@register_flop_formula(_ops.crop_cubes)
def _crop_cubes_flops(video_shape, centers_shape, size, padding_mode, *args, out_shape=None, **kwargs):
    return crop_forward_flops(out_shape)


@register_flop_formula(_ops.crop_cubes_backward)
def _crop_cubes_backward_flops(grad_out_shape, *args, out_shape=None, **kwargs):
    return crop_backward_flops(grad_out_shape)


@register_flop_formula(_ops.crop_cubes_int)
def _crop_cubes_int_flops(video_shape, centers_shape, size, channels_last, mean_shape, std_shape, *args, out_shape=None, **kwargs):
    return crop_int_flops(out_shape, mean_shape is not None or std_shape is not None)
