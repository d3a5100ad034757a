"""The deep-feature offset-gradient trick (docs/design.md, "Deep-feature trick"; paper Eq. 5-6).

Training runs the local network on an *enlarged* integer crop (no gradient)
that starts at pixel `origin` and is one feature cell larger per axis. Its
feature map e' has cells j covering pixels [origin + j*s, origin + (j+1)*s), so
a cube centre c (pixels, with gradient) sits at feature coordinate
(c - origin) / s, and

    e = crop_cubes(e', (c - origin) / s, size=(Tf, Hf, Wf))

interpolates the features at the true offset; the gradient to c comes from
differences of semantic features, never of pixels.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import torch

from cubecrop.geometry import integer_starts
from cubecrop.ops import _is_meta, assert_finite, crop_cubes, crop_cubes_int, host_constant, host_numbers, normalize_size

Number3 = Union[float, Sequence[float], torch.Tensor]


def _three_numbers(value: Number3, name: str, device: torch.device) -> torch.Tensor:
    """One or three finite numbers > 0 (t, y, x) as a float64 (3,) tensor on `device`."""
    if isinstance(value, torch.Tensor) and value.device.type != "cpu":
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but the features are on {device}")
        tensor = value.detach().to(torch.float64).flatten()
        if tensor.numel() not in (1, 3):
            raise ValueError(f"{name} must be one number or 3 numbers (t, y, x), got shape {tuple(value.shape)}")
        # No host sync: checked on the device, asynchronously.
        assert_finite(tensor, name, "finite and > 0")
        if not _is_meta(tensor) and not torch.compiler.is_compiling():
            torch._assert_async((tensor > 0).all(), f"{name} must be finite and > 0")
        return tensor.expand(3) if tensor.numel() == 1 else tensor
    if isinstance(value, torch.Tensor) and torch.compiler.is_compiling():
        # A CPU tensor's values are data while tracing: converted, not checked.
        tensor = value.detach().to(torch.float64).reshape(-1).to(device)
        return tensor.expand(3) if tensor.numel() == 1 else tensor
    values = host_numbers(value, name, "one number or 3 numbers (t, y, x)")
    if len(values) not in (1, 3):
        raise ValueError(f"{name} must be one number or 3 numbers (t, y, x), got {len(values)}: {value!r}")
    values = values * 3 if len(values) == 1 else values
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be finite and > 0 on every axis (t, y, x), got {values}")
    return host_constant(values, torch.float64, device)


def feature_offset_crop(
    features: torch.Tensor,
    centers: torch.Tensor,
    origin: torch.Tensor,
    stride: Number3,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Cut the cube's features out of an enlarged crop's feature map.

    features (M, C, Tf+1, Hf+1, Wf+1): fL's features of M enlarged crops.
    centers (M, 3): cube centres (t, y, x) in input frames/pixels (gradient flows).
    origin (M, 3): first input frame/pixel of each enlarged crop (no gradient).
    stride: input pixels per feature cell, 3 numbers (t, y, x) or one.
    Returns (M, C, Tf, Hf, Wf); gradients to features and centers.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 5:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be a 5-D tensor (M, C, Tf+1, Hf+1, Wf+1), got {shape}")
    m = features.shape[0]
    for name, value in (("centers", centers), ("origin", origin)):
        if not isinstance(value, torch.Tensor) or value.shape != (m, 3):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must have shape (M={m}, 3), got {shape}")
        if value.device != features.device:
            raise ValueError(f"{name} is on {value.device} but features are on {features.device}")
        if (name == "centers" and not value.is_floating_point()) or value.is_complex() or value.dtype == torch.bool:
            expected = "floating-point (the gradient flows to it)" if name == "centers" else "real (integer or float)"
            raise TypeError(f"{name} must be a {expected} tensor, got {value.dtype}")
        assert_finite(value, name)
    if any(extent < 2 for extent in features.shape[2:]):
        raise ValueError(
            f"features must be one cell larger than the cube on every axis (each >= 2), got {tuple(features.shape[2:])}"
        )
    stride_t = _three_numbers(stride, "stride", features.device)
    cube_cells = [extent - 1 for extent in features.shape[2:]]
    compute_dtype = torch.float64 if features.dtype == torch.float64 or centers.dtype == torch.float64 else torch.float32
    offsets = (centers.to(compute_dtype) - origin.detach().to(compute_dtype)) / stride_t.to(compute_dtype)
    return crop_cubes(features, offsets.unsqueeze(1), cube_cells, "zeros", backend).squeeze(1)


class EnlargedWindow(NamedTuple):
    """An integer crop one feature cell larger than the cube on every axis."""

    origin: torch.Tensor  # (M, 3) long: first frame/pixel (t, y, x)
    size: tuple  # (Dt + st, Dh + sy, Dw + sx)
    centers: torch.Tensor  # (M, 3) float64: centres that make crop_cubes_int start exactly at origin


def enlarged_window(
    centers: torch.Tensor,
    cube_size: Union[int, Sequence[int]],
    stride: Union[int, Sequence[int]],
    video_size: Sequence[int],
) -> EnlargedWindow:
    """The enlarged crop around each cube for the deep-feature trick.

    Per axis the window is D + s long and starts at round(c - (D + s)/2) (half
    up; with s = 1 this is floor(c - D/2)), clamped to the video. For a centre
    inside [D/2, E - D/2] the feature offset (c - origin)/s - D/(2s) then lies
    in [0, 1] cells, so the cube never reads the zero padding.
    """
    cube = normalize_size(cube_size, "cube_size")
    strides = normalize_size(stride, "stride")
    if isinstance(video_size, (int, torch.SymInt)):
        raise ValueError(f"video_size must be 3 ints (T, H, W), got the single value {video_size!r}")
    extents = normalize_size(video_size, "video_size", axes="(T, H, W)")
    if not isinstance(centers, torch.Tensor) or centers.dim() != 2 or centers.shape[1] != 3:
        shape = tuple(centers.shape) if isinstance(centers, torch.Tensor) else type(centers).__name__
        raise ValueError(f"centers must have shape (M, 3) as (t, y, x), got {shape}")
    if centers.is_complex() or centers.dtype == torch.bool:
        raise TypeError(f"centers must be real numbers, got {centers.dtype}")
    # A NaN centre would turn into origin -2**63 when rounded to an integer.
    assert_finite(centers, "centers")
    for axis, (d, s, e) in enumerate(zip(cube, strides, extents)):
        if d % s:
            raise ValueError(f"cube_size[{axis}]={d} must be a multiple of stride[{axis}]={s}")
        if d + s > e:
            raise ValueError(
                f"the enlarged window ({d}+{s}) does not fit in the video's extent {e} along axis {axis}: "
                "use a smaller cube or stride"
            )
    window_size = tuple(d + s for d, s in zip(cube, strides))  # plain ints: no tensor -> list under torch.compile
    origin = integer_starts(centers, window_size, extents)
    window = torch.tensor(window_size, dtype=torch.float64, device=centers.device)
    return EnlargedWindow(origin, window_size, origin.double() + window / 2)


def crop_enlarged(
    video: torch.Tensor, window: EnlargedWindow, *, channels_last: bool = False, mean=None, std=None, backend=None
) -> torch.Tensor:
    """Integer crop of the enlarged windows: video (N, ...) with M = N * K windows -> (N, K, C, *window.size)."""
    if not isinstance(window, EnlargedWindow):
        raise TypeError(f"window must be an EnlargedWindow (from enlarged_window), got {type(window).__name__}")
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a 5-D tensor, got {shape}")
    n = video.shape[0]
    m = window.centers.shape[0]
    if (n == 0) != (m == 0) or (n and m % n):
        raise ValueError(
            f"window holds M={m} windows, which is not K windows for each of the video's N={n} clips: "
            "build the window from this batch's centres (M = N * K)"
        )
    return crop_cubes_int(
        video,
        window.centers.view(n, m // n if n else 0, 3),
        window.size,
        channels_last=channels_last,
        mean=mean,
        std=std,
        backend=backend,
    )
