"""crop_cubes_int (test-time integer crop) on every backend: slicing at round(c - D/2)
(half up) clamped inside the video, any dtype, channels-last input, fused mean/std."""
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cubecrop
from cubecrop import reference
from conftest import Backend, assert_matches
from op_inputs import LAYOUTS, make_centers, make_video

INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def sliced_cubes(video, centers, size):
    """Independent formulation: a Python loop of slices at start = clamp(floor(c - D/2 + 1/2), 0, E - D)."""
    n, c = video.shape[:2]
    cubes = torch.empty(n, centers.shape[1], c, *size, dtype=video.dtype)
    for b in range(n):
        for j in range(centers.shape[1]):
            start = []
            for axis, (d, extent) in enumerate(zip(size, video.shape[2:])):
                s = math.floor(float(centers[b, j, axis]) - d / 2 + 0.5)  # round half up
                start.append(min(max(s, 0), extent - d))
            (t, y, x), (dt, dh, dw) = start, size
            cubes[b, j] = video[b, :, t : t + dt, y : y + dh, x : x + dw].cpu()
    return cubes


def _video(backend: Backend, shape, dtype, layout="contiguous", seed=0):
    return make_video(shape, dtype, backend.device, layout, torch.Generator().manual_seed(seed))


def _centers(backend: Backend, n, k, extents, size, seed=0, placement="any"):
    gen = torch.Generator().manual_seed(seed + 1)
    return make_centers(n, k, extents, size, placement, torch.float64, backend.device, gen)


@pytest.mark.parametrize("dtype", INT_DTYPES + FLOAT_DTYPES, ids=str)
def test_equals_slicing(backend, dtype):
    (shape, k), size = backend.budget((2, 3, 5, 7, 6), 4), (2, 3, 4)
    video = _video(backend, shape, dtype)
    centers = _centers(backend, shape[0], k, shape[2:], size)  # inside, on borders and outside
    out = cubecrop.crop_cubes_int(video, centers, size, backend=backend.name)
    assert out.dtype == dtype and out.device == video.device
    torch.testing.assert_close(out.cpu(), sliced_cubes(video, centers, size), rtol=0, atol=0)


def test_rounds_half_up_and_clamps(backend):
    video = torch.arange(10, dtype=torch.int32, device=backend.device).view(1, 1, 1, 1, 10)
    # x size 2: start = round(c - 1) half up, clamped to [0, 8]; t and y size 1 at the only voxel.
    xs = [3.5, 3.4999999, 3.0, 2.5, 0.4, -0.5, -100.0, 9.0, 9.5, 1e9]
    starts = [3, 2, 2, 2, 0, 0, 0, 8, 8, 8]
    centers = torch.tensor([[[0.5, 0.5, x] for x in xs]], dtype=torch.float64, device=backend.device)
    out = cubecrop.crop_cubes_int(video, centers, (1, 1, 2), backend=backend.name)
    assert out[0, :, 0, 0, 0, 0].tolist() == starts


