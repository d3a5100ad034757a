"""GPU-only checks of the hand-written CUDA kernels (csrc/cuda).

The general value/gradient/gradcheck/opcheck tests (tests/test_ops_*.py) run the
cuda backend automatically; this file holds what only the CUDA kernels have:
64-bit indexing past 2^31 elements, an input for each kernel path (interior +
packets, interior, general rows; gather versus atomic video gradients; the int
crop's vector and element paths per dtype pair, uint8 -> fp16 included), bitwise determinism of the centre gradient and
of the deterministic video gradient, and CUDA-graph capture through
torch.compile(mode="reduce-overhead"). Skipped, with the reason, without a GPU
or without the CUDA kernels built (FORCE_CUDA=1).

fp16/bf16 video gradients: the atomic path adds into the gradient in the video's dtype,
rounding every add, so they are compared with the reference within half_grad_bound
(tests/test_cuda_emulation.py): ((1 + u)^(n + 1) - 1) S per voxel, u the dtype's unit
roundoff (2^-11 fp16, 2^-8 bf16), n the window voxels that land on it, S the sum of their
|values|; the deterministic gather rounds once (n + 1 = 1).
"""
from __future__ import annotations

import pytest
import torch

import cubecrop
from cubecrop import reference
from cubecrop._extension import has_kernel
from test_cuda_emulation import assert_within, half_grad_bound

OPS = ("crop_cubes", "crop_cubes_backward", "crop_cubes_int")

if not torch.cuda.is_available():
    pytest.skip("no CUDA device on this machine: the CUDA kernel checks need a GPU", allow_module_level=True)
if not all(has_kernel(op, "CUDA") for op in OPS):
    pytest.skip("the CUDA kernels were not built (rebuild with FORCE_CUDA=1)", allow_module_level=True)

DEVICE = torch.device("cuda")
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 1.5e-1}


def _centers(n, k, extents, size, generator, spread=0.3):
    ext = torch.tensor(extents, dtype=torch.float64)
    d = torch.tensor(size, dtype=torch.float64)
    lo, hi = -d * spread, ext + d * spread
    return lo + (hi - lo) * torch.rand(n, k, 3, generator=generator, dtype=torch.float64)


def _ref_crop_and_grads(video, centers, size, mode, grad_out):
    v = video.detach().cpu().double().requires_grad_(True)
    c = centers.detach().cpu().double().requires_grad_(True)
    out = reference.crop_cubes(v, c, size, mode)
    out.backward(grad_out.detach().cpu().double())
    return out.detach(), v.grad, c.grad


def _cuda_crop_and_grads(video, centers, size, mode, grad_out):
    v = video.detach().requires_grad_(True)  # keeps the strides and storage offset under test
    c = centers.detach().clone().requires_grad_(True)
    out = cubecrop.crop_cubes(v, c, size, mode, backend="cuda")
    out.backward(grad_out)
    return out.detach(), v.grad, c.grad


def _check_video_grad(gv, video, centers, size, mode, grad_out, tol, gather=False):
    """gv against the reference: fp16/bf16 within half_grad_bound (per-add rounding in the
    atomic path, one rounding in the gather), other dtypes within tol."""
    v, c, go = video.detach().cpu(), centers.detach().cpu().double(), grad_out.detach().cpu()
    _, ref_gv, _ = _ref_crop_and_grads(v, c, size, mode, go)
    if video.dtype in (torch.float16, torch.bfloat16):
        assert_within(gv.cpu(), ref_gv, half_grad_bound(v, c, size, mode, go, video.dtype, gather), str(video.dtype))
    else:
        torch.testing.assert_close(gv.cpu().double(), ref_gv, rtol=tol, atol=tol * 4)


def _misaligned(video):
    """The same values at storage offset 1: rows no longer start on a 16-byte boundary."""
    storage = torch.empty(video.numel() + 1, dtype=video.dtype, device=video.device)
    shifted = storage[1:].view(video.shape)
    shifted.copy_(video)
    return shifted


def test_registered_for_cuda():
    for op in OPS:
        assert has_kernel(op, "CUDA"), op
    assert cubecrop.available_backends("cuda")[0] == "cuda"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("width", [1, 7, 8, 13, 16, 33])
