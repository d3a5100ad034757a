"""Fast smoke test of the C++ CPU kernels against the float64 reference.

The full op suite lives in tests/test_ops_*.py; this file only guards the CPU
kernels' own paths (row fast path vs scratch path, border clamping, the fused
backward, determinism, the integer crop's lookup table) so a kernel edit fails
fast.
"""
import pytest
import torch

import cubecrop
from cubecrop import reference

ops = torch.ops.cubecrop


def _random_case(gen, n=2, k=3, c=2, extents=(5, 9, 11), size=(3, 4, 6)):
    video = torch.randn((n, c) + tuple(extents), generator=gen, dtype=torch.float64)
    # Centres from well outside to well inside, so cubes hit every border and miss entirely.
    lo = torch.tensor([-s for s in size], dtype=torch.float64)
    hi = torch.tensor([e + s for e, s in zip(extents, size)], dtype=torch.float64)
    centers = lo + (hi - lo) * torch.rand((n, k, 3), generator=gen, dtype=torch.float64)
    return video, centers, list(size)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("seed", range(4))
def test_forward_and_gradients_match_reference_float64(padding_mode, seed):
    gen = torch.Generator().manual_seed(seed)
    video, centers, size = _random_case(gen, size=(2 + seed % 2, 3 + seed, 5 + 3 * seed))
    video.requires_grad_(True)
    centers.requires_grad_(True)
    expected = reference.crop_cubes(video, centers, size, padding_mode)
    actual = cubecrop.crop_cubes(video, centers, size, padding_mode, backend="cpu")
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)

    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(expected, (video, centers), grad_out)
    got = torch.autograd.grad(actual, (video, centers), grad_out)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["channels_last_3d", "sliced", "expanded"])
