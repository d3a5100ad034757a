"""Bad input gets a clear exception naming the argument, never a crash.

Public functions raise ValueError/TypeError before any kernel runs; the ops
called directly (torch.ops.cubecrop.*) raise from their own checks (TORCH_CHECK /
torch._check: RuntimeError, or TypeError/ValueError), never NotImplementedError,
a segfault or garbage.
"""
import math

import pytest
import torch

import cubecrop
from cubecrop._extension import has_kernel


def _inputs(device, dtype=torch.float32):
    video = torch.randn(2, 3, 4, 5, 6, dtype=dtype, device=device)
    centers = torch.full((2, 2, 3), 2.5, dtype=torch.float32, device=device)
    return video, centers


def _other_device(device):
    # A device the centres can be on that differs from the video's: meta always exists.
    return "cpu" if torch.device(device).type == "cuda" else "meta"


def _crop_cubes_cases(device):
    v, c = _inputs(device)
    nan, inf = c.clone(), c.clone()
    nan[1, 0, 2] = math.nan
    inf[0, 1, 0] = -math.inf
    return {
        "video not a tensor": (lambda: cubecrop.crop_cubes(v.tolist(), c, 2), TypeError, "video"),
        "video 4-D": (lambda: cubecrop.crop_cubes(v[0], c, 2), ValueError, "video"),
        "video 6-D": (lambda: cubecrop.crop_cubes(v[None], c, 2), ValueError, "video"),
        "video integer": (lambda: cubecrop.crop_cubes(v.to(torch.int32), c, 2), TypeError, "video"),
        "video uint8": (lambda: cubecrop.crop_cubes(v.to(torch.uint8), c, 2), TypeError, "crop_cubes_int"),
        "video bool": (lambda: cubecrop.crop_cubes(v > 0, c, 2), TypeError, "video"),
        "centers not a tensor": (lambda: cubecrop.crop_cubes(v, c.tolist(), 2), TypeError, "centers"),
        "centers (N, K, 2)": (lambda: cubecrop.crop_cubes(v, c[..., :2], 2), ValueError, "centers"),
        "centers (N, 3)": (lambda: cubecrop.crop_cubes(v, c[:, 0], 2), ValueError, "centers"),
        "centers wrong N": (lambda: cubecrop.crop_cubes(v, c[:1], 2), ValueError, "centers"),
        "centers integer": (lambda: cubecrop.crop_cubes(v, c.long(), 2), TypeError, "centers"),
        "centers NaN": (lambda: cubecrop.crop_cubes(v, nan, 2), ValueError, "centers"),
        "centers inf": (lambda: cubecrop.crop_cubes(v, inf, 2), ValueError, "centers"),
        "centers other device": (lambda: cubecrop.crop_cubes(v, c.to(_other_device(device)), 2), ValueError, "centers"),
        "size 0": (lambda: cubecrop.crop_cubes(v, c, 0), ValueError, "size"),
        "size negative": (lambda: cubecrop.crop_cubes(v, c, (2, -1, 2)), ValueError, "size"),
        "size 2 values": (lambda: cubecrop.crop_cubes(v, c, (2, 2)), ValueError, "size"),
        "size 4 values": (lambda: cubecrop.crop_cubes(v, c, (2, 2, 2, 2)), ValueError, "size"),
        "size not numbers": (lambda: cubecrop.crop_cubes(v, c, None), TypeError, "size"),
        "padding_mode unknown": (lambda: cubecrop.crop_cubes(v, c, 2, "reflection"), ValueError, "padding_mode"),
        "backend unknown": (lambda: cubecrop.crop_cubes(v, c, 2, backend="opencl"), ValueError, "backend"),
    }


