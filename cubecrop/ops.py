"""Public cube-crop functions: argument checks, backend choice, dispatch.

Backends (one semantics: docs/design.md, "Coordinate convention"; the contract on
every edge case, enforced here once before any backend runs: docs/ops.md):
  "reference"  pure PyTorch (cubecrop.reference), exact in float64; any device
  "cpu"        C++ kernels (csrc/cpu) for CPU tensors
  "cuda"       CUDA kernels (csrc/cuda) for CUDA tensors, when built
  "triton"     Triton kernels (cubecrop.triton); CPU tensors need TRITON_INTERPRET=1
backend=None takes $CUBECROP_BACKEND if set, else the fastest for the device.
"""
from __future__ import annotations

import math
import numbers
import operator
import os
import sys
import warnings
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


def _requested_backend(backend: Optional[str]) -> Optional[str]:
    requested = backend or os.environ.get("CUBECROP_BACKEND") or None
    if requested is not None and requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {requested!r}")
    return requested


def resolve_backend(backend: Optional[str], device: torch.device) -> str:
    requested = _requested_backend(backend)
    available = available_backends(device)
    if requested is None:
        return available[0]
    if requested not in available:
        raise ValueError(
            f"backend={requested!r} cannot run on {device.type} tensors here; available: {available}"
            + (" (the CUDA kernels were not built: rebuild with FORCE_CUDA=1)" if requested == "cuda" else "")
            + (" (Triton needs a GPU, or TRITON_INTERPRET=1 for CPU tensors)" if requested == "triton" else "")
        )
    return requested


# No cube axis this long could be allocated; the bound turns what would be an int64
# overflow or an opaque schema error ("Expected a value of type 'List[int]'") into a clear one.
MAX_SIZE = 2**31 - 1


def _is_meta(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "meta"


def _size_values(size, name: str, axes: str) -> list:
    """The raw entries of `size`: one int (a cube), three ints, or an integer tensor of either."""
    if isinstance(size, torch.Tensor):
        if size.dtype == torch.bool or size.is_floating_point() or size.is_complex():
            raise TypeError(f"{name} must hold integers, got a {size.dtype} tensor of shape {tuple(size.shape)}")
        if size.dim() > 1:
            raise ValueError(f"{name} must be an int or 3 ints {axes}, got a tensor of shape {tuple(size.shape)}")
        if _is_meta(size):
            raise TypeError(f"{name} must be Python ints or a tensor with values, got a meta tensor")
        if torch.compiler.is_compiling():
            # Its values would be data-dependent symbols, which the ops' int[3] schemas cannot take.
            raise TypeError(
                f"{name} must be Python ints under torch.compile, got a tensor: "
                f"convert it outside the compiled function ({name}.tolist())"
            )
        values = size.tolist()
        return [values] * 3 if size.dim() == 0 else values
    if isinstance(size, (str, bytes)):
        raise TypeError(f"{name} must be an int or 3 ints {axes}, got the string {size!r}")
    if isinstance(size, (int, torch.SymInt)) and not isinstance(size, bool):
        return [size] * 3
    try:
        return list(size)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or 3 ints {axes}, got {size!r} of type {type(size).__name__}"
        ) from None


def normalize_size(size: SizeLike, name: str = "size", axes: str = "(Dt, Dh, Dw)") -> list:
    """One int (a cube) or three ints (Dt, Dh, Dw), each in [1, MAX_SIZE], as a list of Python ints.

    bool, str and float entries are rejected rather than truncated; integer tensors
    (and numpy integers) are converted. TypeError for a wrong type, ValueError for a
    wrong count or value; the message names `name`.
    """
    values = _size_values(size, name, axes)
    if len(values) != 3:
        raise ValueError(f"{name} must be an int or 3 ints {axes}, got {len(values)} values: {size!r}")
    result = []
    for axis, value in enumerate(values):
        if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
            raise TypeError(f"{name} must be 3 ints {axes}, got a bool at position {axis}: {size!r}")
        try:
            value = operator.index(value)  # ints, SymInts, numpy and 0-d tensor integers; never floats
        except TypeError:
            raise TypeError(
                f"{name} must be 3 ints {axes}, got {value!r} ({type(value).__name__}) at position {axis}: {size!r}"
            ) from None
        result.append(value)
    for axis, value in enumerate(result):
        if value < 1:
            raise ValueError(f"{name} must be >= 1 per axis, got {result}")
        if value > MAX_SIZE:
            raise ValueError(f"{name} must be at most 2**31 - 1 = {MAX_SIZE} per axis, got {result}")
    return result


