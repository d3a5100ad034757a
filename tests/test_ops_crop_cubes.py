"""crop_cubes on every backend against the float64 reference: values, gradients, gradcheck,
opcheck, torch.compile, FLOP counting, determinism, layouts (property tests: test_ops_properties.py)."""
import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cubecrop
from cubecrop import reference
from cubecrop._flops import crop_backward_flops, crop_forward_flops
from conftest import Backend, TOLERANCES, check_against_reference, deterministic_guard
from op_inputs import LAYOUTS, PLACEMENTS, make_centers, make_video, overlapping_centers

PADDING_MODES = ["zeros", "border"]
LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


def _case(backend: Backend, seed, shape=(2, 3, 4, 6, 7), k=3, size=(2, 3, 4), placement="any", dtype=torch.float64,
          layout="contiguous", margin=1e-3):
    gen = torch.Generator().manual_seed(seed)
    shape, k = backend.budget(shape, k)
    video = make_video(shape, dtype, backend.device, layout, gen)
    # Low-precision videos get float32 centres, as a model would pass them.
    center_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    centers = make_centers(shape[0], k, shape[2:], size, placement, center_dtype, backend.device, gen, margin=margin)
    return video, centers, size


# --- values and gradients against the reference ------------------------------------


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_float64_matches_reference(backend, placement, padding_mode):
    video, centers, size = _case(backend, 11, placement=placement)
    check_against_reference(backend, video, centers, size, padding_mode)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_low_precision_matches_reference(backend, dtype, padding_mode):
    video, centers, size = _case(backend, 12, dtype=dtype)
    check_against_reference(backend, video, centers, size, padding_mode)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=str)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_overlapping_cubes(backend, padding_mode, dtype):
    # K cubes within a voxel of each other: their video gradients add up in the same voxels
    # (atomics or a fixed-order sum on GPU; fp16 must still accumulate in fp32).
    gen = torch.Generator().manual_seed(13)
    (shape, k), size = backend.budget((2, 2, 5, 6, 6), 4), (3, 4, 3)
    video = make_video(shape, dtype, backend.device, generator=gen)
    center_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    centers = overlapping_centers(shape[0], k, shape[2:], size, center_dtype, backend.device, gen)
    check_against_reference(backend, video, centers, size, padding_mode)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_larger_cubes_span_several_tiles(backend, dtype):
    # Rows wider than one block (Dw = 65 > 64) and many voxels per cube, so GPU kernels
    # run several tiles per cube and reduce the centre gradient across them.
    if backend.interpreted:
        pytest.skip("too many programs for the Triton interpreter")
    gen = torch.Generator().manual_seed(25)
    shape, size = (2, 3, 6, 40, 72), (3, 33, 65)
    video = make_video(shape, dtype, backend.device, "channels_last_3d", gen)
    center_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    centers = make_centers(2, 3, shape[2:], size, "any", center_dtype, backend.device, gen, margin=1e-3)
    check_against_reference(backend, video, centers, size, "border")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_non_contiguous_video(backend, layout, dtype):
    video, centers, size = _case(backend, 14, layout=layout, dtype=dtype)
    assert not video.is_contiguous()
    check_against_reference(backend, video, centers, size, "border")


def test_integer_starts_are_exact_slices(backend):
    gen = torch.Generator().manual_seed(15)
    shape, size = (1, 2, 5, 6, 7), (2, 3, 4)
    video = make_video(shape, torch.float32, backend.device, generator=gen)
    centers = make_centers(1, 3, shape[2:], size, "inside", torch.float32, backend.device, gen, integer_starts=True)
    out = cubecrop.crop_cubes(video, centers, size, backend=backend.name)
    for j in range(3):
        t, y, x = (int(v) for v in (centers[0, j] - torch.tensor(size, device=backend.device) / 2).tolist())
        torch.testing.assert_close(out[0, j], video[0, :, t : t + 2, y : y + 3, x : x + 4], rtol=0, atol=0)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_absurd_centres(backend, padding_mode):
    # Finite but huge centres: no int64 overflow, no out-of-bounds read; same as the reference.
    video = make_video((1, 2, 3, 4, 5), torch.float64, backend.device, generator=torch.Generator().manual_seed(16))
    centers = torch.tensor(
        [[[1e30, 1.3, 2.2], [-1e30, 1.7, 2.9], [1.5, 2.25, 1e300], [-3.0e9, 1.0e12, -7.5]]],
        dtype=torch.float64, device=backend.device,
    )
    check_against_reference(backend, video, centers, (2, 2, 2), padding_mode)


@pytest.mark.parametrize("wanted", ["video", "centers"])
def test_gradient_of_one_input_only(backend, wanted):
    video, centers, size = _case(backend, 17)
    video.requires_grad_(wanted == "video")
    centers.requires_grad_(wanted == "centers")
    out = cubecrop.crop_cubes(video, centers, size, backend=backend.name)
    grad_out = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, video if wanted == "video" else centers, grad_out)
    ref_video = video.detach().double().requires_grad_()
    ref_centers = centers.detach().double().requires_grad_()
    ref_out = reference.crop_cubes(ref_video, ref_centers, size)
    expected = torch.autograd.grad(ref_out, ref_video if wanted == "video" else ref_centers, grad_out.double())[0]
    torch.testing.assert_close(grad.double(), expected, rtol=1e-10, atol=1e-10)


