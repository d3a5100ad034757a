"""Autograd of a crop_cubes op: one fused backward op gives both gradients.

Shared by every backend whose forward is `op(video, centers, size, padding_mode)` and whose
backward op is `backward_op(grad_out, video, centers, size, padding_mode,
need_video_grad, need_centers_grad) -> (grad_video, grad_centers)`.
"""
import torch


def register_crop_autograd(op_name: str, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        video, centers, size, padding_mode = inputs
        ctx.size = list(size)
        ctx.padding_mode = padding_mode
        # The centre gradient needs the video; the video gradient needs only grad_out.
        ctx.save_for_backward(video, centers)

    def backward(ctx, grad_out):
        video, centers = ctx.saved_tensors
        need_video, need_centers = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_video, grad_centers = backward_op(
            grad_out.contiguous(), video, centers, ctx.size, ctx.padding_mode, need_video, need_centers
        )
        return (grad_video if need_video else None, grad_centers if need_centers else None, None, None)

    torch.library.register_autograd(op_name, backward, setup_context=setup_context)
