"""The CUDA kernels' index math, run on the CPU.

csrc/cuda/cube_items.h holds every per-item body of the CUDA kernels as plain
__host__ __device__ functions; csrc/cuda/testing/host_emulation.cc drives them
with the kernels' own per-cube setup and item decomposition (packet decisions
taken from the real pointers and strides). This file builds that harness with
the host C++ compiler (about a second, no torch headers) and compares it with
the float64 reference, so a CPU-only CI checks the indexing of kernels it
cannot run, and its path counters show which kernel path each input took.
Thread scheduling, shared memory and the block reduction are what it does not
cover: tests/test_cuda_ops.py checks those on a GPU.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
import torch

from cubecrop import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "csrc", "cuda", "testing", "host_emulation.cc")
COMPILER = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("no host C++ compiler (c++/g++/clang++) to build the CUDA-kernel emulation")
    library = str(tmp_path_factory.mktemp("cuda_emulation") / "libcubecrop_emu.so")
    command = [COMPILER, "-O1", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
               "-I", os.path.join(ROOT, "csrc"), "-o", library, SOURCE]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"building the emulation failed:\n{result.stderr}"
    return ctypes.CDLL(library)


def _i64(values):
    values = [int(v) for v in values]
    return (ctypes.c_int64 * len(values))(*values)


def _int(value):
    # ctypes passes a bare Python int as a 32-bit C int; the harness takes int64_t.
    return ctypes.c_int64(int(value))


def _ptr(tensor):
    return ctypes.c_void_p(tensor.data_ptr())


def _suffix(dtype):
    return {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}[dtype]


def _acc_dtype(dtype):
    """The kernels' accumulation type (acc_type): float64 for float64 videos, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


PATHS = ("interior+packets", "interior", "general")  # cube_items.h RowPath, in order


def emu_forward(emu, video, centers, size, mode, use_int32=True):
    """The forward kernel's output and how many cubes took each of PATHS."""
    n, c = video.shape[:2]
    k = centers.shape[1]
    out = torch.full((n, k, c, *size), float("nan"), dtype=video.dtype)
    fn = getattr(emu, f"emu_crop_forward_{_suffix(video.dtype)}")
    centers = centers.to(video.dtype).contiguous()
    paths = _i64([0, 0, 0])
    fn(_ptr(video), _i64(video.shape), _i64(video.stride()), _ptr(centers), _int(k), _i64(size), _int(mode),
       ctypes.c_int(int(use_int32)), _ptr(out), paths)
    return out, dict(zip(PATHS, paths))


def emu_backward(emu, grad_out, video, centers, size, mode, gather, use_int32=True, paths=None):
    """Both gradients; the video gradient from the window kernel's atomics or the gather.
    fp16/bf16 videos: centres and their gradient in float32, the video gradient in the video's
    dtype (the atomics round every add to it, the gather rounds once).
    paths (6 int64, added to): window cubes interior / general, gather batch items all-interior / general,
    window voxels whose video gradient went out in an unmasked 4-voxel chunk (add4) / one by one (add)."""
    n, c = video.shape[:2]
    k = centers.shape[1]
    acc = _acc_dtype(video.dtype)
    grad_video = torch.full(video.shape, float("nan"), dtype=video.dtype)
    grad_centers = torch.full((n, k, 3), float("nan"), dtype=acc)
    fn = getattr(emu, f"emu_crop_backward_{_suffix(video.dtype)}")
    centers = centers.to(acc).contiguous()
    grad_out = grad_out.contiguous()
    fn(_ptr(grad_out), _ptr(video), _i64(video.shape), _i64(video.stride()), _ptr(centers), _int(k), _i64(size), _int(mode),
       ctypes.c_int(int(gather)), ctypes.c_int(int(use_int32)), _ptr(grad_video), _ptr(grad_centers),
       paths if paths is not None else _i64([0] * 6))
    return grad_video, grad_centers


def reference_grads(video, centers, size, mode, grad_out):
    v = video.detach().double().requires_grad_(True)
    c = centers.detach().double().requires_grad_(True)
    out = reference.crop_cubes(v, c, size, mode)
    out.backward(grad_out.double())
    return out.detach(), v.grad, c.grad