def _crop_cubes_int_cases(device):
    v, c = _inputs(device)
    u8 = (v.abs() * 50).to(torch.uint8)
    frames = u8.permute(0, 2, 3, 4, 1)
    nan = c.clone()
    nan[0, 0, 0] = math.nan
    return {
        "video 4-D": (lambda: cubecrop.crop_cubes_int(u8[0], c, 2), ValueError, "video"),
        "video complex": (lambda: cubecrop.crop_cubes_int(v.to(torch.complex64), c, 2), TypeError, "video"),
        "video bool": (lambda: cubecrop.crop_cubes_int(u8 > 3, c, 2), TypeError, "video"),
        "centers integer": (lambda: cubecrop.crop_cubes_int(u8, c.long(), 2), TypeError, "centers"),
        "centers NaN": (lambda: cubecrop.crop_cubes_int(u8, nan, 2), ValueError, "centers"),
        "centers wrong shape": (lambda: cubecrop.crop_cubes_int(u8, c[..., :2], 2), ValueError, "centers"),
        "size larger than the video": (lambda: cubecrop.crop_cubes_int(u8, c, (2, 6, 2)), ValueError, "size"),
        "size 0": (lambda: cubecrop.crop_cubes_int(u8, c, (0, 2, 2)), ValueError, "size"),
        "size larger, channels last": (
            lambda: cubecrop.crop_cubes_int(frames, c, (5, 2, 2), channels_last=True), ValueError, "size"),
        "mean wrong length": (lambda: cubecrop.crop_cubes_int(u8, c, 2, mean=[1.0, 2.0]), ValueError, "mean"),
        "mean 2-D": (lambda: cubecrop.crop_cubes_int(u8, c, 2, mean=[[1.0, 2.0, 3.0]]), ValueError, "mean"),
        "mean length is C, not the last dim": (
            lambda: cubecrop.crop_cubes_int(u8, c, 2, mean=[1.0] * 6), ValueError, "mean"),
        "std wrong length": (lambda: cubecrop.crop_cubes_int(u8, c, 2, std=[1.0] * 4), ValueError, "std"),
        "std zero": (lambda: cubecrop.crop_cubes_int(u8, c, 2, std=[1.0, 0.0, 1.0]), ValueError, "std"),
        "out_dtype integer with mean": (
            lambda: cubecrop.crop_cubes_int(u8, c, 2, mean=[1.0] * 3, out_dtype=torch.int32), TypeError, "out_dtype"),
        "backend unknown": (lambda: cubecrop.crop_cubes_int(u8, c, 2, backend="numpy"), ValueError, "backend"),
    }


def _feature_cases(device):
    features = torch.randn(2, 4, 3, 3, 3, device=device)
    centers = torch.full((2, 3), 5.0, device=device)
    origin = torch.zeros(2, 3, device=device)
    crop = cubecrop.feature_offset_crop
    window = cubecrop.enlarged_window
    return {
        "features 4-D": (lambda: crop(features[0], centers, origin, 4), ValueError, "features"),
        "features not a tensor": (lambda: crop(features.tolist(), centers, origin, 4), ValueError, "features"),
        "features one cell": (lambda: crop(features[:, :, :1], centers, origin, 4), ValueError, "features"),
        "centers (M, 2)": (lambda: crop(features, centers[:, :2], origin, 4), ValueError, "centers"),
        "centers wrong M": (lambda: crop(features, centers[:1], origin, 4), ValueError, "centers"),
        "origin (M,)": (lambda: crop(features, centers, origin[:, 0], 4), ValueError, "origin"),
        "origin other device": (lambda: crop(features, centers, origin.to(_other_device(device)), 4), ValueError, "origin"),
        "stride 0": (lambda: crop(features, centers, origin, 0), ValueError, "stride"),
        "stride negative": (lambda: crop(features, centers, origin, (1, -4, 4)), ValueError, "stride"),
        "stride 2 values": (lambda: crop(features, centers, origin, (4, 4)), ValueError, "stride"),
        "window: cube not a multiple of stride": (
            lambda: window(centers, (2, 6, 8), (1, 4, 4), (8, 32, 32)), ValueError, "cube_size"),
        "window: does not fit the video": (
            lambda: window(centers, (2, 32, 8), (1, 4, 4), (8, 32, 32)), ValueError, "video"),
        "window: video_size 2 values": (lambda: window(centers, (2, 8, 8), (1, 4, 4), (32, 32)), ValueError, "video_size"),
        "window: centers (M, K, 3)": (
            lambda: window(centers[None], (2, 8, 8), (1, 4, 4), (8, 32, 32)), ValueError, "centers"),
        "window: stride 0": (lambda: window(centers, (2, 8, 8), (1, 0, 4), (8, 32, 32)), ValueError, "stride"),
    }


def _run_case(case):
    call, error, name = case
    with pytest.raises(error, match=name):
        call()


@pytest.mark.parametrize("case", list(_crop_cubes_cases("cpu")))
def test_crop_cubes_rejects(backend, case, monkeypatch):
    monkeypatch.setenv("CUBECROP_BACKEND", backend.name)  # bad input is caught whichever backend would run
    _run_case(_crop_cubes_cases(backend.device)[case])


@pytest.mark.parametrize("case", list(_crop_cubes_int_cases("cpu")))
def test_crop_cubes_int_rejects(backend, case, monkeypatch):
    monkeypatch.setenv("CUBECROP_BACKEND", backend.name)
    _run_case(_crop_cubes_int_cases(backend.device)[case])


