"""Public cube-crop functions: argument checks, backend choice, dispatch.

Backends (one semantics, DESIGN.md sections 1-2):
  "reference"  pure PyTorch (cubecrop.reference), exact in float64; any device
  "cpu"        C++ kernels (csrc/cpu) for CPU tensors
  "cuda"       CUDA kernels (csrc/cuda) for CUDA tensors, when built
  "triton"     Triton kernels (cubecrop.triton); CPU tensors need TRITON_INTERPRET=1
backend=None takes $CUBECROP_BACKEND if set, else the fastest for the device.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch

from cubecrop import _native  # noqa: F401  (fake kernels + autograd of the native ops)
from cubecrop import reference
from cubecrop._extension import cuda_kernels_built

BACKENDS = ("reference", "cpu", "cuda", "triton")
PADDING_MODES = {"zeros": 0, "border": 1}
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

SizeLike = Union[int, Sequence[int]]


def _triton_module():
    from cubecrop import triton as triton_backend

    return triton_backend


def triton_available(device: torch.device) -> bool:
    try:
        backend = _triton_module()
    except ImportError:
        return False
    return backend.is_available(device)


def available_backends(device: Union[str, torch.device]) -> list:
    """Backends that can run on tensors of `device`, fastest first."""
    device = torch.device(device)
    found = []
    if device.type == "cuda" and cuda_kernels_built():
        found.append("cuda")
    if device.type == "cpu":
        found.append("cpu")
    if triton_available(device):
        found.append("triton")
    found.append("reference")
    return found


def resolve_backend(backend: Optional[str], device: torch.device) -> str:
    requested = backend or os.environ.get("CUBECROP_BACKEND") or None
    available = available_backends(device)
    if requested is None:
        return available[0]
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {requested!r}")
    if requested not in available:
        raise ValueError(
            f"backend={requested!r} cannot run on {device.type} tensors here; available: {available}"
            + (" (the CUDA kernels were not built: rebuild with FORCE_CUDA=1)" if requested == "cuda" else "")
            + (" (Triton needs a GPU, or TRITON_INTERPRET=1 for CPU tensors)" if requested == "triton" else "")
        )
    return requested


def normalize_size(size: SizeLike, name: str = "size") -> list:
    """One int (a cube) or three ints (Dt, Dh, Dw), each >= 1."""
    if isinstance(size, torch.Tensor):
        size = size.tolist()
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size] * 3
    try:
        size = [int(s) for s in size]
    except TypeError:
        raise ValueError(f"{name} must be an int or 3 ints (Dt, Dh, Dw), got {size!r}") from None
    if len(size) != 3:
        raise ValueError(f"{name} must be an int or 3 ints (Dt, Dh, Dw), got {len(size)} values: {size}")
    if any(s < 1 for s in size):
        raise ValueError(f"{name} must be positive, got {size}")
    return size


def _check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_centers(centers: torch.Tensor, batch: int, device: torch.device, name: str = "centers") -> None:
    _check_tensor(centers, name)
    if centers.dim() != 3 or centers.shape[2] != 3 or centers.shape[0] != batch:
        raise ValueError(f"{name} must have shape (N={batch}, K, 3) as (t, y, x), got {tuple(centers.shape)}")
    if not centers.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {centers.dtype}")
    if centers.device != device:
        raise ValueError(f"{name} is on {centers.device} but the video is on {device}: put both on one device")
    # A data-dependent check: skipped while tracing, where it would break the graph.
    if not torch.compiler.is_compiling() and centers.numel() and not bool(torch.isfinite(centers).all()):
        raise ValueError(f"{name} must be finite; got NaN or inf")


def check_video(video: torch.Tensor, name: str = "video", float_only: bool = True, layout: str = "(N, C, T, H, W)") -> None:
    _check_tensor(video, name)
    if video.dim() != 5:
        raise ValueError(f"{name} must be a 5-D tensor {layout}, got shape {tuple(video.shape)}")
    if float_only and video.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64 for a differentiable crop, got {video.dtype}; "
            "use crop_cubes_int for integer videos"
        )
    if not float_only and (video.is_complex() or video.dtype == torch.bool):
        raise TypeError(f"{name} must have a real dtype, got {video.dtype}")


def _kernel_centers(centers: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    # Native kernels take centres in the accumulation dtype (float64 for a float64 video,
    # float32 otherwise); autograd casts the gradient back to the caller's dtype.
    acc = torch.float64 if video.dtype == torch.float64 else torch.float32
    return centers.to(acc).contiguous()


def crop_cubes(
    video: torch.Tensor,
    centers: torch.Tensor,
    size: SizeLike,
    padding_mode: str = "zeros",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Differentiable trilinear crop of K cubes per video.

    video (N, C, T, H, W) float; centers (N, K, 3) as (t, y, x) in voxel units
    (voxel i spans [i, i+1)); size (Dt, Dh, Dw) or one int. Returns
    (N, K, C, Dt, Dh, Dw) in the video's dtype. Reads outside the video are 0
    (padding_mode="zeros") or the edge voxel ("border"). Gradients flow to the
    video and to the centres.
    """
    check_video(video)
    check_centers(centers, video.shape[0], video.device)
    size = normalize_size(size)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {tuple(PADDING_MODES)}, got {padding_mode!r}")
    chosen = resolve_backend(backend, video.device)
    if chosen == "reference":
        return reference.crop_cubes(video, centers, size, padding_mode)
    kernel_centers = _kernel_centers(centers, video)
    if chosen == "triton":
        return _triton_module().crop_cubes(video, kernel_centers, size, PADDING_MODES[padding_mode])
    return torch.ops.cubecrop.crop_cubes(video, kernel_centers, size, PADDING_MODES[padding_mode])


