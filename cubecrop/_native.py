"""Python half of the native (C++/CUDA) ops: fake kernels, autograd, FLOP formulas.

The schemas and kernels are in csrc/; see csrc/ops.cpp for each op's contract.
"""
import torch

from cubecrop import _extension  # noqa: F401  (loads the library that defines the ops)
from cubecrop._autograd import register_crop_autograd
from cubecrop._flops import register_crop_flop_formulas

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


register_crop_autograd("cubecrop::crop_cubes", _ops.crop_cubes_backward)
register_crop_flop_formulas(_ops.crop_cubes, _ops.crop_cubes_backward, _ops.crop_cubes_int)