@pytest.mark.parametrize("case", list(_feature_cases("cpu")))
def test_feature_functions_reject(backend, case, monkeypatch):
    monkeypatch.setenv("CUBECROP_BACKEND", backend.name)
    _run_case(_feature_cases(backend.device)[case])


def test_backend_that_cannot_run_here():
    video, centers = _inputs("cpu")
    if "cuda" not in cubecrop.available_backends("cpu"):
        with pytest.raises(ValueError, match="backend"):
            cubecrop.crop_cubes(video, centers, 2, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        cubecrop.resolve_backend("tpu", torch.device("cpu"))


def test_environment_backend_is_validated(monkeypatch):
    monkeypatch.setenv("CUBECROP_BACKEND", "fortran")
    video, centers = _inputs("cpu")
    with pytest.raises(ValueError, match="backend"):
        cubecrop.crop_cubes(video, centers, 2)


def test_cuda_video_with_cpu_centres():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    video, centers = _inputs("cuda")
    with pytest.raises(ValueError, match="centers"):
        cubecrop.crop_cubes(video, centers.cpu(), 2, backend="reference")


# --- the ops called directly ------------------------------------------------------------


def _dispatch_key(device):
    return "CUDA" if torch.device(device).type == "cuda" else "CPU"


def _direct_cases(device, dtype=torch.float32):
    video = torch.randn(2, 3, 4, 5, 6, dtype=dtype, device=device)
    centers = torch.full((2, 2, 3), 2.5, dtype=torch.float32, device=device)
    grad_out = torch.randn(2, 2, 3, 2, 2, 2, device=device)
    u8 = (video.abs() * 50).to(torch.uint8)
    c64 = centers.double()
    mean = torch.ones(3, device=device)
    return {
        "crop_cubes": {
            "video 4-D": ((video[0], centers, [2, 2, 2], 0), "video"),
            "video integer": ((video.int(), centers, [2, 2, 2], 0), "video"),
            "centers (N, K, 2)": ((video, centers[..., :2].contiguous(), [2, 2, 2], 0), "centers"),
            "centers wrong N": ((video, centers[:1], [2, 2, 2], 0), "centers"),
            "centers integer": ((video, centers.int(), [2, 2, 2], 0), "centers"),
            "size 0": ((video, centers, [2, 0, 2], 0), "size"),
            "padding_mode 7": ((video, centers, [2, 2, 2], 7), "padding_mode"),
        },
        "crop_cubes_backward": {
            "grad_out wrong shape": ((grad_out[:, :1], video, centers, [2, 2, 2], 0, True, True), "grad_out"),
            "grad_out wrong size": ((grad_out, video, centers, [2, 3, 2], 0, True, True), "grad_out"),
            "centers wrong N": ((grad_out, video, centers[:1], [2, 2, 2], 0, True, True), "centers"),
        },
        "crop_cubes_int": {
            "video 4-D": ((u8[0], c64, [2, 2, 2], False, None, None, torch.uint8), "video"),
            "size larger than the video": ((u8, c64, [2, 6, 2], False, None, None, torch.uint8), "size"),
            "size 0": ((u8, c64, [0, 2, 2], False, None, None, torch.uint8), "size"),
            "mean wrong length": ((u8, c64, [2, 2, 2], False, mean[:2], None, torch.float32), "mean"),
            "centers wrong shape": ((u8, c64[..., :2].contiguous(), [2, 2, 2], False, None, None, torch.uint8), "centers"),
        },
    }


def _direct_params():
    params = []
    for op, cases in _direct_cases("cpu").items():
        params += [pytest.param(op, case, id=f"{op}-{case}") for case in cases]
    return params


@pytest.mark.parametrize("op_name,case", _direct_params())
def test_ops_called_directly_reject(native_backend, op_name, case):
    if native_backend.name in ("cpu", "cuda") and not has_kernel(op_name, _dispatch_key(native_backend.device)):
        pytest.skip(f"no {native_backend.name} kernel for cubecrop::{op_name} in this build yet")
    args, name = _direct_cases(native_backend.device)[op_name][case]
    op = native_backend.op(op_name)
    # TORCH_CHECK raises RuntimeError (TORCH_CHECK_TYPE / _VALUE: TypeError / ValueError).
    with pytest.raises((RuntimeError, TypeError, ValueError), match=f"(?i){name}") as info:
        op(*args)
    assert not isinstance(info.value, NotImplementedError), "a missing kernel is not an argument check"
