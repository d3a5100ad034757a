"""FLOP counts of the cube-crop ops: the one definition every backend registers.

Counts follow FlopCounterMode's convention (a multiply-add is 2 FLOPs).
"""
import math
from typing import Sequence

# A trilinear voxel blends 8 taps: 8 multiply-adds.
TRILINEAR_FLOPS_PER_VOXEL = 2 * 8
# Backward: the video gradient gathers 8 weighted taps per window voxel, and the
# centre gradient takes 3 axis derivatives of the same 8 taps per output voxel.
TRILINEAR_BACKWARD_FLOPS_PER_VOXEL = 2 * 8 + 3 * 2 * 8


def crop_forward_flops(out_shape: Sequence[int]) -> int:
    return TRILINEAR_FLOPS_PER_VOXEL * math.prod(out_shape)


def crop_backward_flops(grad_out_shape: Sequence[int]) -> int:
    return TRILINEAR_BACKWARD_FLOPS_PER_VOXEL * math.prod(grad_out_shape)


def crop_int_flops(out_shape: Sequence[int], normalised: bool) -> int:
    # A slice copy does no arithmetic; fused normalisation is one multiply-add per voxel.
    return 2 * math.prod(out_shape) if normalised else 0


def register_crop_flop_formulas(forward_op, backward_op, int_op) -> None:
    """Register the formulas above for one backend's (crop_cubes, crop_cubes_backward, crop_cubes_int) ops."""
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(forward_op)
    def _forward(video_shape, centers_shape, size, padding_mode, *args, out_shape=None, **kwargs):
        return crop_forward_flops(out_shape)

    @register_flop_formula(backward_op)
    def _backward(grad_out_shape, *args, out_shape=None, **kwargs):
        return crop_backward_flops(grad_out_shape)

    @register_flop_formula(int_op)
    def _int(video_shape, centers_shape, size, channels_last, mean_shape, std_shape, *args, out_shape=None, **kwargs):
        return crop_int_flops(out_shape, mean_shape is not None or std_shape is not None)
