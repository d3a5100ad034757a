"""Autograd of a crop_cubes op: one fused backward op gives both gradients.

Shared by every backend whose forward is `op(video, centers, size, padding_mode)` and whose
backward op is `backward_op(grad_out, video, centers, size, padding_mode,
need_video_grad, need_centers_grad) -> (grad_video, grad_centers)`.

First order only. The backward op has no derivative of its own: under create_graph=True
its gradients come back attached to a node that raises a clear error when differentiated
(without it the native ops silently gave zero second-order centre gradients).
backend="reference" (plain PyTorch) supports double backward.
"""
import torch


def _backend_name(op_name: str, device: torch.device) -> str:
    # cubecrop::crop_cubes runs the cpu or cuda kernels by device; the Triton families are
    # cubecrop::triton_crop_cubes and cubecrop::triton_interpret_crop_cubes.
    if "triton" in op_name:
        return "triton"
    return "cuda" if device.type == "cuda" else "cpu"


class _NoDoubleBackward(torch.autograd.Function):
    """Identity whose backward raises: marks a first-order gradient as not differentiable."""

    @staticmethod
    def forward(ctx, gradient, backend, *sources):
        # `sources` (the tensors the gradient depends on) only connect the output to the graph.
        ctx.backend = backend
        return gradient.view_as(gradient)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"double backward is not supported by backend {ctx.backend!r}; "
            "use backend='reference' for second-order gradients of crop_cubes"
        )


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
        # Grad mode is on here only under create_graph=True (a double backward may follow).
        graph = torch.is_grad_enabled() and not torch.compiler.is_compiling()
        with torch.no_grad():
            grad_video, grad_centers = backward_op(
                grad_out.contiguous(), video, centers, ctx.size, ctx.padding_mode, need_video, need_centers
            )
        sources = (grad_out, video, centers)
        if graph and any(t.requires_grad for t in sources):
            backend = _backend_name(op_name, video.device)
            grad_video = _NoDoubleBackward.apply(grad_video, backend, *sources) if need_video else grad_video
            grad_centers = _NoDoubleBackward.apply(grad_centers, backend, *sources) if need_centers else grad_centers
        return (grad_video if need_video else None, grad_centers if need_centers else None, None, None)

    torch.library.register_autograd(op_name, backward, setup_context=setup_context)