def test_non_contiguous_video(layout):
    gen = torch.Generator().manual_seed(7)
    video, centers, size = _random_case(gen, extents=(4, 10, 12), size=(2, 5, 7))
    if layout == "channels_last_3d":
        strided = video.to(memory_format=torch.channels_last_3d)
    elif layout == "sliced":
        strided = torch.randn(video.shape[:4] + (2 * video.shape[4],), dtype=torch.float64, generator=gen)[..., ::2]
        video = strided.contiguous()
    else:
        strided = video[:, :1].expand(video.shape)
        video = strided.contiguous()
    assert not strided.is_contiguous()
    for mode in ("zeros", "border"):
        expected = reference.crop_cubes(video, centers, size, mode)
        torch.testing.assert_close(cubecrop.crop_cubes(strided, centers, size, mode, backend="cpu"), expected)
        grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
        grads = ops.crop_cubes_backward(grad_out, strided, centers, size, 1 if mode == "border" else 0, True, True)
        want = ops.crop_cubes_backward(grad_out, video, centers, size, 1 if mode == "border" else 0, True, True)
        torch.testing.assert_close(grads[0], want[0])
        torch.testing.assert_close(grads[1], want[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reduced_precision_accumulates_in_float(dtype):
    gen = torch.Generator().manual_seed(3)
    video64, centers64, size = _random_case(gen, extents=(6, 12, 40), size=(3, 5, 33))
    video = video64.to(dtype).requires_grad_(True)
    centers = centers64.float().requires_grad_(True)
    expected = reference.crop_cubes(video.detach().double(), centers.detach().double(), size, "border")
    actual = cubecrop.crop_cubes(video, centers, size, "border", backend="cpu")
    assert actual.dtype == dtype
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)

    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    ref_video = video.detach().double().requires_grad_(True)
    ref_centers = centers.detach().double().requires_grad_(True)
    want = torch.autograd.grad(reference.crop_cubes(ref_video, ref_centers, size, "border"), (ref_video, ref_centers), grad_out)
    got = torch.autograd.grad(actual, (video, centers), grad_out.to(dtype))
    assert got[0].dtype == dtype and got[1].dtype == torch.float32
    torch.testing.assert_close(got[0].double(), want[0], rtol=tol, atol=4 * tol)
    # The centre gradient sums thousands of products: compare relative to its scale.
    scale = want[1].abs().max().item()
    torch.testing.assert_close(got[1].double(), want[1], rtol=0, atol=20 * tol * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_interior_cubes_take_the_in_place_path_correctly(dtype):
    # Cubes with every tap inside read the video rows in place (no scratch copy):
    # check that path for each dtype, with a small width (the feature-trick shape).
    gen = torch.Generator().manual_seed(13)
    extents, size = (7, 9, 6), (4, 5, 4)
    video64 = torch.randn((3, 5) + extents, generator=gen, dtype=torch.float64)
    lo = torch.tensor([d / 2 + 0.01 for d in size], dtype=torch.float64)
    hi = torch.tensor([e - d / 2 - 1.01 for d, e in zip(size, extents)], dtype=torch.float64)
    centers64 = lo + (hi - lo) * torch.rand((3, 2, 3), generator=gen, dtype=torch.float64)
    video = video64.to(dtype).requires_grad_(True)
    centers = centers64.to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_(True)
    ref_video = video.detach().double().requires_grad_(True)
    ref_centers = centers.detach().double().requires_grad_(True)
    expected = reference.crop_cubes(ref_video, ref_centers, size)
    actual = cubecrop.crop_cubes(video, centers, size, backend="cpu")
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)
    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(expected, (ref_video, ref_centers), grad_out)
    got = torch.autograd.grad(actual, (video, centers), grad_out.to(dtype))
    torch.testing.assert_close(got[0].double(), want[0], rtol=tol, atol=4 * tol)
    scale = want[1].abs().max().item()
    torch.testing.assert_close(got[1].double(), want[1], rtol=0, atol=20 * tol * scale)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_small_cube_dense_backward_path(padding_mode, dtype):
    # With N * C >= 256 a parallel unit is a whole (n, c) sequence and small cubes inside
    # the video take the dense separable path (the deep-feature trick's regime); cubes
    # touching a border still take the row path. Both must match the reference.
    gen = torch.Generator().manual_seed(17)
    extents, size = (6, 7, 8), (3, 4, 5)
    video64 = torch.randn((2, 130) + extents, generator=gen, dtype=torch.float64)
    centers64 = torch.tensor(
        [[[2.7, 3.4, 4.1], [0.9, 2.2, 7.5], [3.5, 4.0, 3.2]], [[3.1, 2.6, 3.3], [5.2, 6.1, 1.4], [2.0, 3.0, 4.5]]],
        dtype=torch.float64,
    )
    video = video64.to(dtype).requires_grad_(True)
    centers = centers64.to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_(True)
    ref_video = video.detach().double().requires_grad_(True)
    ref_centers = centers.detach().double().requires_grad_(True)
    expected = reference.crop_cubes(ref_video, ref_centers, size, padding_mode)
    actual = cubecrop.crop_cubes(video, centers, size, padding_mode, backend="cpu")
    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(expected, (ref_video, ref_centers), grad_out)
    got = torch.autograd.grad(actual, (video, centers), grad_out.to(dtype))
    tol = 1e-12 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(got[0].double(), want[0], rtol=tol, atol=4 * tol)
    scale = want[1].abs().max().item()
    torch.testing.assert_close(got[1].double(), want[1], rtol=0, atol=20 * tol * scale)


def test_backward_is_deterministic_across_runs_and_thread_counts():
    gen = torch.Generator().manual_seed(11)
    video = torch.randn((2, 3, 8, 20, 24), generator=gen)
    centers = torch.tensor([[[4.3, 10.2, 12.7], [4.9, 9.1, 11.2]], [[0.2, 3.3, 22.9], [7.7, 18.5, 1.1]]])
    grad_out = torch.randn((2, 2, 3, 5, 9, 10), generator=gen)
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 2, 1, 2):
            torch.set_num_threads(n_threads)
            results.append(ops.crop_cubes_backward(grad_out, video, centers, [5, 9, 10], 1, True, True))
    finally:
        torch.set_num_threads(threads)
    for grad_video, grad_centers in results[1:]:
        assert torch.equal(grad_video, results[0][0])
        assert torch.equal(grad_centers, results[0][1])