def _check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def assert_finite(tensor: torch.Tensor, name: str, what: str = "finite (no NaN or inf)") -> None:
    """A data-dependent check of `tensor`, with no host-device sync.

    CPU: checked on the spot. CUDA (and other accelerators): torch._assert_async, which
    fails the device asynchronously. Meta tensors and traced code: skipped (no data;
    a check would break the graph).
    """
    if _is_meta(tensor) or tensor.numel() == 0 or torch.compiler.is_compiling():
        return
    ok = torch.isfinite(tensor).all()
    if tensor.device.type == "cpu":
        if not bool(ok):
            bad = tensor[~torch.isfinite(tensor)]
            raise ValueError(f"{name} must be {what}; got {bad.numel()} non-finite value(s), e.g. {bad[0].item()}")
    else:
        torch._assert_async(ok, f"{name} must be {what}")


def check_centers(centers: torch.Tensor, batch: int, device: torch.device, name: str = "centers") -> None:
    _check_tensor(centers, name)
    if centers.dim() != 3 or centers.shape[2] != 3 or centers.shape[0] != batch:
        raise ValueError(f"{name} must have shape (N={batch}, K, 3) as (t, y, x), got {tuple(centers.shape)}")
    if not centers.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {centers.dtype}")
    if centers.device != device:
        raise ValueError(f"{name} is on {centers.device} but the video is on {device}: put both on one device")
    assert_finite(centers, name)


def video_extents(video: torch.Tensor, channels_last: bool = False) -> tuple:
    """(T, H, W) of a (N, C, T, H, W) video, or of a (N, T, H, W, C) one with channels_last."""
    return tuple(video.shape[1:4]) if channels_last else tuple(video.shape[2:5])


def check_video(
    video: torch.Tensor, name: str = "video", float_only: bool = True, channels_last: bool = False
) -> None:
    layout = "(N, T, H, W, C)" if channels_last else "(N, C, T, H, W)"
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
    # One rule for every backend (csrc/ops.cpp states it too): an empty batch, channel
    # or cube count gives an empty output, but there is nothing to crop from an empty extent.
    if any(extent < 1 for extent in video_extents(video, channels_last)):
        raise ValueError(f"{name} must have T, H, W >= 1, got shape {list(video.shape)} {layout}")


def _outside_everywhere(centers: torch.Tensor, size: Sequence[int], extents: Sequence[int]) -> bool:
    """Whether every cube misses the video: on some axis its start s = c - D/2 has s <= -D or s >= E.

    Output voxel i reads position s + i with taps floor(s + i) and floor(s + i) + 1; a
    position p touches the video (with a non-zero weight) exactly when -1 < p < E.
    """
    sizes = torch.tensor([float(d) for d in size], dtype=torch.float64)
    limits = torch.tensor([float(e) for e in extents], dtype=torch.float64)
    start = centers.detach().double().reshape(-1, 3) - sizes / 2
    missed = ((start <= -sizes) | (start >= limits)).any(dim=1)
    return bool(missed.all())