def random_centers(n, k, extents, size, generator, spread=0.35):
    """Centres inside, across the border and far outside the video (the clamp region)."""
    ext = torch.tensor(extents, dtype=torch.float64)
    d = torch.tensor(size, dtype=torch.float64)
    lo, hi = -d * spread - 1, ext + d * spread + 1
    centers = lo + (hi - lo) * torch.rand(n, k, 3, generator=generator, dtype=torch.float64)
    if k >= 3:
        centers[0, 1] = torch.tensor([-50.0, 3.3, 1e4])  # far outside: start clamped, centre gradient 0
        centers[-1, 2] = centers[-1, 0] + 0.25  # overlaps cube 0
    return centers


MODES = {"zeros": 0, "border": 1}

# (N, C, T, H, W), size: odd widths, widths a multiple of the packet, tiny extents, Dt = 1.
CASES = [
    ((2, 3, 5, 9, 11), (2, 4, 5)),
    ((1, 2, 4, 8, 16), (3, 4, 8)),
    ((2, 1, 3, 6, 7), (1, 3, 4)),
    ((1, 2, 2, 3, 2), (3, 4, 3)),
]


def _layouts(video):
    """Contiguous, channels-last-like permuted, and storage offset 1 (misaligned)."""
    yield "contiguous", video
    yield "permuted", video.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    storage = torch.empty(video.numel() + 1, dtype=video.dtype)
    shifted = storage[1:].view(video.shape)
    shifted.copy_(video)
    yield "offset1", shifted


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["zeros", "border"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_matches_reference(emu, dtype, mode, case):
    shape, size = CASES[case]
    g = torch.Generator().manual_seed(case)
    video = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    centers = random_centers(shape[0], 4, shape[2:], size, g).to(dtype)
    expected = reference.crop_cubes(video.double(), centers.double(), size, mode)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for name, layout in _layouts(video):
        for use_int32 in (True, False):
            out, _ = emu_forward(emu, layout, centers, size, MODES[mode], use_int32)
            torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol, msg=f"{name} int32={use_int32}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_packet_path_taken_and_correct(emu, dtype):
    """Interior cubes whose x start is a multiple of the packet width read packets; the others do not."""
    vec = 16 // torch.empty((), dtype=dtype).element_size()
    size = (2, 3, 2 * vec)
    video = torch.randn(2, 3, 6, 8, 5 * vec, dtype=dtype)
    # x start = 2 * vec (aligned, inside) or 2 * vec + 1 (misaligned), with a fractional part.
    centers = torch.tensor([[[2.6, 4.2, 3 * vec + 0.4], [3.1, 3.7, 3 * vec + 1.3]]] * 2, dtype=dtype)
    out, paths = emu_forward(emu, video, centers, size, 0)
    assert paths == {"interior+packets": 2, "interior": 2, "general": 0}
    expected = reference.crop_cubes(video.double(), centers.double(), size, "zeros")
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    _, paths = emu_forward(emu, video[..., 1:], centers, size, 0)  # misaligned rows: no packets
    assert paths["interior+packets"] == 0 and paths["interior"] + paths["general"] == 4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("width", [13, 16, 200])
def test_forward_each_path_matches_reference(emu, dtype, width):
    """One cube per path: interior + packets (x start aligned), interior (x start 1 off,
    also with Dw not a multiple of the packet: the clamped last chunk), general (past
    the border); W = 200 gives rows of several chunks per lane."""
    vec = 16 // torch.empty((), dtype=dtype).element_size()
    dw = {13: 5, 16: 2 * vec, 200: 136}[width]  # 5: a clamped last chunk; 136: > 32 chunks for fp32
    size = (2, 9, dw)
    video = torch.randn(1, 2, 5, 20, width, dtype=torch.float64).to(dtype)
    cx = [vec + dw / 2 + 0.3, vec + 1 + dw / 2 + 0.3, width - dw / 2 + 1.7]
    centers = torch.tensor([[[2.4, 10.2, x] for x in cx]], dtype=dtype)
    out, paths = emu_forward(emu, video, centers, size, 1)
    packets_possible = dw % vec == 0 and vec + dw < width
    assert paths == {"interior+packets": int(packets_possible), "interior": 2 - int(packets_possible), "general": 1}
    expected = reference.crop_cubes(video.double(), centers.double(), size, "border")
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("gather", [False, True], ids=["window-atomic", "gather"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["zeros", "border"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_backward_matches_reference(emu, gather, dtype, mode, case):
    shape, size = CASES[case]
    g = torch.Generator().manual_seed(100 + case)
    video = torch.randn(shape, generator=g, dtype=torch.float64)
    centers = random_centers(shape[0], 4, shape[2:], size, g)
    grad_out = torch.randn(shape[0], 4, shape[1], *size, generator=g, dtype=torch.float64)
    _, ref_video, ref_centers = reference_grads(video, centers, size, mode, grad_out)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for name, layout in _layouts(video.to(dtype)):
        for use_int32 in (True, False):
            gv, gc = emu_backward(emu, grad_out.to(dtype), layout, centers, size, MODES[mode], gather, use_int32)
            msg = f"{name} int32={use_int32}"
            torch.testing.assert_close(gv.double(), ref_video, rtol=tol, atol=tol, msg=msg)
            torch.testing.assert_close(gc.double(), ref_centers, rtol=tol, atol=tol, msg=msg)


def test_backward_paths_each_taken(emu):
    """Window kernel: interior and general cubes; gather: a batch item whose cubes are all
    interior (the loop without padding ranges) and one with a cube past the border."""
    g = torch.Generator().manual_seed(11)
    shape, size = (2, 2, 6, 9, 40), (2, 3, 8)
    video = torch.randn(shape, generator=g, dtype=torch.float64)
    centers = torch.tensor([[[3.1, 4.4, 12.3], [2.6, 5.0, 25.7]],   # both interior
                            [[3.1, 4.4, 12.3], [0.2, 5.0, 39.5]]],  # the second past t = 0 and x = W
                           dtype=torch.float64)
    grad_out = torch.randn(2, 2, 2, *size, generator=g, dtype=torch.float64)
    for mode in ("zeros", "border"):
        _, ref_video, ref_centers = reference_grads(video, centers, size, mode, grad_out)
        for gather in (False, True):
            paths = _i64([0] * 6)
            gv, gc = emu_backward(emu, grad_out, video, centers, size, MODES[mode], gather, paths=paths)
            assert list(paths)[:4] == ([3, 1, 1, 1] if gather else [3, 1, 0, 0])
            torch.testing.assert_close(gv, ref_video, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(gc, ref_centers, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", [(3, 5, 136), (2, 9, 270), (1, 1, 131), (4, 2, 128), (2, 3, 5)])
def test_backward_window_interior_rows(emu, dtype, size):
    """Interior cubes' window rows: lane 0's masked first chunk, then unmasked chunks (lane 0's
    too once past x = 128 when Dw >= 132), the masked row end; rows with all 4 grad_out
    source rows and the window's first and last rows in t and y (1 or 2 source rows; every row
    when Dt = 1 or Dh = 1). Each window voxel's video gradient goes out exactly once."""
    g = torch.Generator().manual_seed(sum(size))
    c, extents = 2, (size[0] + 3, size[1] + 4, size[2] + 9)
    video = torch.randn(2, c, *extents, generator=g, dtype=torch.float64)
    d = torch.tensor(size, dtype=torch.float64)
    starts = torch.tensor([[[1.0, 2.0, 3.0], [2.0, 1.0, 7.0], [0.0, 3.0, 1.0]],
                           [[1.0, 0.0, 0.0], [2.0, 3.0, 4.0], [1.0, 2.0, 2.0]]], dtype=torch.float64)
    fracs = torch.rand(2, 3, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05
    fracs[1, 0] = 0.0  # an integer start: frac 0 on every axis
    centers = starts + fracs + d / 2
    grad_out = torch.randn(2, 3, c, *size, generator=g, dtype=torch.float64)
    _, ref_video, ref_centers = reference_grads(video, centers, size, "zeros", grad_out)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    window_voxels = 6 * c * int(torch.prod(d + 1))
    for use_int32 in (True, False):
        paths = _i64([0] * 6)
        gv, gc = emu_backward(emu, grad_out.to(dtype), video.to(dtype), centers, size, 0, False, use_int32,
                              paths=paths)
        assert list(paths)[:2] == [6, 0]  # every cube interior
        assert paths[4] + paths[5] == window_voxels
        assert (paths[4] > 0) == (size[2] >= 8)  # an unmasked chunk needs jw0 >= 1 (so >= 4) and jw0 + 4 <= Dw
        torch.testing.assert_close(gv.double(), ref_video, rtol=tol, atol=tol)
        torch.testing.assert_close(gc.double(), ref_centers, rtol=tol, atol=tol)


# fp16 / bf16 video gradients. The window kernel's atomics add each window voxel's float32
# value into the gradient in the video's dtype: the value is rounded to it, then the sum, so
# a voxel that n window voxels land on carries n + 1 roundings, in whatever order the adds
# come (the emulation's: cube by cube, then plane, row, lane; the device's: any). The
# deterministic gather sums in float32 and rounds once.
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}  # half the spacing at 1
SUBNORMAL_STEP = {torch.float16: 2.0**-24, torch.bfloat16: 2.0**-133}  # the smallest subnormal


def window_fold_counts(video_shape, centers, size, mode):
    """(N, T, H, W): how many window voxels of the cubes land on each input voxel, i.e. how
    many atomic adds it receives per channel (cubecrop_math.h's axis_taps and resolve_index,
    computed in the centres' dtype as the kernels do)."""
    n, _, *extents = video_shape
    hist = []
    for a in range(3):
        d, e = size[a], extents[a]
        s = (centers[..., a] - d / 2).clamp(-(d + 2), e + 1)
        f = torch.floor(s)
        f = torch.where((f == s) & (f + d == e) & (f >= 1), f - 1, f)  # the upper-edge rule
        idx = f.long().unsqueeze(-1) + torch.arange(d + 1)  # (N, K, D + 1): window voxel -> input index
        if mode == "border":
            idx = idx.clamp(0, e - 1)
        inside = (idx >= 0) & (idx < e)
        h = torch.zeros(*idx.shape[:2], e + 1, dtype=torch.float64)
        hist.append(h.scatter_add(-1, torch.where(inside, idx, e), torch.ones_like(idx, dtype=torch.float64))[..., :e])
    return torch.einsum("nkt,nkh,nkw->nthw", *hist)


def half_grad_bound(video, centers, size, mode, grad_out, dtype, gather):
    """Per-voxel bound on |video gradient - float64 reference| for an fp16 / bf16 video:
    with u the unit roundoff and S the sum of the |values| added into the voxel (the
    reference gradient of |grad_out|: the trilinear weights are >= 0), n + 1 roundings
    (atomics: n the adds, from window_fold_counts) or one (gather) give at most
    ((1 + u)^(n + 1) - 1) S (recursive summation, the float32 values rounded first), plus a
    subnormal step per rounding and 1e-5 S for the float32 arithmetic before it."""
    u, step = UNIT_ROUNDOFF[dtype], SUBNORMAL_STEP[dtype]
    _, s, _ = reference_grads(video.double(), centers, size, mode, grad_out.double().abs())
    if gather:
        rounds = torch.ones_like(s)
    else:
        counts = window_fold_counts(video.shape, centers, size, mode)
        rounds = counts.unsqueeze(1).expand(video.shape) + 1
    return (torch.pow(1 + u, rounds) - 1) * s + 1e-5 * s + rounds * step


def assert_within(actual, expected, bound, msg=""):
    err = (actual.double() - expected).abs()
    worst = (err - bound).argmax()
    assert bool((err <= bound).all()), (f"{msg}: |error| {err.flatten()[worst].item():.3g} > bound "
                                        f"{bound.flatten()[worst].item():.3g} at flat index {worst.item()}")


HALF_DTYPES = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("gather", [False, True], ids=["window-atomic", "gather"])
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("mode", ["zeros", "border"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_backward_half_matches_reference(emu, gather, dtype, mode, case):
    """fp16 / bf16 videos: the video gradient within half_grad_bound of the reference (K = 4
    cubes with overlaps, border folds, far-outside cubes); the centre gradient, computed in
    float32 from the same fp16 / bf16 values, within the float32 tolerance."""
    shape, size = CASES[case]
    g = torch.Generator().manual_seed(200 + case)
    video = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    centers = random_centers(shape[0], 4, shape[2:], size, g).float()
    grad_out = torch.randn(shape[0], 4, shape[1], *size, generator=g, dtype=torch.float64).to(dtype)
    _, ref_video, ref_centers = reference_grads(video.double(), centers.double(), size, mode, grad_out.double())
    bound = half_grad_bound(video, centers.double(), size, mode, grad_out, dtype, gather)
    for name, layout in _layouts(video):
        for use_int32 in (True, False):
            gv, gc = emu_backward(emu, grad_out, layout, centers, size, MODES[mode], gather, use_int32)
            msg = f"{name} int32={use_int32}"
            assert gv.dtype == dtype and gc.dtype == torch.float32
            assert_within(gv, ref_video, bound, msg)
            torch.testing.assert_close(gc.double(), ref_centers, rtol=2e-4, atol=2e-4, msg=msg)


def _round_to(x, dtype):
    return x.to(dtype).float()


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("layout_index", [0, 2], ids=["contiguous", "offset1"])
def test_backward_half_atomics_round_every_add(emu, dtype, layout_index):
    """The fp16 / bf16 emulation, exactly: in zeros mode no cube folds two window voxels onto
    one input voxel, so each voxel gets one add per cube, in cube order; the float32
    emulation of cube k alone gives each add's value a_k (same float32 arithmetic on the
    same values), and the fp16 / bf16 gradient must be r = round(r + round(a_k)) over
    k = 0 .. K-1, bit for bit (a sum of two fp16 / bf16 values rounds the same from
    float32). The gather rounds its float32 sum once; the centre gradient is the float32 one."""
    shape, size = (2, 2, 5, 11, 19), (2, 4, 9)
    g = torch.Generator().manual_seed(31)
    video = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    centers = random_centers(shape[0], 4, shape[2:], size, g).float()
    centers[:, 3] = centers[:, 0] + torch.tensor([0.5, 1.25, 2.75])  # overlaps cube 0
    centers[1, 1] = torch.tensor([2.4, 5.6, 9.3])  # interior
    grad_out = torch.randn(shape[0], 4, shape[1], *size, generator=g, dtype=torch.float64).to(dtype)
    layout = list(_layouts(video))[layout_index][1]
    layout32 = list(_layouts(video.float()))[layout_index][1]
    gv, gc = emu_backward(emu, grad_out, layout, centers, size, 0, False)
    gv32, gc32 = emu_backward(emu, grad_out.float(), layout32, centers, size, 0, False)
    assert torch.equal(gc, gc32)
    expected = torch.zeros(shape, dtype=torch.float32)
    for k in range(4):
        a_k, _ = emu_backward(emu, grad_out[:, k:k + 1].float(), layout32, centers[:, k:k + 1], size, 0, False)
        expected = _round_to(expected + _round_to(a_k, dtype), dtype)
    assert torch.equal(gv.float(), expected)
    assert not torch.equal(gv.float(), _round_to(gv32, dtype))  # the fp32 accumulator rounded once differs
    gv, gc = emu_backward(emu, grad_out, layout, centers, size, 0, True)
    gv32, gc32 = emu_backward(emu, grad_out.float(), layout32, centers, size, 0, True)
    assert torch.equal(gv.float(), _round_to(gv32, dtype)) and torch.equal(gc, gc32)


def test_window_fold_counts():
    """The counts the bounds use, worked by hand: cube 0 (window 3 x 4 x 5) reaches past
    t = 0, y = 0 and x = W - 1, so border mode folds 2 x 2 x 3 of its window voxels onto the
    corner (0, 0, W - 1); cube 1 starts exactly at x = W - Dw (the upper-edge rule: its taps
    start one lower, 16 .. 20) and overlaps cube 0 near that corner."""
    size, extents = (2, 3, 4), (5, 7, 21)
    centers = torch.tensor([[[0.3, 1.2, 20.9], [1.5, 2.5, 19.0]]], dtype=torch.float64)
    zeros = window_fold_counts((1, 1, *extents), centers, size, "zeros")
    border = window_fold_counts((1, 1, *extents), centers, size, "border")
    assert zeros.sum().item() == 18 + 60 and zeros.max().item() == 2  # cube 0: 2 x 3 x 3 window voxels inside
    assert zeros[0, 0, 1:3, 16].tolist() == [1.0, 1.0] and zeros[0, 0, 1, 18].item() == 2
    assert border.sum().item() == 120 and border.max().item() == 12 and border[0, 0, 0, 20].item() == 12


def test_backward_gather_many_cubes(emu):
    """K > kTile (32) cubes: the gather computes each cube's terms as it goes (not staged)."""
    g = torch.Generator().manual_seed(7)
    shape, size = (1, 2, 3, 6, 7), (2, 3, 3)
    video = torch.randn(shape, generator=g, dtype=torch.float64)
    centers = random_centers(1, 70, shape[2:], size, g)
    grad_out = torch.randn(1, 70, 2, *size, generator=g, dtype=torch.float64)
    _, ref_video, _ = reference_grads(video, centers, size, "border", grad_out)
    gv, _ = emu_backward(emu, grad_out, video, centers, size, 1, True)
    torch.testing.assert_close(gv, ref_video, rtol=1e-10, atol=1e-10)


def _int_reference(video, centers, size, channels_last, mean=None, std=None, out_dtype=None):
    return reference.crop_cubes_int(video, centers, size, channels_last=channels_last, mean=mean, std=std,
                                    out_dtype=out_dtype)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("width", [16, 13])
def test_int_fused_uint8_normalise(emu, channels_last, width):
    g = torch.Generator().manual_seed(width)
    n, c, t, h = 2, 3, 5, 9
    shape = (n, t, h, width, c) if channels_last else (n, c, t, h, width)
    video = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    size = (3, 4, 8)
    centers = random_centers(n, 3, (t, h, width), size, g)
    centers[0, 0, 2] = 4.0 + 4.0  # start 4: packet-aligned when the rows allow packets
    mean = torch.tensor([120.0, 110.5, 100.25])
    std = torch.tensor([58.0, 57.5, 60.0])
    view = video.permute(0, 4, 1, 2, 3) if channels_last else video
    for stats in ((None, None), (mean, None), (mean, std)):
        out = torch.full((n, 3, c, *size), float("nan"), dtype=torch.float32)
        args = [_ptr(s) if s is not None else None for s in stats]
        fn = emu.emu_crop_int_u8_f32
        fn.restype = ctypes.c_int64
        packets = fn(_ptr(video), _i64(view.shape), _i64(view.stride()), _ptr(centers), _int(3), _i64(size), *args,
                     _ptr(out))
        expected = _int_reference(video, centers, size, channels_last, *stats, out_dtype=torch.float32)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        assert (packets > 0) == (not channels_last and width == 16)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "offset1"])
def test_int_copy_by_element_width(emu, dtype, layout):
    g = torch.Generator().manual_seed(3)
    n, c, t, h, w = 2, 2, 4, 7, 32
    base = torch.randint(0, 100, (n, c, t, h, w), generator=g).to(dtype)
    if layout == "channels_last":
        video = base.permute(0, 2, 3, 4, 1).contiguous()
        view = video.permute(0, 4, 1, 2, 3)
    elif layout == "offset1":
        storage = torch.empty(base.numel() + 1, dtype=dtype)
        video = view = storage[1:].view(base.shape)
        video.copy_(base)
    else:
        video = view = base
    size = (2, 5, 16)
    centers = random_centers(n, 3, (t, h, w), size, g)
    centers[1, 0, 2] = 8.0 + 16.0 + 0.3  # start 16: aligned for every element width
    out = torch.empty((n, 3, c, *size), dtype=dtype)
    fn = emu.emu_crop_int_copy
    fn.restype = ctypes.c_int64
    for use_int32 in (1, 0):
        out.fill_(7)
        packets = fn(_ptr(video), _int(out.element_size()), _i64(view.shape), _i64(view.stride()), _ptr(centers),
                     _int(3), _i64(size), ctypes.c_int(use_int32), _ptr(out))
        expected = _int_reference(video, centers, size, layout == "channels_last")
        assert torch.equal(out, expected)
        assert (packets > 0) == (layout == "contiguous")


def test_cuda_build_registers_every_op():
    """A FORCE_CUDA=1 build (CI can build without a GPU) must register all three ops for CUDA."""
    from cubecrop._extension import has_kernel

    ops = ("crop_cubes", "crop_cubes_backward", "crop_cubes_int")
    registered = [has_kernel(op, "CUDA") for op in ops]
    if not any(registered):
        pytest.skip("the extension was built without the CUDA kernels (FORCE_CUDA=1 builds them)")
    assert all(registered), dict(zip(ops, registered))