@pytest.mark.parametrize("layout", ["contiguous", "offset1", "channels_last"])
@pytest.mark.parametrize("mode", ["zeros", "border"])
def test_packet_and_element_paths(dtype, width, layout, mode):
    """Widths around the packet size (4 fp32, 8 fp16/bf16, 2 fp64), misaligned and permuted inputs;
    half the cubes start on a packet boundary so both the packet and the element loads run."""
    g = torch.Generator().manual_seed(width)
    n, c, t, h, w = 2, 3, 5, 9, width + 11
    size = (2, 3, width)
    video = torch.randn(n, c, t, h, w, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    if layout == "offset1":
        video = _misaligned(video)
    elif layout == "channels_last":
        video = video.to(memory_format=torch.channels_last_3d)
    centers = _centers(n, 6, (t, h, w), size, g)
    centers[:, ::2, 2] = 8 + width / 2 + 0.375  # x start 8 (+ fraction): packet-aligned for every dtype
    grad_out = torch.randn(n, 6, c, *size, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    out, gv, gc = _cuda_crop_and_grads(video, centers.to(cd).to(DEVICE), size, mode, grad_out)
    ref_out, ref_gv, ref_gc = _ref_crop_and_grads(video, centers.to(cd), size, mode, grad_out)
    tol = TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), ref_out, rtol=tol, atol=tol)
    _check_video_grad(gv, video, centers.to(cd), size, mode, grad_out, tol)
    # The centre gradient sums many terms: compare relative to its scale.
    scale = ref_gc.abs().max().item() + 1
    torch.testing.assert_close(gc.cpu().double(), ref_gc, rtol=tol * 4, atol=tol * 4 * scale)


def _packet_width(*dtypes):
    return 16 // max(torch.empty((), dtype=d).element_size() for d in dtypes)