def test_centres_dtype_differs_from_video(backend):
    # float16 centres with a float32 video: output in the video's dtype, centre gradient in the centres'.
    video, centers, size = _case(backend, 18, dtype=torch.float32)
    centers = centers.half().requires_grad_()
    video.requires_grad_()
    out = cubecrop.crop_cubes(video, centers, size, backend=backend.name)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert centers.grad.dtype == torch.float16 and video.grad.dtype == torch.float32
    expected = reference.crop_cubes(video.detach().double(), centers.detach().double(), size)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_non_contiguous_grad_output(backend):
    video, centers, size = _case(backend, 19)
    video.requires_grad_()
    centers.requires_grad_()
    out = cubecrop.crop_cubes(video, centers, size, backend=backend.name)
    grad_out = torch.randn(out.shape[::-1], dtype=out.dtype, device=out.device).permute(5, 4, 3, 2, 1, 0)
    got = torch.autograd.grad(out, (video, centers), grad_out)
    ref_inputs = (video.detach().double().requires_grad_(), centers.detach().double().requires_grad_())
    want = torch.autograd.grad(reference.crop_cubes(*ref_inputs, size), ref_inputs, grad_out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n,k", [(2, 0), (0, 2)])
def test_empty_batch_or_no_cubes(backend, n, k):
    video = torch.randn(n, 2, 3, 4, 5, device=backend.device, requires_grad=True)
    centers = torch.rand(n, k, 3, device=backend.device, requires_grad=True)
    out = cubecrop.crop_cubes(video, centers, (1, 2, 2), backend=backend.name)
    assert out.shape == (n, k, 2, 1, 2, 2)
    out.sum().backward()
    assert video.grad.shape == video.shape and not video.grad.any()
    assert centers.grad.shape == centers.shape


# --- the comparison helper can fail ----------------------------------------------------


def _half_voxel_shift(video, centers, size, padding_mode):
    return reference.crop_cubes(video, centers + torch.tensor([0.0, 0.0, 0.5], dtype=centers.dtype), size, padding_mode)


def _swapped_axes(video, centers, size, padding_mode):
    # y and x centres swapped (square cube so only the sampling point is wrong).
    return reference.crop_cubes(video, centers[..., [0, 2, 1]], size, padding_mode)


def _negated_centre_gradient(video, centers, size, padding_mode):
    flipped = 2 * centers.detach() - centers  # same values, gradient negated
    return reference.crop_cubes(video, flipped, size, padding_mode)


def _halved_video_gradient(video, centers, size, padding_mode):
    halved = video.detach() + 0.5 * (video - video.detach())  # same values, half the gradient
    return reference.crop_cubes(halved, centers, size, padding_mode)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("bug", [_half_voxel_shift, _swapped_axes, _negated_centre_gradient, _halved_video_gradient],
                         ids=lambda f: f.__name__.strip("_"))
def test_comparison_catches_a_wrong_kernel(bug, dtype):
    wrong = Backend("wrong", "cpu", fn=bug)
    video, centers, _ = _case(wrong, 20, shape=(1, 2, 5, 8, 8), size=(2, 3, 3), placement="inside", dtype=dtype)
    with pytest.raises(AssertionError):
        check_against_reference(wrong, video, centers, (2, 3, 3))
    # ... while the reference through the same helper passes (the bug is what fails).
    check_against_reference(Backend("reference", "cpu"), video, centers, (2, 3, 3))


# --- gradcheck ------------------------------------------------------------------------


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("seed", range(4))
def test_gradcheck(backend, seed, padding_mode):
    if seed >= backend.examples(4):
        pytest.skip("fewer seeds for the Triton interpreter")
    # Centres kept 1e-3 off integer starts: the centre gradient jumps there and
    # gradcheck's finite differences (eps 1e-6) must not straddle a jump.
    video, centers, size = _case(backend, 100 + seed, shape=(1, 2, 3, 4, 5), k=2, size=(2, 2, 3), margin=1e-3)
    video.requires_grad_()
    centers.requires_grad_()
    fn = functools.partial(cubecrop.crop_cubes, size=size, padding_mode=padding_mode, backend=backend.name)
    assert torch.autograd.gradcheck(fn, (video, centers), fast_mode=backend.interpreted)


# --- opcheck of the native ops ---------------------------------------------------------


def _native_args(backend, dtype, requires_grad, seed=21):
    video, centers, size = _case(backend, seed, shape=(2, 2, 3, 4, 5), k=2, size=(2, 2, 3), dtype=dtype)
    centers = centers.to(torch.float64 if dtype == torch.float64 else torch.float32)  # the kernels' centre dtype
    return video.requires_grad_(requires_grad), centers.requires_grad_(requires_grad), size


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_opcheck_crop_cubes(native_backend, dtype, requires_grad):
    if native_backend.interpreted and (dtype, requires_grad) not in ((torch.float64, True), (torch.bfloat16, False)):
        pytest.skip("the Triton interpreter is slow: float64 with gradients and bfloat16 cover its registration")
    video, centers, size = _native_args(native_backend, dtype, requires_grad)
    for padding_mode in (0, 1):
        torch.library.opcheck(native_backend.op("crop_cubes").default, (video, centers, size, padding_mode))


@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_opcheck_crop_cubes_backward(native_backend, dtype, needs):
    if native_backend.interpreted and dtype != torch.float64:
        pytest.skip("the Triton interpreter is slow: float64 covers its registration")
    video, centers, size = _native_args(native_backend, dtype, False)
    grad_out = torch.randn(video.shape[0], centers.shape[1], video.shape[1], *size, device=video.device).to(dtype)
    op = native_backend.op("crop_cubes_backward").default
    torch.library.opcheck(op, (grad_out, video, centers, size, 1, *needs))


def test_backward_op_skips_unneeded_gradients(native_backend):
    video, centers, size = _native_args(native_backend, torch.float32, False)
    grad_out = torch.randn(video.shape[0], centers.shape[1], video.shape[1], *size, device=video.device)
    backward = native_backend.op("crop_cubes_backward")
    grad_video, grad_centers = backward(grad_out, video, centers, size, 0, False, True)
    assert grad_video.numel() == 0 and grad_centers.shape == centers.shape
    grad_video, grad_centers = backward(grad_out, video, centers, size, 0, True, False)
    assert grad_video.shape == video.shape and grad_centers.numel() == 0


# --- torch.compile ------------------------------------------------------------------


def _compile_case(backend, compiler):
    torch._dynamo.reset()
    video, centers, size = _case(backend, 22, shape=(1, 2, 3, 5, 5), k=2, size=(2, 3, 3), dtype=torch.float32)

    def step(video, centers):
        return cubecrop.crop_cubes(video, centers, size, "border", backend=backend.name).square().sum()

    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    results = []
    for fn in (step, compiled):
        v, c = video.clone().requires_grad_(), centers.clone().requires_grad_()
        loss = fn(v, c)
        loss.backward()
        results.append((loss.detach(), v.grad, c.grad))
    for eager, traced in zip(*results):
        torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_compile_fullgraph(backend, compiler):
    _compile_case(backend, compiler)


def test_compile_fullgraph_inductor(backend):
    if backend.interpreted:
        pytest.skip("inductor + Triton interpreter: covered by aot_eager")
    _compile_case(backend, "inductor")


# --- FLOP counting ------------------------------------------------------------------


def test_flop_counter_counts_forward_and_backward(backend):
    video, centers, size = _case(backend, 23, dtype=torch.float32)
    video.requires_grad_()
    centers.requires_grad_()
    with FlopCounterMode(display=False) as forward_counter:
        out = cubecrop.crop_cubes(video, centers, size, backend=backend.name)
    with FlopCounterMode(display=False) as backward_counter:
        out.backward(torch.ones_like(out))
    forward, backward = forward_counter.get_total_flops(), backward_counter.get_total_flops()
    assert forward > 0 and backward > 0
    if backend.native:  # the op's registered formula, exactly
        assert forward == crop_forward_flops(out.shape)
        assert backward == crop_backward_flops(out.shape)


# --- determinism ----------------------------------------------------------------------


def _gradients(backend, video, centers, size, grad_out):
    v, c = video.clone().requires_grad_(), centers.clone().requires_grad_()
    out = cubecrop.crop_cubes(v, c, size, "border", backend=backend.name)
    return torch.autograd.grad(out, (v, c), grad_out)


def test_deterministic_mode_gives_bit_identical_gradients(backend):
    gen = torch.Generator().manual_seed(24)
    (shape, k), size = backend.budget((2, 3, 4, 7, 7), 3), (3, 4, 4)
    n, c = shape[:2]
    video = make_video(shape, torch.float32, backend.device, generator=gen)
    # Overlapping cubes plus border clamping: several contributions per video voxel.
    centers = torch.cat(
        [overlapping_centers(n, k, shape[2:], size, torch.float32, backend.device, gen),
         make_centers(n, 1, shape[2:], size, "border", torch.float32, backend.device, gen)],
        dim=1,
    )
    grad_out = torch.randn(n, k + 1, c, *size, generator=gen).to(backend.device)
    with deterministic_guard(True):
        first = _gradients(backend, video, centers, size, grad_out)
        second = _gradients(backend, video, centers, size, grad_out)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # The centre gradient is deterministic by construction (one fixed-order reduction per cube).
    third = _gradients(backend, video, centers, size, grad_out)
    assert torch.equal(first[1], third[1])


def test_deterministic_guard_restores_flags():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    with deterministic_guard(True, warn_only=True):
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) == before


# The tolerances table covers every floating dtype the ops accept.
def test_tolerances_cover_every_float_dtype():
    from cubecrop.ops import FLOAT_DTYPES

    assert set(FLOAT_DTYPES) == set(TOLERANCES)