def test_matches_crop_cubes_at_the_rounded_centre(backend):
    # Cross-check with the differentiable op: at an integer start both are the same slice.
    (shape, k), size = backend.budget((2, 2, 6, 7, 8), 3), (3, 4, 5)
    video = _video(backend, shape, torch.float64, seed=2)
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=2)
    starts = cubecrop.integer_starts(centers, size, shape[2:]).double()
    rounded = starts + torch.tensor(size, dtype=torch.float64, device=backend.device) / 2
    torch.testing.assert_close(
        cubecrop.crop_cubes_int(video, centers, size, backend=backend.name),
        cubecrop.crop_cubes(video, rounded, size, backend=backend.name),
        rtol=0, atol=0,
    )


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=str)
def test_channels_last_input(backend, dtype):
    (shape, k), size = backend.budget((2, 3, 4, 6, 5), 3), (2, 3, 3)
    video = _video(backend, shape, dtype, seed=3)
    frames = video.permute(0, 2, 3, 4, 1).contiguous()  # (N, T, H, W, C): a decoder's layout
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=3)
    out = cubecrop.crop_cubes_int(frames, centers, size, channels_last=True, backend=backend.name)
    assert out.shape == (shape[0], k, shape[1], *size)
    torch.testing.assert_close(out.cpu(), sliced_cubes(video, centers, size), rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stats", ["mean_std", "mean", "std"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32], ids=str)
def test_fused_normalisation(backend, dtype, stats, channels_last):
    (shape, k), size = backend.budget((2, 3, 4, 6, 5), 3), (2, 3, 3)
    video = _video(backend, shape, dtype, seed=4)  # uint8: 0..255
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=4)
    mean = [123.7, 116.3, 103.5][: shape[1]] if stats != "std" else None
    std = [58.4, 57.1, 57.4][: shape[1]] if stats != "mean" else None
    source = video.permute(0, 2, 3, 4, 1).contiguous() if channels_last else video
    out = cubecrop.crop_cubes_int(source, centers, size, channels_last=channels_last, mean=mean, std=std,
                                  backend=backend.name)
    assert out.dtype == torch.float32
    # Converting, then normalising, in float64 (mean and std are float32 by contract).
    expected = sliced_cubes(video, centers, size).double()
    view = (1, 1, shape[1], 1, 1, 1)
    if mean is not None:
        expected = expected - torch.tensor(mean, dtype=torch.float32).double().view(view)
    if std is not None:
        expected = expected / torch.tensor(std, dtype=torch.float32).double().view(view)
    assert_matches(out, expected, 1e-6, "normalised cubes")


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float64, torch.int32], ids=str)
def test_out_dtype(backend, out_dtype):
    (shape, k), size = backend.budget((1, 3, 4, 5, 6), 2), (2, 2, 3)
    video = _video(backend, shape, torch.uint8, seed=5)
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=5)
    out = cubecrop.crop_cubes_int(video, centers, size, out_dtype=out_dtype, backend=backend.name)
    assert out.dtype == out_dtype
    torch.testing.assert_close(out.cpu(), sliced_cubes(video, centers, size).to(out_dtype), rtol=0, atol=0)
    if out_dtype.is_floating_point:
        mean, std = [1.0, 2.0, 3.0][: shape[1]], [2.0, 4.0, 8.0][: shape[1]]
        normalised = cubecrop.crop_cubes_int(video, centers, size, mean=mean, std=std, out_dtype=out_dtype,
                                             backend=backend.name)
        assert normalised.dtype == out_dtype
        view = (1, 1, shape[1], 1, 1, 1)
        expected = (sliced_cubes(video, centers, size).double() - torch.tensor(mean, dtype=torch.float64).view(view)
                    ) / torch.tensor(std, dtype=torch.float64).view(view)
        torch.testing.assert_close(normalised.cpu().double(), expected.to(out_dtype).double(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_non_contiguous_video(backend, layout):
    (shape, k), size = backend.budget((2, 3, 4, 6, 5), 3), (2, 3, 3)
    video = _video(backend, shape, torch.int16, layout, seed=6)
    assert not video.is_contiguous()
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=6)
    out = cubecrop.crop_cubes_int(video, centers, size, backend=backend.name)
    torch.testing.assert_close(out.cpu(), sliced_cubes(video, centers, size), rtol=0, atol=0)


def test_cube_as_large_as_the_video(backend):
    video = _video(backend, (1, 2, 3, 4, 5), torch.float32, seed=7)
    centers = torch.tensor([[[-50.0, 2.0, 99.0], [1.5, 2.0, 2.5]]], dtype=torch.float64, device=backend.device)
    out = cubecrop.crop_cubes_int(video, centers, (3, 4, 5), backend=backend.name)
    torch.testing.assert_close(out[0], video[0].expand(2, 2, 3, 4, 5), rtol=0, atol=0)


def test_no_gradient_and_no_cubes(backend):
    video = torch.randn(2, 2, 3, 4, 5, device=backend.device, requires_grad=True)
    centers = torch.rand(2, 0, 3, device=backend.device, requires_grad=True)
    out = cubecrop.crop_cubes_int(video, centers, (1, 2, 2), backend=backend.name)
    assert out.shape == (2, 0, 2, 1, 2, 2)
    out = cubecrop.crop_cubes_int(video, torch.rand(2, 1, 3, device=backend.device), (1, 2, 2), backend=backend.name)
    assert not out.requires_grad, "crop_cubes_int is a test-time op: it must not record autograd history"


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=str)
@pytest.mark.parametrize("normalise", [False, True])
def test_opcheck(native_backend, dtype, normalise):
    (shape, k), size = native_backend.budget((2, 3, 4, 5, 6), 2), (2, 3, 3)
    video = _video(native_backend, shape, dtype, seed=8)
    centers = _centers(native_backend, shape[0], k, shape[2:], size, seed=8)
    mean = torch.tensor([1.0, 2.0, 3.0][: shape[1]], device=video.device) if normalise else None
    std = torch.tensor([2.0, 4.0, 8.0][: shape[1]], device=video.device) if normalise else None
    out_dtype = torch.float32 if normalise else dtype
    op = native_backend.op("crop_cubes_int").default
    torch.library.opcheck(op, (video, centers, size, False, mean, std, out_dtype))
    frames = video.permute(0, 2, 3, 4, 1).contiguous()
    torch.library.opcheck(op, (frames, centers, size, True, mean, std, out_dtype))


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_compile_fullgraph(backend, compiler):
    torch._dynamo.reset()
    (shape, k), size = backend.budget((2, 3, 4, 5, 6), 2), (2, 3, 3)
    frames = _video(backend, shape, torch.uint8, seed=9).permute(0, 2, 3, 4, 1).contiguous()
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=9)

    def crop(frames, centers):
        return cubecrop.crop_cubes_int(frames, centers, size, channels_last=True, mean=[1.0, 2.0, 3.0][: shape[1]],
                                       std=[2.0, 4.0, 8.0][: shape[1]], backend=backend.name)

    compiled = torch.compile(crop, fullgraph=True, backend=compiler)
    torch.testing.assert_close(compiled(frames, centers), crop(frames, centers), rtol=0, atol=0)


def test_flop_counter(backend):
    (shape, k), size = backend.budget((2, 3, 4, 5, 6), 2), (2, 3, 3)
    video = _video(backend, shape, torch.uint8, seed=10)
    centers = _centers(backend, shape[0], k, shape[2:], size, seed=10)
    with FlopCounterMode(display=False) as counter:
        out = cubecrop.crop_cubes_int(video, centers, size, mean=[0.0] * shape[1], std=[1.0] * shape[1],
                                      backend=backend.name)
    assert counter.get_total_flops() == 2 * out.numel()  # one multiply-add per voxel
    with FlopCounterMode(display=False) as counter:
        cubecrop.crop_cubes_int(video, centers, size, backend=backend.name)
    assert counter.get_total_flops() == 0  # a copy