# Forward row paths (cube_items.h RowPath) and the inputs that take them: a cube whose
# taps are all inside with its x start on a packet boundary of a 16-byte-aligned,
# packet-strided video reads packets; one start off (or a storage offset of 1), element
# loads; a cube across the border, the general rows with padding.
FORWARD_PATHS = ("interior+packets", "interior", "interior-offset1", "general")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("path", FORWARD_PATHS)
@pytest.mark.parametrize("dw", [None, 5], ids=["whole-packets", "dw5"])
def test_each_forward_and_backward_path(dtype, path, dw):
    vec = _packet_width(dtype)
    dw = dw or 4 * vec
    n, c, t, h, w = 2, 3, 6, 20, 16 * vec  # W, H * W, ... multiples of every packet width
    size = (3, 5, dw)
    g = torch.Generator().manual_seed(vec + dw)
    video = torch.randn(n, c, t, h, w, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    x_start = {"interior+packets": 2 * vec, "interior": 2 * vec + 1, "interior-offset1": 2 * vec,
               "general": w - dw // 2}[path]
    if path == "interior-offset1":
        video = _misaligned(video)
    assert video.data_ptr() % 16 == (0 if path != "interior-offset1" else video.element_size())
    k = 3
    centers = torch.empty(n, k, 3, dtype=torch.float64)
    centers[..., 0] = 2.25 + size[0] / 2
    centers[..., 1] = 6.5 + size[1] / 2
    centers[..., 2] = x_start + dw / 2 + 0.375  # floor(c - Dw/2) = x_start, fraction 0.375
    grad_out = torch.randn(n, k, c, *size, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    tol = TOL[dtype]
    for mode in ("zeros", "border"):
        out, gv, gc = _cuda_crop_and_grads(video, centers.to(cd).to(DEVICE), size, mode, grad_out)
        ref_out, ref_gv, ref_gc = _ref_crop_and_grads(video, centers.to(cd), size, mode, grad_out)
        torch.testing.assert_close(out.cpu().double(), ref_out, rtol=tol, atol=tol)
        _check_video_grad(gv, video, centers.to(cd), size, mode, grad_out, tol)
        scale = ref_gc.abs().max().item() + 1
        torch.testing.assert_close(gc.cpu().double(), ref_gc, rtol=tol * 4, atol=tol * 4 * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("deterministic", [True, False], ids=["gather", "atomics"])
@pytest.mark.parametrize("need", ["both", "video", "centers"])
def test_backward_video_gradient_paths(dtype, deterministic, need):
    """Deterministic mode: the video gradient is the gather, written once in the video's dtype;
    else the window kernel's atomics, straight into the video's dtype (fp16/bf16 too). Each
    with either gradient alone (the window kernel's video-only and centre-only instantiations)."""
    g = torch.Generator().manual_seed(int(deterministic))
    n, c, t, h, w, k = 2, 2, 6, 12, 40, 5
    size = (2, 4, 8)
    video = torch.randn(n, c, t, h, w, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    centers = _centers(n, k, (t, h, w), size, g)
    grad_out = torch.randn(n, k, c, *size, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    cd = torch.float32
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        gv, gc = torch.ops.cubecrop.crop_cubes_backward(grad_out, video, centers.to(cd).to(DEVICE), list(size), 1,
                                                        need != "centers", need != "video")
    finally:
        torch.use_deterministic_algorithms(previous)
    _, ref_gv, ref_gc = _ref_crop_and_grads(video, centers.to(cd), size, "border", grad_out)
    tol = TOL[dtype]
    if need != "centers":
        assert gv.dtype == dtype and gv.is_contiguous()
        _check_video_grad(gv, video, centers.to(cd), size, "border", grad_out, tol, gather=deterministic)
    else:
        assert gv.numel() == 0
    if need != "video":
        scale = ref_gc.abs().max().item() + 1
        torch.testing.assert_close(gc.cpu().double(), ref_gc, rtol=tol * 4, atol=tol * 4 * scale)
    else:
        assert gc.numel() == 0


# crop_cubes_int's kernels: (video dtype, out dtype, normalised) -> packet width; each runs
# with an aligned x start on packet-strided rows (the vector path) and with a storage
# offset of 1 (the element path).
INT_PATHS = [
    (torch.uint8, torch.float16, True),    # 8 bytes in, one 16-byte store of 8 halves
    (torch.uint8, torch.bfloat16, True),
    (torch.uint8, torch.float32, True),    # 4 bytes in, 16 out
    (torch.uint8, torch.float64, True),
    (torch.float16, torch.float32, True),
    (torch.float32, torch.float16, False),
    (torch.uint8, torch.uint8, False),     # the copy kernels by width
    (torch.int16, torch.int16, False),
    (torch.float32, torch.float32, False),
    (torch.int64, torch.int64, False),
]


@pytest.mark.parametrize("video_dtype,out_dtype,normalised", INT_PATHS, ids=str)
@pytest.mark.parametrize("layout", ["aligned", "offset1"])
def test_int_crop_vector_and_element_paths(video_dtype, out_dtype, normalised, layout):
    vec = _packet_width(video_dtype, out_dtype)
    g = torch.Generator().manual_seed(vec)
    n, c, t, h, w = 2, 3, 5, 9, 64
    size = (2, 4, 2 * vec if vec > 1 else 3)
    video = torch.randint(0, 200, (n, c, t, h, w), generator=g).to(video_dtype).to(DEVICE)
    if layout == "offset1":
        video = _misaligned(video)
    centers = torch.tensor([[[2.0, 4.5, 2 * vec + size[2] / 2]] * 2] * n, dtype=torch.float64, device=DEVICE)
    stats = {"mean": [100.5, 90.25, 80.0], "std": [50.0, 40.5, 3.0]} if normalised else {}
    out = cubecrop.crop_cubes_int(video, centers, size, out_dtype=out_dtype, backend="cuda", **stats)
    expected = reference.crop_cubes_int(video.cpu(), centers.cpu(), size, out_dtype=out_dtype,
                                        **{key: torch.tensor(val) for key, val in stats.items()})
    assert out.dtype == out_dtype
    rtol = {torch.float16: 1e-3, torch.bfloat16: 8e-3}.get(out_dtype, 1e-6)
    torch.testing.assert_close(out.cpu(), expected, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("width", [5, 16, 17])
@pytest.mark.parametrize("layout", ["contiguous", "offset1", "channels_last"])
def test_int_crop_layouts(width, layout):
    g = torch.Generator().manual_seed(width)
    n, c, t, h, w = 2, 3, 6, 10, width + 20
    size = (3, 4, width)
    video = torch.randint(0, 256, (n, t, h, w, c), generator=g, dtype=torch.uint8).to(DEVICE)
    channels_last = layout == "channels_last"
    if not channels_last:
        video = video.permute(0, 4, 1, 2, 3).contiguous()
        if layout == "offset1":
            video = _misaligned(video)
    centers = _centers(n, 5, (t, h, w), size, g).to(DEVICE)
    centers[:, ::2, 2] = 16 + width / 2  # x start 16: packet-aligned
    mean, std = [123.7, 116.3, 103.5], [58.4, 57.1, 57.4]
    for kwargs in ({}, {"mean": mean, "std": std}, {"out_dtype": torch.float16, "mean": mean},
                   {"out_dtype": torch.int32}):
        out = cubecrop.crop_cubes_int(video, centers, size, channels_last=channels_last, backend="cuda", **kwargs)
        stats = {key: torch.tensor(val) for key, val in kwargs.items() if key in ("mean", "std")}
        expected = reference.crop_cubes_int(video.cpu(), centers.cpu(), size, channels_last=channels_last,
                                            out_dtype=kwargs.get("out_dtype"), **stats)
        assert out.dtype == expected.dtype
        torch.testing.assert_close(out.cpu(), expected, rtol=1e-3 if out.dtype == torch.float16 else 1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64, torch.float64, torch.bfloat16])
def test_int_crop_other_dtypes(dtype):
    """Copy kernels by element width, and the ATen fallback for unfused dtype pairs."""
    g = torch.Generator().manual_seed(1)
    video = torch.randint(-100, 100, (2, 2, 4, 9, 24), generator=g).to(dtype).to(DEVICE)
    centers = _centers(2, 3, (4, 9, 24), (2, 5, 8), g).to(DEVICE)
    for kwargs in ({}, {"mean": [1.5, -2.0], "std": [3.0, 0.5]}, {"mean": [1.5, -2.0], "out_dtype": torch.float64}):
        out = cubecrop.crop_cubes_int(video, centers, (2, 5, 8), backend="cuda", **kwargs)
        stats = {key: torch.tensor(val) for key, val in kwargs.items() if key in ("mean", "std")}
        expected = reference.crop_cubes_int(video.cpu(), centers.cpu(), (2, 5, 8), out_dtype=kwargs.get("out_dtype"),
                                            **stats)
        torch.testing.assert_close(out.cpu(), expected, rtol=1e-6, atol=1e-6)


def _runs(fn, count=3):
    return [fn() for _ in range(count)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_centre_gradient_bitwise_reproducible(dtype):
    """Fixed-order block reduction + fixed-order partial sum: identical bits every run, even with
    the atomic video gradient computed in the same kernel and many blocks per cube."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 64, 8, 96, 96, generator=g).to(dtype).to(DEVICE)
    centers = _centers(2, 5, (8, 96, 96), (4, 48, 48), g).float().to(DEVICE)
    grad_out = torch.randn(2, 5, 64, 4, 48, 48, generator=g).to(dtype).to(DEVICE)

    def run():
        return torch.ops.cubecrop.crop_cubes_backward(grad_out, video, centers, [4, 48, 48], 0, True, True)[1]

    first, *rest = _runs(run)
    for other in rest:
        assert torch.equal(first, other)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("mode", [0, 1])
def test_deterministic_video_gradient(dtype, mode):
    """Heavily overlapping cubes (and border folding): the deterministic gather is bitwise stable and
    matches the atomic path up to summation order (fp32/fp64); in fp16 the atomic path rounds every
    add, so both are checked against the reference instead (half_grad_bound)."""
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, 4, 6, 20, 20, generator=g).to(dtype).to(DEVICE)
    centers = (torch.tensor([3.0, 10.0, 10.0]) + torch.randn(2, 40, 3, generator=g) * 3).to(DEVICE)
    centers = centers.to(torch.float64 if dtype == torch.float64 else torch.float32)
    grad_out = torch.randn(2, 40, 4, 3, 8, 8, generator=g).to(dtype).to(DEVICE)
    op = torch.ops.cubecrop.crop_cubes_backward
    atomic = op(grad_out, video, centers, [3, 8, 8], mode, True, True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = _runs(lambda: op(grad_out, video, centers, [3, 8, 8], mode, True, True))
    finally:
        torch.use_deterministic_algorithms(previous)
    for grad_video, grad_centers in runs[1:]:
        assert torch.equal(grad_video, runs[0][0])
        assert torch.equal(grad_centers, runs[0][1])
    assert torch.equal(runs[0][1], atomic[1])  # the centre gradient takes the same path in both modes
    if dtype == torch.float16:
        mode_name = ("zeros", "border")[mode]
        _check_video_grad(atomic[0], video, centers, [3, 8, 8], mode_name, grad_out, None, gather=False)
        _check_video_grad(runs[0][0], video, centers, [3, 8, 8], mode_name, grad_out, None, gather=True)
        return
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(runs[0][0].double(), atomic[0].double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_video_gradient_atomics_in_dtype(dtype):
    """The atomic fp16/bf16 video gradient adds straight into the video's dtype (packed
    two-element atomics), without an fp32 buffer:
    - exactly: one interior cube per batch item in zeros mode gets one add per voxel, so the
      result is the fp32 kernel's value rounded once; two overlapping cubes get two adds, whose
      result round(round(a0) + round(a1)) does not depend on their order (a_k: the fp32 kernel
      on cube k alone). Odd and even x starts cover both pairings of add4 (two aligned pairs, or
      zero + v0, v1 + v2, v3 + zero); an odd W makes rows start on either parity;
    - within half_grad_bound: K = 6 cubes piled on one spot, and cubes past the corners, which
      border mode folds onto the corner voxels (500 window voxels and more onto one voxel);
    - memory: the backward allocates the gradient itself (and the centre partials), not a
      float32 copy of it."""
    g = torch.Generator().manual_seed(9)
    n, c, t, h, w = 2, 3, 8, 24, 75
    size = (3, 5, 36)
    video = torch.randn(n, c, t, h, w, generator=g).to(dtype).to(DEVICE)
    op = torch.ops.cubecrop.crop_cubes_backward

    def atomic_grad(v, cen, go, mode):
        return op(go, v, cen, list(size), mode, True, False)[0]

    pair = torch.tensor([[[3.4, 9.6, 20.3], [4.1, 11.2, 23.7]],  # x starts 2 and 5
                         [[2.9, 8.3, 37.2], [3.6, 9.9, 38.5]]], device=DEVICE)  # 19 and 20
    grad_out = torch.randn(n, 2, c, *size, generator=g).to(dtype).to(DEVICE)
    one = [atomic_grad(video.float(), pair[:, k:k + 1].contiguous(), grad_out[:, k:k + 1].float().contiguous(), 0)
           for k in range(2)]
    for k in range(2):
        got = atomic_grad(video, pair[:, k:k + 1].contiguous(), grad_out[:, k:k + 1].contiguous(), 0)
        assert got.dtype == dtype and torch.equal(got, one[k].to(dtype))
    both = atomic_grad(video, pair, grad_out, 0)
    assert torch.equal(both, (one[0].to(dtype).float() + one[1].to(dtype).float()).to(dtype))

    pile = torch.tensor([4.0, 12.0, 37.5]) + torch.randn(n, 6, 3, generator=g) * torch.tensor([0.7, 2.0, 3.0])
    corners = torch.tensor([[[-0.8, -1.5, -9.0], [8.9, 25.0, 80.0], [4.2, -2.2, 76.4]]] * n)
    for centers, mode in ((pile, 0), (pile, 1), (corners, 1), (corners, 0)):
        centers = centers.float().to(DEVICE)
        go = torch.randn(n, centers.shape[1], c, *size, generator=g).to(dtype).to(DEVICE)
        _check_video_grad(atomic_grad(video, centers, go, mode), video, centers, size, ("zeros", "border")[mode], go,
                          None)

    centers, go = pile.float().to(DEVICE), torch.randn(n, 6, c, *size, generator=g).to(dtype).to(DEVICE)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grad_video, grad_centers = op(go, video, centers, list(size), 1, True, True)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    fp32_copy = video.numel() * 4
    assert grad_video.dtype == dtype and grad_centers.dtype == torch.float32
    assert extra < grad_video.numel() * grad_video.element_size() + fp32_copy // 2, (extra, fp32_copy)


def test_compile_reduce_overhead_cuda_graphs():
    """torch.compile(fullgraph=True, mode="reduce-overhead") captures the kernels in a CUDA graph:
    they must launch on the current stream and allocate through the caching allocator."""
    g = torch.Generator().manual_seed(2)
    video = torch.randn(2, 3, 8, 32, 32, generator=g).to(DEVICE)
    centers = _centers(2, 2, (8, 32, 32), (4, 16, 16), g).float().to(DEVICE)

    def step(v, c):
        out = cubecrop.crop_cubes(v, c, (4, 16, 16), backend="cuda")
        return (out * out).sum()

    compiled = torch.compile(step, fullgraph=True, mode="reduce-overhead")
    for _ in range(4):  # warm-up, record, then replays
        torch.compiler.cudagraph_mark_step_begin()
        v = video.clone().requires_grad_(True)
        c = centers.clone().requires_grad_(True)
        loss = compiled(v, c)
        loss.backward()
    v_ref = video.clone().requires_grad_(True)
    c_ref = centers.clone().requires_grad_(True)
    step(v_ref, c_ref).backward()
    torch.testing.assert_close(loss, step(video, centers))
    torch.testing.assert_close(v.grad, v_ref.grad)
    torch.testing.assert_close(c.grad, c_ref.grad, rtol=1e-5, atol=1e-4)
    int_compiled = torch.compile(
        lambda x, c: cubecrop.crop_cubes_int(x, c, (4, 16, 16), mean=[0.5] * 3, std=[2.0] * 3, backend="cuda"),
        fullgraph=True, mode="reduce-overhead")
    for _ in range(3):
        torch.compiler.cudagraph_mark_step_begin()
        out = int_compiled(video, centers.double())
    expected = cubecrop.crop_cubes_int(video, centers.double(), (4, 16, 16), mean=[0.5] * 3, std=[2.0] * 3,
                                       backend="cuda")
    torch.testing.assert_close(out, expected)


def test_runs_on_a_side_stream():
    s = torch.cuda.Stream()
    g = torch.Generator().manual_seed(3)
    video = torch.randn(1, 2, 4, 16, 16, generator=g).to(DEVICE)
    centers = _centers(1, 2, (4, 16, 16), (2, 8, 8), g).float().to(DEVICE)
    expected = cubecrop.crop_cubes(video, centers, (2, 8, 8), backend="cuda")
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = cubecrop.crop_cubes(video, centers, (2, 8, 8), backend="cuda")
    torch.cuda.current_stream().wait_stream(s)
    assert torch.equal(out, expected)


def _free_bytes():
    free, _ = torch.cuda.mem_get_info()
    return free


@pytest.mark.skipif(torch.cuda.is_available() and _free_bytes() < 24 * 2**30, reason="needs ~24 GiB of free GPU memory")
def test_single_video_beyond_int32_uses_64bit_indexing():
    """One batch item of 2.4e9 elements (> 2^31): the 64-bit kernels; cubes at the far end."""
    t, h, w = 9, 16384, 16384  # 2.42e9 voxels, C = 1
    video = torch.zeros(1, 1, t, h, w, dtype=torch.float16, device=DEVICE)
    patch = torch.randn(1, 1, 4, 40, 40, generator=torch.Generator().manual_seed(4)).half()
    video[..., t - 4:, h - 40:, w - 40:] = patch.to(DEVICE)
    size = (2, 16, 16)
    # Centres relative to the patch, then moved to the far corner of the big video.
    near = torch.tensor([[[2.3, 20.4, 21.7], [3.6, 35.2, 33.9]]], dtype=torch.float64)
    offset = torch.tensor([t - 4, h - 40, w - 40], dtype=torch.float64)
    centers = (near + offset).float()
    local = centers.double() - offset  # exact: the float32 centres as the reference sees them on the patch
    centers = centers.to(DEVICE).requires_grad_(True)
    out = cubecrop.crop_cubes(video, centers, size, backend="cuda")
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).half()
    out.backward(grad_out.to(DEVICE))
    ref_out, _, ref_gc = _ref_crop_and_grads(patch, local, size, "zeros", grad_out.float())
    torch.testing.assert_close(out.cpu().double(), ref_out, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(centers.grad.cpu().double(), ref_gc, rtol=1e-4, atol=1e-3)
    int_out = cubecrop.crop_cubes_int(video, centers.detach().double(), size, backend="cuda")
    int_ref = reference.crop_cubes_int(patch, local, size)
    assert torch.equal(int_out.cpu(), int_ref)
    del video
    # The video gradient (deterministic gather, writes every voxel) on a uint8-sized problem.
    big = torch.zeros(1, 1, t, h, w, dtype=torch.float16, device=DEVICE)
    big[..., t - 4:, h - 40:, w - 40:] = patch.to(DEVICE)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        gv, _ = torch.ops.cubecrop.crop_cubes_backward(grad_out.to(DEVICE), big, centers.detach(), list(size), 0,
                                                       True, False)
    finally:
        torch.use_deterministic_algorithms(previous)
    _, ref_gv, _ = _ref_crop_and_grads(patch, local, size, "zeros", grad_out.float())
    corner = gv[..., t - 4:, h - 40:, w - 40:].cpu().double()
    torch.testing.assert_close(corner, ref_gv, rtol=2e-2, atol=2e-2)
    assert torch.count_nonzero(gv).item() == torch.count_nonzero(corner).item()  # nothing outside the windows


@pytest.mark.skipif(torch.cuda.is_available() and _free_bytes() < 16 * 2**30, reason="needs ~16 GiB of free GPU memory")
def test_many_small_videos_beyond_int32_total():
    """2.3e9 elements in total but small batch items: 32-bit kernels with 64-bit batch/cube bases."""
    n = 70000
    video = torch.empty(n, 1, 2, 128, 128, dtype=torch.float16, device=DEVICE)
    values = (torch.arange(n, device=DEVICE) % 1024).to(torch.float16)
    video.copy_(values.view(n, 1, 1, 1, 1).expand_as(video))  # a broadcast view: no full-size temporary
    assert video.numel() > 2**31
    centers = torch.tensor([1.0, 64.0, 64.0], device=DEVICE).expand(n, 1, 3).contiguous()
    out = cubecrop.crop_cubes(video, centers, (2, 8, 8), backend="cuda")
    expected = (torch.arange(n, device=DEVICE) % 1024).to(torch.float16)
    assert torch.equal(out[:, 0, 0, 0, 0, 0], expected)
    assert torch.equal(out[-1].amin(), out[-1].amax())
    int_out = cubecrop.crop_cubes_int(video, centers.double(), (2, 8, 8), backend="cuda")
    assert torch.equal(int_out, out)


def test_errors_name_the_argument():
    video = torch.randn(1, 2, 4, 8, 8, device=DEVICE)
    centers = torch.rand(1, 1, 3, device=DEVICE) * 4
    op = torch.ops.cubecrop
    with pytest.raises(RuntimeError, match="centers"):
        op.crop_cubes(video, centers.cpu(), [2, 2, 2], 0)
    with pytest.raises(RuntimeError, match="centers"):
        op.crop_cubes(video, centers.double(), [2, 2, 2], 0)
    with pytest.raises(RuntimeError, match="size"):
        op.crop_cubes(video, centers, [2, 0, 2], 0)
    with pytest.raises(RuntimeError, match="padding_mode"):
        op.crop_cubes(video, centers, [2, 2, 2], 3)
    with pytest.raises(RuntimeError, match="grad_out"):
        op.crop_cubes_backward(torch.ones(1, 1, 2, 2, 2, 3, device=DEVICE), video, centers, [2, 2, 2], 0, True, True)
    with pytest.raises(RuntimeError, match="mean"):
        op.crop_cubes_int(video, centers.double(), [2, 2, 2], False, torch.zeros(3, device=DEVICE), None, torch.float32)
    with pytest.raises(RuntimeError, match="size"):
        op.crop_cubes_int(video, centers.double(), [2, 9, 2], False, None, None, torch.float32)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs to check the device guard")
def test_second_device():
    video = torch.randn(1, 2, 4, 8, 8, device="cuda:1")
    centers = (torch.rand(1, 2, 3) * 4).to("cuda:1")
    out = cubecrop.crop_cubes(video, centers, (2, 4, 4), backend="cuda")
    assert out.device == video.device
    torch.testing.assert_close(out.cpu(), reference.crop_cubes(video.cpu(), centers.cpu(), (2, 4, 4)))