def test_backward_returns_empty_for_gradients_not_requested():
    video = torch.randn(1, 1, 4, 6, 6)
    centers = torch.full((1, 1, 3), 3.2)
    grad_out = torch.randn(1, 1, 1, 2, 3, 3)
    grad_video, grad_centers = ops.crop_cubes_backward(grad_out, video, centers, [2, 3, 3], 0, False, True)
    assert grad_video.numel() == 0 and grad_centers.shape == (1, 1, 3)
    grad_video, grad_centers = ops.crop_cubes_backward(grad_out, video, centers, [2, 3, 3], 0, True, False)
    assert grad_video.shape == video.shape and grad_centers.numel() == 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_crop_cubes_int_matches_reference_exactly(dtype, channels_last):
    gen = torch.Generator().manual_seed(5)
    shape = (2, 6, 14, 15, 3) if channels_last else (2, 3, 6, 14, 15)
    video = torch.randint(0, 200, shape, generator=gen).to(dtype)
    centers = torch.rand((2, 4, 3), generator=gen, dtype=torch.float64) * torch.tensor([8.0, 18.0, 19.0]) - 2
    centers[0, 0] = torch.tensor([1.5, 3.0, 2.5])  # exact .5 starts round up
    size = (3, 6, 5)
    mean = torch.tensor([120.0, 110.5, 99.0])
    std = torch.tensor([58.0, 57.25, 60.0])
    for kwargs in ({}, {"mean": mean, "std": std}, {"std": std, "out_dtype": torch.float64}, {"out_dtype": torch.float32}):
        want = reference.crop_cubes_int(video, centers, size, channels_last=channels_last, **kwargs)
        got = cubecrop.crop_cubes_int(video, centers, size, channels_last=channels_last, backend="cpu", **kwargs)
        assert got.dtype == want.dtype and got.is_contiguous()
        assert torch.equal(got, want), kwargs


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.float64])
def test_crop_cubes_int_normalises_in_float32_or_float64(out_dtype):
    """csrc/ops.cpp: (x - mean) / std with true division in float32 (float64 for a float64
    output), rounded once. Fractional float32 values make x - mean inexact, so computing in
    float64 would round differently for some of them."""
    gen = torch.Generator().manual_seed(3)
    video = (torch.randn((1, 3, 2, 8, 64), generator=gen) * 300).to(torch.float32)
    centers = torch.tensor([[[1.0, 4.0, 32.0]]], dtype=torch.float64)
    mean, std = torch.tensor([0.1, 116.28, -3.3]), torch.tensor([58.395, 0.7, 3.0])
    got = ops.crop_cubes_int(video, centers, [2, 8, 64], False, mean, std, out_dtype)
    acc = torch.float64 if out_dtype == torch.float64 else torch.float32
    view = (1, 1, 3, 1, 1, 1)
    want = ((video.to(acc).unsqueeze(1) - mean.to(acc).view(view)) / std.to(acc).view(view)).to(out_dtype)
    assert torch.equal(got, want)


