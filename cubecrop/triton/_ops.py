"""torch.library registration of the Triton backend: two op families, one per kernel copy.

    cubecrop::triton_crop_cubes, ::triton_crop_cubes_backward, ::triton_crop_cubes_int
        GPU tensors, compiled kernels; registered only when torch sees a GPU.
        Registered with torch.library.triton_op and
        launched through wrap_triton, so torch.compile traces into the kernels
        (the fake kernel is the traced body itself).
    cubecrop::triton_interpret_crop_cubes, ::triton_interpret_crop_cubes_backward,
    ::triton_interpret_crop_cubes_int
        CPU tensors, kernels run by triton's interpreter (TRITON_INTERPRET=1).
        Opaque torch.library.custom_op with explicit fake kernels: a triton_op body
        cannot be traced with fake tensors when its kernels are interpreted (the
        interpreter executes them on the spot), while an opaque op passes opcheck
        and torch.compile(fullgraph=True).

Both families share the launch code (_launch.py), the fake shapes, the autograd
formula (the backward is itself an op, so it traces) and the FLOP formulas of
cubecrop/_flops.py. Argument contracts: csrc/ops.cpp.
"""
from typing import List, Optional, Tuple

import torch
from torch.utils.flop_counter import register_flop_formula

from cubecrop._flops import crop_backward_flops, crop_forward_flops, crop_int_flops
from cubecrop.triton import _launch
from cubecrop.triton._loader import load_kernels


def _crop_cubes_fake(video, centers, size, padding_mode):
    return video.new_empty((video.shape[0], centers.shape[1], video.shape[1], *size))


def _crop_cubes_backward_fake(grad_out, video, centers, size, padding_mode, need_video_grad, need_centers_grad):
    grad_video = torch.empty_like(video, memory_format=torch.contiguous_format) if need_video_grad else video.new_empty((0,))
    grad_centers = torch.empty_like(centers, memory_format=torch.contiguous_format) if need_centers_grad else centers.new_empty((0,))
    return grad_video, grad_centers


def _crop_cubes_int_fake(video, centers, size, channels_last, mean, std, out_dtype):
    channels = video.shape[4] if channels_last else video.shape[1]
    return video.new_empty((video.shape[0], centers.shape[1], channels, *size), dtype=out_dtype)


def _register_family(prefix: str, interpreted: bool):
    """Defines crop_cubes / crop_cubes_backward / crop_cubes_int as `cubecrop::<prefix>...`."""
    kernels = load_kernels(interpreted)
    if interpreted:
        define, wrap = torch.library.custom_op, (lambda kernel: kernel)
    else:
        define, wrap = torch.library.triton_op, torch.library.wrap_triton

    @define(f"cubecrop::{prefix}crop_cubes", mutates_args=())
    def crop_cubes(video: torch.Tensor, centers: torch.Tensor, size: List[int], padding_mode: int) -> torch.Tensor:
        return _launch.crop_forward(kernels, wrap, video, centers, size, padding_mode)

    @define(f"cubecrop::{prefix}crop_cubes_backward", mutates_args=())
    def crop_cubes_backward(
        grad_out: torch.Tensor,
        video: torch.Tensor,
        centers: torch.Tensor,
        size: List[int],
        padding_mode: int,
        need_video_grad: bool,
        need_centers_grad: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return _launch.crop_backward(
            kernels, wrap, grad_out, video, centers, size, padding_mode, need_video_grad, need_centers_grad
        )

    @define(f"cubecrop::{prefix}crop_cubes_int", mutates_args=())
    def crop_cubes_int(
        video: torch.Tensor,
        centers: torch.Tensor,
        size: List[int],
        channels_last: bool,
        mean: Optional[torch.Tensor],
        std: Optional[torch.Tensor],
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        return _launch.crop_int(kernels, wrap, video, centers, size, channels_last, mean, std, out_dtype)

    if interpreted:  # a triton_op derives its fake kernel from its body
        crop_cubes.register_fake(_crop_cubes_fake)
        crop_cubes_backward.register_fake(_crop_cubes_backward_fake)
        crop_cubes_int.register_fake(_crop_cubes_int_fake)

    def setup_context(ctx, inputs, output):
        video, centers, size, padding_mode = inputs
        ctx.size = list(size)
        ctx.padding_mode = padding_mode
        ctx.save_for_backward(video, centers)

    def backward(ctx, grad_out):
        video, centers = ctx.saved_tensors
        need_video, need_centers = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_video, grad_centers = crop_cubes_backward(
            grad_out, video, centers, ctx.size, ctx.padding_mode, need_video, need_centers
        )
        return (grad_video if need_video else None, grad_centers if need_centers else None, None, None)

    crop_cubes.register_autograd(backward, setup_context=setup_context)

    @register_flop_formula(getattr(torch.ops.cubecrop, f"{prefix}crop_cubes"))
    def _forward_flops(video_shape, centers_shape, size, padding_mode, *args, out_shape=None, **kwargs):
        return crop_forward_flops(out_shape)

    @register_flop_formula(getattr(torch.ops.cubecrop, f"{prefix}crop_cubes_backward"))
    def _backward_flops(grad_out_shape, *args, out_shape=None, **kwargs):
        return crop_backward_flops(grad_out_shape)

    @register_flop_formula(getattr(torch.ops.cubecrop, f"{prefix}crop_cubes_int"))
    def _int_flops(video_shape, centers_shape, size, channels_last, mean_shape, std_shape, *args, out_shape=None, **kwargs):
        return crop_int_flops(out_shape, mean_shape is not None or std_shape is not None)

    return crop_cubes, crop_cubes_int


interpreted_crop_cubes, interpreted_crop_cubes_int = _register_family("triton_interpret_", interpreted=True)

# The GPU family only where a GPU can exist: registering a triton_op analyses its
# body with torch._inductor, an import that costs seconds, which CPU-only users
# (every caller of cubecrop.available_backends) should not pay.
if torch.cuda.is_available():
    compiled_crop_cubes, compiled_crop_cubes_int = _register_family("triton_", interpreted=False)
else:
    compiled_crop_cubes = compiled_crop_cubes_int = None