def _caller_stacklevel() -> int:
    """stacklevel of the first frame outside the cubecrop package, so a warning names the user's line."""
    package = os.path.dirname(os.path.abspath(__file__))

    def inside(path: str) -> bool:
        folder = os.path.dirname(os.path.abspath(path))
        return folder == package or folder.startswith(package + os.sep)

    frame, level = sys._getframe(1), 1
    while frame is not None and inside(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _warn_if_all_outside(video: torch.Tensor, centers: torch.Tensor, size: Sequence[int], padding_mode: str) -> None:
    # CPU tensors only: on a GPU the check would be a host-device sync on every call.
    if padding_mode != "zeros" or centers.device.type != "cpu" or centers.numel() == 0 or torch.compiler.is_compiling():
        return
    if not _outside_everywhere(centers, size, video_extents(video)):
        return
    # One fixed text, so Python's default filter shows it once per call site.
    warnings.warn(
        "crop_cubes: every cube of this call lies entirely outside the video (padding_mode='zeros'), "
        "so the output and the centre gradient are all zero. Likely causes: centres normalised to "
        "[0, 1] or [-1, 1] instead of voxel units; centres in (x, y, t) order instead of (t, y, x); "
        "a video laid out (N, T, C, H, W) instead of (N, C, T, H, W).",
        UserWarning,
        stacklevel=_caller_stacklevel(),
    )


def _kernel_centers(centers: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    # Native kernels take centres in the accumulation dtype (float64 for a float64 video,
    # float32 otherwise); autograd casts the gradient back to the caller's dtype.
    acc = torch.float64 if video.dtype == torch.float64 else torch.float32
    return centers.to(acc).contiguous()


def _check_padding_mode(padding_mode) -> None:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {tuple(PADDING_MODES)}, got {padding_mode!r}")


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
    video and to the centres (first order; double backward on backend="reference").
    The contract on every edge case is in docs/ops.md.
    """
    # Every argument check runs here, once, before any backend (docs/ops.md).
    check_video(video)
    check_centers(centers, video.shape[0], video.device)
    size = normalize_size(size)
    _check_padding_mode(padding_mode)
    if _is_meta(video):
        # Shape only: the native op's fake kernel (which FlopCounterMode also counts).
        _requested_backend(backend)
        return torch.ops.cubecrop.crop_cubes(video, _kernel_centers(centers, video), size, PADDING_MODES[padding_mode])
    chosen = resolve_backend(backend, video.device)
    _warn_if_all_outside(video, centers, size, padding_mode)
    if chosen == "reference":
        return reference.crop_cubes(video, centers, size, padding_mode)
    kernel_centers = _kernel_centers(centers, video)
    if chosen == "triton":
        return _triton_module().crop_cubes(video, kernel_centers, size, PADDING_MODES[padding_mode])
    return torch.ops.cubecrop.crop_cubes(video, kernel_centers, size, PADDING_MODES[padding_mode])


def host_numbers(value, name: str, expected: str) -> list:
    """Host-given real numbers (one number, a sequence, or a CPU tensor) as a flat list of floats.

    Parsed in Python, not through a tensor, so torch.compile traces it as constants.
    bool and str are rejected (TypeError naming `name` and `expected`).
    """

    def bad() -> TypeError:
        return TypeError(f"{name} must be {expected}, got {value!r}")

    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise bad()
        return [float(v) for v in value.detach().reshape(-1)]
    if isinstance(value, (str, bytes, bool)):
        raise bad()
    items = [value] if isinstance(value, numbers.Real) else value
    try:
        items = list(items)
    except TypeError:
        raise bad() from None
    result = []
    for item in items:
        if isinstance(item, torch.Tensor) and item.numel() == 1 and not (item.is_complex() or item.dtype == torch.bool):
            item = item.item()
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise bad()
        result.append(float(item))
    return result


# Host-given constants (mean/std, strides) as device tensors, per (device, dtype, values):
# built once, not copied to the device on every call.
_CONSTANTS_CACHE: dict = {}
_CONSTANTS_CACHE_LIMIT = 64


def host_constant(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.tensor(values, dtype, device), cached per (device, dtype, values); never write to it."""
    values = tuple(values)
    if torch.compiler.is_compiling():  # a constant of the graph: no Python-side cache while tracing
        return torch.tensor(values, dtype=dtype, device=device)
    key = (str(torch.device(device)), dtype, values)
    tensor = _CONSTANTS_CACHE.get(key)
    if tensor is None:
        if len(_CONSTANTS_CACHE) >= _CONSTANTS_CACHE_LIMIT:
            _CONSTANTS_CACHE.clear()
        tensor = _CONSTANTS_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return tensor


def _statistic(value, name: str, channels: int, device: torch.device) -> Optional[torch.Tensor]:
    """mean/std as a contiguous (C,) float32 tensor on `device` (the kernels' contract).

    Host values (numbers, sequences, CPU tensors) are checked here and cached per
    (device, values); a tensor already on the video's accelerator is checked with
    torch._assert_async (no sync); a tensor on any other device is an error.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.device.type != "cpu":
        if value.device != device:
            raise ValueError(
                f"{name} is on {value.device} but the video is on {device}: pass it on {device}, on the CPU, or as numbers"
            )
        if value.dim() != 1 or value.numel() != channels:
            raise ValueError(f"{name} must have one value per channel ({channels}), got shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be real numbers, got a {value.dtype} tensor")
        tensor = value.detach().to(torch.float32).contiguous()
        assert_finite(tensor, name)
        if name == "std" and not _is_meta(tensor) and not torch.compiler.is_compiling():
            torch._assert_async((tensor > 0).all(), "std must be > 0 for every channel")
        return tensor
    nested = isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in value)
    if (isinstance(value, torch.Tensor) and value.dim() != 1) or nested:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else "nested"
        raise ValueError(f"{name} must have one value per channel ({channels}), got shape {shape}: {value!r}")
    values = host_numbers(value, name, f"{channels} numbers (one per channel)")
    if len(values) != channels:
        raise ValueError(f"{name} must have one value per channel ({channels}), got {len(values)}: {value!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite for every channel, got {values}")
    if name == "std" and not all(v > 0 for v in values):
        raise ValueError(f"std must be > 0 for every channel, got {values}")
    return host_constant(values, torch.float32, device)


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
    (x - mean) / std into the crop, computed in float32 (float64 when the video or
    out_dtype is float64). Returns (N, K, C, Dt, Dh, Dw) of out_dtype (default:
    float32 when normalising, else the video's dtype), with no autograd history.
    The contract on every edge case is in docs/ops.md.
    """
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {channels_last!r}")
    check_video(video, float_only=False, channels_last=channels_last)
    check_centers(centers, video.shape[0], video.device)
    size = normalize_size(size)
    channels = video.shape[4] if channels_last else video.shape[1]
    extents = video_extents(video, channels_last)
    if any(d > e for d, e in zip(size, extents)):
        raise ValueError(f"size {size} must fit inside the video's (T, H, W) = {extents} for crop_cubes_int")
    mean_t = _statistic(mean, "mean", channels, video.device)
    std_t = _statistic(std, "std", channels, video.device)
    normalised = mean_t is not None or std_t is not None
    if out_dtype is not None and not isinstance(out_dtype, torch.dtype):
        raise TypeError(f"out_dtype must be a torch.dtype or None, got {out_dtype!r}")
    if out_dtype is None:
        out_dtype = torch.float32 if normalised else video.dtype
    if normalised and not out_dtype.is_floating_point:
        raise TypeError(f"out_dtype must be floating when mean/std are given, got {out_dtype}")
    # No gradient (a test-time op): detached, so the output records no history on any backend.
    video = video.detach()
    # Starts are rounded in float64 by every backend so all of them pick the same voxel.
    kernel_centers = centers.detach().to(torch.float64).contiguous()
    if _is_meta(video):
        _requested_backend(backend)  # shape only, from the native op's fake kernel
        return torch.ops.cubecrop.crop_cubes_int(video, kernel_centers, size, channels_last, mean_t, std_t, out_dtype)
    chosen = resolve_backend(backend, video.device)
    if chosen == "reference":
        return reference.crop_cubes_int(
            video, kernel_centers, size, channels_last=channels_last, mean=mean_t, std=std_t, out_dtype=out_dtype
        )
    if chosen == "triton":
        return _triton_module().crop_cubes_int(video, kernel_centers, size, channels_last, mean_t, std_t, out_dtype)
    return torch.ops.cubecrop.crop_cubes_int(video, kernel_centers, size, channels_last, mean_t, std_t, out_dtype)
