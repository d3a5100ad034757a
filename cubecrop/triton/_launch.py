"""Host side of the Triton kernels: buffers, strides, grids and launches.

Each function takes the kernel module to launch from (interpreted or compiled,
see _loader.py) and `wrap`, the identity for plain launches or
torch.library.wrap_triton inside a triton_op body (so torch.compile can trace
the launch). Everything else here is plain PyTorch ops, so the same function
is the body of both the opaque custom ops and the triton_ops (see _ops.py).
Contracts of the arguments: csrc/ops.cpp.
"""
from types import ModuleType
from typing import Callable, List, Optional, Tuple

import torch
import triton

Wrap = Callable[[object], object]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Element types the integer crop can copy (Triton has a pointer type for each).
INT_CROP_DTYPES = FLOAT_DTYPES + (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _block_w(dw: int, kernels: ModuleType) -> int:
    return min(triton.next_power_of_2(dw), kernels.MAX_BLOCK_W)


def _tiles_per_cube(rows: int, dw: int, block_w: int, tile: int) -> int:
    return triton.cdiv(rows, tile // block_w) * triton.cdiv(dw, block_w)


def _grid(cubes: int, rows: int, dw: int, block_w: int):
    # One program per tile of each cube; TILE is chosen by the autotuner.
    return lambda meta: (cubes * _tiles_per_cube(rows, dw, block_w, meta["TILE"]),)


def _check_device(kernels: ModuleType, *tensors: torch.Tensor) -> None:
    for tensor in tensors:
        if not kernels.INTERPRETED and tensor.device.type == "cpu":
            raise ValueError(
                "the compiled Triton kernels need GPU tensors; CPU tensors go through the "
                "cubecrop::triton_interpret_* ops (TRITON_INTERPRET=1)"
            )


def _check_padding_mode(padding_mode: int) -> None:
    if padding_mode not in (0, 1):
        raise ValueError(f"padding_mode must be 0 (zeros) or 1 (border), got {padding_mode}")


def _check_crop_inputs(video: torch.Tensor, centers: torch.Tensor, size: List[int]) -> None:
    torch._check(video.dim() == 5, lambda: f"video must be (N, C, T, H, W), got {tuple(video.shape)}")
    torch._check(
        centers.dim() == 3 and centers.shape[0] == video.shape[0] and centers.shape[2] == 3,
        lambda: f"centers must be (N={video.shape[0]}, K, 3), got {tuple(centers.shape)}",
    )
    torch._check(len(size) == 3 and all(s >= 1 for s in size), lambda: f"size must be 3 positive ints, got {size}")


def _accumulation_dtype(video: torch.Tensor, centers: torch.Tensor) -> torch.dtype:
    # The kernels accumulate in the centres' dtype; cubecrop.ops passes float64
    # centres for a float64 video and float32 otherwise.
    if video.dtype not in FLOAT_DTYPES:
        raise TypeError(f"video must be float16, bfloat16, float32 or float64, got {video.dtype}")
    if centers.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"centers must be float32 or float64 (the accumulation dtype), got {centers.dtype}")
    return centers.dtype


def crop_forward(
    kernels: ModuleType, wrap: Wrap, video: torch.Tensor, centers: torch.Tensor, size: List[int], padding_mode: int
) -> torch.Tensor:
    _check_crop_inputs(video, centers, size)
    _check_padding_mode(padding_mode)
    _check_device(kernels, video, centers)
    _accumulation_dtype(video, centers)
    n, c, t, h, w = video.shape
    k = centers.shape[1]
    dt, dh, dw = size
    out = video.new_empty((n, k, c, dt, dh, dw))
    if out.numel() == 0:
        return out
    if t * h * w == 0:  # nothing to read: every tap is padding
        return out.zero_()
    block_w = _block_w(dw, kernels)
    wrap(kernels.crop_forward_kernel)[_grid(n * k, c * dt * dh, dw, block_w)](
        video, centers, out,
        k, c, t, h, w,
        *video.stride(),
        *centers.stride(),
        dt, dh, dw,
        PADDING=padding_mode, BLOCK_W=block_w,
    )
    return out


def crop_backward(
    kernels: ModuleType,
    wrap: Wrap,
    grad_out: torch.Tensor,
    video: torch.Tensor,
    centers: torch.Tensor,
    size: List[int],
    padding_mode: int,
    need_video_grad: bool,
    need_centers_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    _check_crop_inputs(video, centers, size)
    _check_padding_mode(padding_mode)
    _check_device(kernels, grad_out, video, centers)
    acc = _accumulation_dtype(video, centers)
    n, c, t, h, w = video.shape
    k = centers.shape[1]
    dt, dh, dw = size
    torch._check(
        tuple(grad_out.shape) == (n, k, c, dt, dh, dw),
        lambda: f"grad_out must be {(n, k, c, dt, dh, dw)}, got {tuple(grad_out.shape)}",
    )
    # The kernel's video gradient uses atomic adds, whose order (so the low bits of
    # the sum) depends on scheduling; deterministic mode takes the gather below.
    deterministic = need_video_grad and torch.are_deterministic_algorithms_enabled()
    kernel_video_grad = need_video_grad and not deterministic
    block_w = _block_w(dw, kernels)
    rows = c * dt * dh
    max_tiles = _tiles_per_cube(rows, dw, block_w, kernels.MIN_TILE)
    # Gradients accumulate in fp32 (fp64 for a fp64 video), whatever the video's dtype.
    grad_video = video.new_zeros(video.shape if need_video_grad else (1,), dtype=acc)
    partials = centers.new_zeros((n * k, max_tiles, 3) if need_centers_grad else (1,), dtype=acc)
    if grad_out.numel() and t * h * w and (kernel_video_grad or need_centers_grad):
        wrap(kernels.crop_backward_kernel)[_grid(n * k, rows, dw, block_w)](
            grad_out, video, centers, grad_video, partials,
            k, c, t, h, w,
            *grad_out.stride(),
            *video.stride(),
            *centers.stride(),
            *(grad_video.stride() if kernel_video_grad else (0,) * 5),
            dt, dh, dw, max_tiles,
            PADDING=padding_mode, NEED_VIDEO=kernel_video_grad, NEED_CENTERS=need_centers_grad,
            BLOCK_W=block_w,
        )
    if deterministic and grad_out.numel() and t * h * w:
        _add_video_grad_deterministic(grad_video, grad_out, centers, size, padding_mode)
    # Fixed-order sum of the per-tile partials: the centre gradient is deterministic.
    grad_centers = partials.sum(dim=1).view(n, k, 3) if need_centers_grad else centers.new_empty((0,))
    grad_video = grad_video.to(video.dtype) if need_video_grad else video.new_empty((0,))
    return grad_video, grad_centers


def _axis_sources(centers_axis: torch.Tensor, size: int, extent: int, padding_mode: int):
    """Per tap (lo, hi) of one axis: (input index, weight), each (N, K, size).

    Same math as _kernels._axis_taps/_resolve; a tap reading zero padding gets
    weight 0 (and a harmless in-range index)."""
    s = (centers_axis - size * 0.5).clamp(-(size + 2), extent + 1)
    f = torch.floor(s)
    f = torch.where((f == s) & (f + size == extent) & (f >= 1), f - 1, f)  # the upper-edge rule
    frac = (s - f).unsqueeze(-1)
    index = f.long().unsqueeze(-1) + torch.arange(size, device=centers_axis.device)
    taps = []
    for offset, weight in ((0, 1 - frac), (1, frac)):
        tap = index + offset
        valid = (tap >= 0) & (tap < extent)
        weight = weight.expand(tap.shape)
        if padding_mode == 0:
            weight = torch.where(valid, weight, torch.zeros_like(weight))
        taps.append((tap.clamp(0, extent - 1), weight))
    return taps


def _add_video_grad_deterministic(
    grad_video: torch.Tensor, grad_out: torch.Tensor, centers: torch.Tensor, size: List[int], padding_mode: int
) -> None:
    """grad_video (contiguous, accumulation dtype) += the crop's adjoint, in a fixed order.

    Deterministic-mode path: the 8 taps are added one after another with
    index_add_, which torch.use_deterministic_algorithms makes deterministic on
    CUDA (and which is sequential on CPU). Costs one (N, K, C, Dt, Dh, Dw) index
    and value buffer per tap, so it is slower than the atomic kernel."""
    n, c, t, h, w = grad_video.shape
    k = centers.shape[1]
    g = grad_out.to(grad_video.dtype)
    taps_t = _axis_sources(centers[..., 0], size[0], t, padding_mode)
    taps_y = _axis_sources(centers[..., 1], size[1], h, padding_mode)
    taps_x = _axis_sources(centers[..., 2], size[2], w, padding_mode)
    device = grad_video.device
    # Flat index of (n, c) for every output voxel: (N, 1, C, 1, 1, 1).
    base = (torch.arange(n, device=device).view(n, 1, 1) * c + torch.arange(c, device=device).view(1, 1, c))
    base = base.view(n, 1, c, 1, 1, 1)
    flat_video = grad_video.view(-1)
    for it, wt in taps_t:
        for iy, wy in taps_y:
            for ix, wx in taps_x:
                index = ((base * t + it.view(n, k, 1, -1, 1, 1)) * h + iy.view(n, k, 1, 1, -1, 1)) * w + ix.view(
                    n, k, 1, 1, 1, -1
                )
                weight = wt.view(n, k, 1, -1, 1, 1) * wy.view(n, k, 1, 1, -1, 1) * wx.view(n, k, 1, 1, 1, -1)
                values = g * weight.to(g.dtype)
                flat_video.index_add_(0, index.expand(values.shape).reshape(-1), values.reshape(-1))


def crop_int(
    kernels: ModuleType,
    wrap: Wrap,
    video: torch.Tensor,
    centers: torch.Tensor,
    size: List[int],
    channels_last: bool,
    mean: Optional[torch.Tensor],
    std: Optional[torch.Tensor],
    out_dtype: torch.dtype,
) -> torch.Tensor:
    torch._check(video.dim() == 5, lambda: f"video must be 5-D, got {tuple(video.shape)}")
    _check_device(kernels, video, centers)
    if video.dtype not in INT_CROP_DTYPES:
        raise TypeError(f"video dtype {video.dtype} is not supported by the Triton integer crop")
    if centers.dtype != torch.float64:
        raise TypeError(f"centers must be float64 (starts are rounded in float64), got {centers.dtype}")
    # The kernel reads (N, C, T, H, W) through strides: channels-last is a permuted view.
    view = video.permute(0, 4, 1, 2, 3) if channels_last else video
    n, c, t, h, w = view.shape
    k = centers.shape[1]
    dt, dh, dw = size
    _check_crop_inputs(view, centers, size)
    torch._check(dt <= t and dh <= h and dw <= w, lambda: f"size {size} must fit inside (T, H, W) = {(t, h, w)}")
    normalised = mean is not None or std is not None
    # Without normalisation the kernel copies in the video's dtype and torch casts,
    # so every backend converts dtypes with the same (PyTorch) rules.
    out = video.new_empty((n, k, c, dt, dh, dw), dtype=out_dtype if normalised else video.dtype)
    for name, stat in (("mean", mean), ("std", std)):
        if stat is not None:
            torch._check(stat.shape == (c,), lambda: f"{name} must have shape ({c},), got {tuple(stat.shape)}")
    if out.numel():
        block_w = _block_w(dw, kernels)
        # Dummy pointers for absent statistics; HAS_MEAN/HAS_STD keep them unread.
        placeholder = centers
        wrap(kernels.crop_int_kernel)[_grid(n * k, c * dt * dh, dw, block_w)](
            view, centers,
            mean if mean is not None else placeholder,
            std if std is not None else placeholder,
            out,
            k, c, t, h, w,
            *view.stride(),
            *centers.stride(),
            dt, dh, dw,
            HAS_MEAN=mean is not None, HAS_STD=std is not None,
            COMPUTE_FP64=out_dtype == torch.float64 or video.dtype == torch.float64,
            BLOCK_W=block_w,
        )
    return out if out.dtype == out_dtype else out.to(out_dtype)
