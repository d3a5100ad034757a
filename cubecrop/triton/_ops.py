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

from cubecrop._autograd import register_crop_autograd
from cubecrop._flops import register_crop_flop_formulas
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

    register_crop_autograd(f"cubecrop::{prefix}crop_cubes", crop_cubes_backward)
    register_crop_flop_formulas(
        *(getattr(torch.ops.cubecrop, f"{prefix}{name}") for name in ("crop_cubes", "crop_cubes_backward", "crop_cubes_int"))
    )

    return crop_cubes, crop_cubes_int


interpreted_crop_cubes, interpreted_crop_cubes_int = _register_family("triton_interpret_", interpreted=True)

# The GPU family only where a GPU can exist: registering a triton_op analyses its
# body with torch._inductor, an import that costs seconds, which CPU-only users
# (every caller of cubecrop.available_backends) should not pay.
if torch.cuda.is_available():
    compiled_crop_cubes, compiled_crop_cubes_int = _register_family("triton_", interpreted=False)
else:
    compiled_crop_cubes = compiled_crop_cubes_int = None