def _check_statistic(value, name: str, channels: int, device: torch.device) -> Optional[torch.Tensor]:
    if value is None:
        return None
    tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
    if tensor.dim() != 1 or tensor.numel() != channels:
        raise ValueError(f"{name} must have one value per channel ({channels}), got shape {tuple(tensor.shape)}")
    # A data-dependent check: skipped while tracing, where it would break the graph.
    if name == "std" and not torch.compiler.is_compiling() and bool((tensor == 0).any()):
        raise ValueError("std must be non-zero for every channel")
    return tensor.contiguous()


def crop_cubes_int(
    video: torch.Tensor,
    centers: torch.Tensor,
    size: SizeLike,
    *,
    channels_last: bool = False,
    mean=None,
    std=None,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Test-time integer crop: each cube starts at round(c - D/2), clamped inside the video.

    video (N, C, T, H, W) of any real dtype (uint8 included), or (N, T, H, W, C)
    with channels_last=True (a decoder's layout). mean/std (C values) fuse
    (x - mean) / std into the crop. Returns (N, K, C, Dt, Dh, Dw) of out_dtype
    (default: float32 when normalising, else the video's dtype). No gradients.
    """
    layout = "(N, T, H, W, C)" if channels_last else "(N, C, T, H, W)"
    check_video(video, float_only=False, layout=layout)
    check_centers(centers, video.shape[0], video.device)
    size = normalize_size(size)
    channels = video.shape[4] if channels_last else video.shape[1]
    extents = tuple(video.shape[1:4]) if channels_last else tuple(video.shape[2:5])
    if any(d > e for d, e in zip(size, extents)):
        raise ValueError(f"size {size} must fit inside the video's (T, H, W) = {extents} for crop_cubes_int")
    mean_t = _check_statistic(mean, "mean", channels, video.device)
    std_t = _check_statistic(std, "std", channels, video.device)
    normalised = mean_t is not None or std_t is not None
    if out_dtype is None:
        out_dtype = torch.float32 if normalised else video.dtype
    if normalised and not out_dtype.is_floating_point:
        raise TypeError(f"out_dtype must be floating when mean/std are given, got {out_dtype}")
    chosen = resolve_backend(backend, video.device)
    if chosen == "reference":
        return reference.crop_cubes_int(
            video, centers, size, channels_last=channels_last, mean=mean_t, std=std_t, out_dtype=out_dtype
        )
    # Starts are rounded in float64 by every backend so all of them pick the same voxel.
    kernel_centers = centers.detach().to(torch.float64).contiguous()
    if chosen == "triton":
        return _triton_module().crop_cubes_int(video, kernel_centers, size, channels_last, mean_t, std_t, out_dtype)
    # No autograd formula: detached, so the output records no history (and warns at no backward).
    return torch.ops.cubecrop.crop_cubes_int(video.detach(), kernel_centers, size, channels_last, mean_t, std_t, out_dtype)
