"""Triton backend of the cube-crop ops (called by cubecrop.ops when backend="triton").

    is_available(device)                 whether this backend can run on `device`'s tensors
    crop_cubes(video, centers, size, padding_mode)          differentiable (video, centers)
    crop_cubes_int(video, centers, size, channels_last, mean, std, out_dtype)

Arguments are already validated and normalised by cubecrop.ops (contracts in
csrc/ops.cpp): centers are float32 (float64 for a float64 video) for
crop_cubes, float64 for crop_cubes_int; padding_mode is 0 (zeros) or 1 (border).

GPU tensors run compiled kernels through triton_ops; CPU tensors run the same
kernels under triton's interpreter, which is what CI tests (no GPU there), and
only when TRITON_INTERPRET=1 asks for it (which also sends GPU tensors to the
interpreter, as triton does). Layout of the package: _kernels.py
(Triton code), _loader.py (interpreted and compiled copies), _launch.py (host
side), _ops.py (torch.library registration).
"""
import os
from typing import List, Optional

import torch

from cubecrop.triton import _ops

__all__ = ["is_available", "crop_cubes", "crop_cubes_int"]


def _probe_gpu_driver() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        from triton.runtime import driver

        driver.active.get_current_device()
    except Exception:  # no GPU driver (RuntimeError: 0 active drivers) or no device
        return False
    return True


# None until first asked; then fixed for the process (a driver does not come and go).
_GPU_DRIVER_ACTIVE: Optional[bool] = None


# Dynamo cannot trace triton's driver query. Cached, and called for real (not traced)
# when the first call comes from inside a compiled function: the answer is a constant.
@torch.compiler.assume_constant_result
def gpu_driver_active() -> bool:
    """Whether torch sees a GPU and triton has an active driver for it (asked once)."""
    global _GPU_DRIVER_ACTIVE
    if _GPU_DRIVER_ACTIVE is None:
        _GPU_DRIVER_ACTIVE = _probe_gpu_driver()
    return _GPU_DRIVER_ACTIVE


def is_available(device) -> bool:
    """CUDA tensors when triton has a GPU driver; CPU tensors only under TRITON_INTERPRET=1."""
    device = torch.device(device)
    if device.type == "cuda":
        return gpu_driver_active()
    if device.type == "cpu":
        return os.environ.get("TRITON_INTERPRET") == "1"
    return False


def _interpreted(device: torch.device) -> bool:
    # TRITON_INTERPRET=1 interprets GPU tensors too, as triton itself would
    # (they are copied to the host for each launch).
    return device.type == "cpu" or os.environ.get("TRITON_INTERPRET") == "1"


def crop_cubes(video: torch.Tensor, centers: torch.Tensor, size: List[int], padding_mode: int) -> torch.Tensor:
    op = _ops.interpreted_crop_cubes if _interpreted(video.device) else _ops.compiled_crop_cubes
    return op(video, centers, list(size), padding_mode)


def crop_cubes_int(video: torch.Tensor, centers: torch.Tensor, size: List[int], *options) -> torch.Tensor:
    """options: channels_last, mean, std, out_dtype, as the op `cubecrop::triton_crop_cubes_int` takes them."""
    op = _ops.interpreted_crop_cubes_int if _interpreted(video.device) else _ops.compiled_crop_cubes_int
    # The integer crop has no gradient (a test-time op): detached, its output never asks for one.
    return op(video.detach(), centers.detach(), list(size), *options)