def test_edge_cases_of_the_op_contract():
    """K = 0, N = 0, C = 0: empty outputs; T, H or W == 0: one error naming the rule, every op."""
    video = torch.randn(2, 3, 4, 6, 6)
    empty_k = torch.empty(2, 0, 3)
    assert ops.crop_cubes(video, empty_k, [2, 2, 2], 0).shape == (2, 0, 3, 2, 2, 2)
    assert ops.crop_cubes(video[:, :0], torch.full((2, 1, 3), 3.0), [2, 2, 2], 1).shape == (2, 1, 0, 2, 2, 2)
    assert ops.crop_cubes_int(video, empty_k.double(), [2, 2, 2], False, None, None, torch.float32).numel() == 0
    gv, gc = ops.crop_cubes_backward(torch.empty(2, 0, 3, 2, 2, 2), video, empty_k, [2, 2, 2], 0, True, True)
    assert torch.equal(gv, torch.zeros_like(video)) and gc.shape == (2, 0, 3)
    flat = torch.randn(1, 1, 4, 0, 6)
    centers = torch.full((1, 1, 3), 1.0)
    for mode in (0, 1):
        with pytest.raises(RuntimeError, match=r"video must have T, H, W >= 1, got shape \[1, 1, 4, 0, 6\]"):
            ops.crop_cubes(flat, centers, [1, 1, 1], mode)
    with pytest.raises(RuntimeError, match="video must have T, H, W >= 1"):
        ops.crop_cubes_backward(torch.randn(1, 1, 1, 1, 1, 1), flat, centers, [1, 1, 1], 0, True, True)
    with pytest.raises(RuntimeError, match="video must have T, H, W >= 1"):
        ops.crop_cubes_int(flat, centers.double(), [1, 1, 1], False, None, None, torch.float32)


def test_bad_arguments_name_the_argument():
    video = torch.randn(1, 1, 4, 6, 6)
    centers = torch.full((1, 1, 3), 3.0)
    with pytest.raises(RuntimeError, match="centers"):
        ops.crop_cubes(video, centers.double(), [2, 2, 2], 0)
    with pytest.raises(RuntimeError, match="padding_mode"):
        ops.crop_cubes(video, centers, [2, 2, 2], 2)
    with pytest.raises(RuntimeError, match="size"):
        ops.crop_cubes(video, centers, [2, 0, 2], 0)
    with pytest.raises(RuntimeError, match="video"):
        ops.crop_cubes(video[0], centers, [2, 2, 2], 0)
    with pytest.raises(RuntimeError, match="grad_out"):
        ops.crop_cubes_backward(torch.randn(3), video, centers, [2, 2, 2], 0, True, True)
    with pytest.raises(RuntimeError, match="centers"):
        ops.crop_cubes_int(video, centers, [2, 2, 2], False, None, None, torch.float32)
    with pytest.raises(RuntimeError, match="size"):
        ops.crop_cubes_int(video, centers.double(), [5, 2, 2], False, None, None, torch.float32)
    with pytest.raises(RuntimeError, match="mean"):
        ops.crop_cubes_int(video, centers.double(), [2, 2, 2], False, torch.zeros(2), None, torch.float32)


def test_benchmark_baselines_compute_the_same_crop():
    # bench_ops.py compares against grid_sample and slicing: they must do the same crop.
    from benchmarks import workloads as wl

    w = wl.tsm_workload(quick=True)
    ours = cubecrop.crop_cubes(w.video, w.centers, w.size, backend="cpu")
    grid = wl.cube_grid(w.centers, w.size, w.video.shape[2:])
    theirs = wl.grid_sample_as_cubes(wl.grid_sample_crop(w.video, grid), w.centers.shape[1])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    f = wl.feature_workload(quick=True)
    ours = cubecrop.feature_offset_crop(f.features, f.centers, f.origin, f.stride, backend="cpu")
    grid = wl.cube_grid(f.offsets, f.size, f.features.shape[2:])
    torch.testing.assert_close(ours, wl.grid_sample_crop(f.features, grid), rtol=1e-5, atol=1e-5)
    i = wl.int_workload(quick=True)
    starts = wl.integer_starts(i.centers, i.size, i.video.shape[1:4])
    ours = cubecrop.crop_cubes_int(i.video, i.centers, i.size, channels_last=True, mean=i.mean, std=i.std, backend="cpu")
    torch.testing.assert_close(ours, wl.convert_normalise_slice(i.video, starts, i.size, i.mean, i.std))
