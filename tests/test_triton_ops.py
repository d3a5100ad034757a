"""The Triton backend (cubecrop/triton) against the float64 reference, op by op.

Runs on CPU tensors under triton's interpreter (CI has no GPU) and, where a GPU
with a Triton driver is present, on CUDA tensors with the compiled kernels.
tests/test_ops_crop_cubes.py also runs its backend-generic tests on "triton";
this file covers what is specific to the Triton package: both op families and
their registrations (opcheck, compile, FLOPs), the tile edges of the kernels,
the backward op's flags, crop_cubes_int, and the interpreter/compiled split.

The interpreter runs each program in Python (~30-50 ms for these kernels), so
cases are sized to a few dozen programs each while still spanning several row
and column tiles (the interpreted copy uses TILE=256, BLOCK_W <= 16).
"""
import os
import re
import types

import torch

# Only needed for is_available("cpu") and the public API: the kernels themselves
# are loaded in interpreted form for CPU tensors whatever the order of imports.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import cubecrop  # noqa: E402
import cubecrop.triton as triton_backend  # noqa: E402
from cubecrop import reference  # noqa: E402
from cubecrop._flops import crop_backward_flops, crop_forward_flops, crop_int_flops  # noqa: E402
from cubecrop.triton import _launch  # noqa: E402
from cubecrop.triton._loader import load_kernels  # noqa: E402
from conftest import CENTER_GRAD_TOLERANCES, TOLERANCES, assert_matches, deterministic_guard, reference_crop  # noqa: E402
from op_inputs import make_centers, make_video, overlapping_centers  # noqa: E402

PADDING = {"zeros": 0, "border": 1}
DEVICES = [
    pytest.param(
        device,
        id=device,
        marks=pytest.mark.skipif(
            not triton_backend.is_available(device),
            reason=f"Triton cannot run on {device} here"
            + (" (set TRITON_INTERPRET=1)" if device == "cpu" else " (no GPU with a Triton driver)"),
        ),
    )
    for device in ("cpu", "cuda")
]


def ops_for(device):
    """The op family cubecrop.triton dispatches `device`'s tensors to."""
    prefix = "triton_interpret_" if device == "cpu" else "triton_"
    ns = torch.ops.cubecrop
    return (getattr(ns, f"{prefix}crop_cubes"), getattr(ns, f"{prefix}crop_cubes_backward"),
            getattr(ns, f"{prefix}crop_cubes_int"))


def crop_case(device, dtype, seed, shape=(1, 3, 5, 7, 21), k=None, size=(2, 3, 18), placement=None, layout="contiguous"):
    """A video and centres; by default one cube inside, one across a border and one
    entirely outside per video. Default sizes: rows C*Dt*Dh = 18 > 16 and Dw = 18 > 16,
    so each cube spans 2 x 2 tiles in the interpreted copy."""
    gen = torch.Generator().manual_seed(seed)
    video = make_video(shape, dtype, device, layout, gen)
    center_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    placements = [placement] * (k or 1) if placement else ["inside", "border", "outside"]
    centers = torch.cat(
        [make_centers(shape[0], 1, shape[2:], size, p, center_dtype, device, gen, margin=1e-3) for p in placements], dim=1
    )
    return video, centers, list(size)


def assert_same(actual, expected):
    """Bit-identical on CPU (the interpreter runs programs in order); on a GPU, where
    differently specialised kernels or atomics may round differently, to fp32 rounding."""
    if actual.device.type == "cpu":
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    else:
        torch.testing.assert_close(actual, expected)


def check_crop(video, centers, size, padding_mode, grad_out_layout="contiguous"):
    """Forward and both gradients through cubecrop.crop_cubes(backend="triton") vs the reference."""
    dtype = video.dtype
    n, c = video.shape[:2]
    gen = torch.Generator().manual_seed(99)
    out_shape = (n, centers.shape[1], c, *size)
    grad_out = torch.randn(out_shape, dtype=torch.float64, generator=gen).to(dtype=dtype, device=video.device)
    if grad_out_layout == "transposed":
        grad_out = grad_out.transpose(-1, -2).contiguous().transpose(-1, -2)
    v = video.detach().requires_grad_()
    ctr = centers.detach().requires_grad_()
    out = cubecrop.crop_cubes(v, ctr, size, padding_mode, backend="triton")
    grad_video, grad_centers = torch.autograd.grad(out, (v, ctr), grad_out)
    want, want_video, want_centers = reference_crop(video, centers, size, padding_mode, grad_out)
    # Guard against a vacuous case (every cube outside the video).
    assert want.abs().max() > 0 and want_centers.abs().max() > 0, "degenerate test case"
    assert out.dtype == dtype and out.device == video.device and out.is_contiguous()
    tol = TOLERANCES[dtype]
    assert_matches(out, want, tol, f"values {dtype} {padding_mode}")
    assert grad_video.dtype == dtype and grad_centers.dtype == centers.dtype
    assert_matches(grad_video, want_video, tol, f"grad video {dtype} {padding_mode}")
    assert_matches(grad_centers, want_centers, CENTER_GRAD_TOLERANCES[dtype], f"grad centers {dtype} {padding_mode}")


# --- availability and the two kernel copies ------------------------------------------


def test_is_available_on_cpu_follows_triton_interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_backend.is_available("cpu")
    assert "triton" in cubecrop.available_backends("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not triton_backend.is_available("cpu")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not triton_backend.is_available("cpu")
    assert "triton" not in cubecrop.available_backends("cpu")
    assert not triton_backend.is_available("meta")


def test_cuda_availability_matches_the_machine():
    assert triton_backend.is_available("cuda") == (torch.cuda.is_available() and triton_backend.gpu_driver_active())
    if not torch.cuda.is_available():
        assert not triton_backend.is_available("cuda")


def test_gpu_ops_are_registered_only_with_a_gpu():
    # Registering the GPU triton_ops imports torch._inductor (seconds), which CPU-only
    # users of cubecrop.available_backends should not pay.
    from cubecrop.triton import _ops

    assert (_ops.compiled_crop_cubes is not None) == torch.cuda.is_available()
    assert hasattr(torch.ops.cubecrop, "triton_crop_cubes") == torch.cuda.is_available()


def test_both_kernel_copies_load_without_touching_the_environment():
    before = os.environ.get("TRITON_INTERPRET")
    interpreted, compiled = load_kernels(True), load_kernels(False)
    assert interpreted.INTERPRETED and not compiled.INTERPRETED
    assert type(interpreted.crop_forward_kernel.fn).__name__ == "InterpretedFunction"
    assert type(compiled.crop_forward_kernel.fn).__name__ == "JITFunction"
    # Multi-config autotuning needs a GPU: the interpreted copy has exactly one config.
    assert len(interpreted.crop_backward_kernel.configs) == 1
    assert len(compiled.crop_backward_kernel.configs) == (1 if compiled.ONE_CONFIG else len(compiled.CONFIGS)) > 0
    assert compiled.ONE_CONFIG or len(compiled.CONFIGS) > 1
    assert os.environ.get("TRITON_INTERPRET") == before


def _compile_for_sm90(kernel, pointer_types, constexprs, num_warps):
    """Compile one specialisation of a compiled-copy kernel to a cubin for sm_90. Needs
    no GPU (triton ships ptxas), so CI catches code the interpreter accepts but the
    compiler rejects (types, constexpr use)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel.fn  # the JITFunction under the autotuner
    signature = {
        name: "constexpr" if name in constexprs else pointer_types.get(name, "i32") for name in fn.arg_names
    }
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


@pytest.mark.parametrize("name", ["forward", "backward", "int"])
def test_compiled_kernels_build_for_a_gpu(name):
    pytest.importorskip("triton.backends.nvidia.compiler", reason="triton without its NVIDIA backend")
    compiled = load_kernels(False)
    tile = {"BLOCK_W": 128, "TILE": 512}
    if name == "forward":
        kernel, pointers = compiled.crop_forward_kernel, {"video_ptr": "*bf16", "centers_ptr": "*fp32", "out_ptr": "*bf16"}
        constexprs = {"PADDING": 1, **tile}
    elif name == "backward":
        kernel = compiled.crop_backward_kernel
        pointers = {"grad_out_ptr": "*fp16", "video_ptr": "*fp16", "centers_ptr": "*fp32", "grad_video_ptr": "*fp32",
                    "partials_ptr": "*fp32"}
        constexprs = {"PADDING": 0, "NEED_VIDEO": True, "NEED_CENTERS": True, **tile}
    else:
        kernel = compiled.crop_int_kernel
        pointers = {"video_ptr": "*u8", "centers_ptr": "*fp64", "mean_ptr": "*fp32", "std_ptr": "*fp32", "out_ptr": "*fp16"}
        constexprs = {"HAS_MEAN": True, "HAS_STD": True, "COMPUTE_FP64": False, **tile}
    binary = _compile_for_sm90(kernel, pointers, constexprs, num_warps=4)
    assert binary.asm["cubin"], "no cubin produced"
    if name == "backward":
        # The video gradient's atomics need no ordering: relaxed, not the default acq_rel
        # (a fence, a returning atomic and an L1 invalidate each).
        atomics = set(re.findall(r"\batom\.[\w.]+", binary.asm["ptx"]))
        assert atomics == {"atom.global.gpu.relaxed.add.f32"}, atomics


def test_autotune_keys_name_kernel_arguments():
    # A key name that is not an argument of the kernel is silently ignored by triton.
    compiled = load_kernels(False)
    for kernel, flags in ((compiled.crop_forward_kernel, {"PADDING"}),
                          (compiled.crop_backward_kernel, {"PADDING", "NEED_VIDEO", "NEED_CENTERS"}),
                          (compiled.crop_int_kernel, {"HAS_MEAN", "HAS_STD", "COMPUTE_FP64"})):
        assert set(kernel.keys) >= {"C", "Dt", "Dh", "Dw"} | flags, kernel.keys
        assert set(kernel.keys) <= set(kernel.arg_names), kernel.keys


def test_one_config_knob(monkeypatch):
    import sys

    name = "cubecrop.triton._kernels_compiled"
    load_kernels(False)
    monkeypatch.setitem(sys.modules, name, sys.modules[name])  # restored after the fresh load below
    monkeypatch.setenv("CUBECROP_TRITON_ONE_CONFIG", "1")
    single = load_kernels.__wrapped__(False)
    assert single.ONE_CONFIG and not single.INTERPRETED
    for kernel in (single.crop_forward_kernel, single.crop_backward_kernel, single.crop_int_kernel):
        assert len(kernel.configs) == 1
    assert single.MIN_TILE == single.CONFIGS[0].kwargs["TILE"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU op family is registered only with a GPU")
def test_compiled_ops_reject_cpu_tensors():
    video = torch.zeros(1, 1, 2, 2, 2)
    centers = torch.ones(1, 1, 3)
    with pytest.raises(ValueError, match="GPU tensors"):
        torch.ops.cubecrop.triton_crop_cubes(video, centers, [1, 1, 1], 0)


# --- crop_cubes: values and gradients ------------------------------------------------


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_crop_matches_reference(device, dtype, padding_mode):
    video, centers, size = crop_case(device, dtype, seed=1)
    check_crop(video, centers, size, padding_mode)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("device", DEVICES)
def test_overlapping_and_far_away_cubes(device, padding_mode):
    # Overlapping cubes add into the same video voxels (atomics across programs);
    # centres 1e6 voxels away exercise the clamp before the integer cast.
    gen = torch.Generator().manual_seed(2)
    shape, size = (1, 2, 4, 6, 9), [3, 4, 6]
    video = make_video(shape, torch.float32, device, generator=gen)
    centers = overlapping_centers(1, 4, shape[2:], size, torch.float32, device, gen)
    centers[0, 3] = torch.tensor([1e6, -1e6, 3.3])
    check_crop(video, centers, size, padding_mode)


@pytest.mark.parametrize("layout", ["permuted", "sliced", "channels_last_3d"])
@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device, layout):
    video, centers, size = crop_case(device, torch.float64, seed=3, shape=(2, 2, 4, 9, 8), size=(2, 3, 5), layout=layout)
    assert not video.is_contiguous()
    check_crop(video, centers, size, "border", grad_out_layout="transposed")
    # Centres as a strided view reach the kernels unchanged (the ops take any strides).
    wide = torch.zeros(centers.shape[0], centers.shape[1], 6, dtype=centers.dtype, device=device)
    wide[..., ::2] = centers
    crop, _, _ = ops_for(device)
    assert_same(crop(video, wide[..., ::2], size, 0), crop(video, centers, size, 0))


def test_gradcheck_float64():
    if not triton_backend.is_available("cpu"):
        pytest.skip("Triton cannot run on cpu here (set TRITON_INTERPRET=1)")
    for padding_mode in ("zeros", "border"):
        video, centers, size = crop_case("cpu", torch.float64, seed=4, shape=(1, 1, 3, 4, 5), size=(2, 2, 3), placement="border")
        fn = lambda v, c: cubecrop.crop_cubes(v, c, size, padding_mode, backend="triton")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (video.requires_grad_(), centers.requires_grad_()), fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_op_computes_only_what_is_asked(device):
    video, centers, size = crop_case(device, torch.float32, seed=5, shape=(1, 2, 4, 6, 6), size=(2, 3, 4), k=2, placement="border")
    _, backward, _ = ops_for(device)
    grad_out = torch.randn(1, centers.shape[1], 2, *size, device=device)
    both = backward(grad_out, video, centers, size, 1, True, True)
    video_only = backward(grad_out, video, centers, size, 1, True, False)
    centers_only = backward(grad_out, video, centers, size, 1, False, True)
    assert video_only[1].numel() == 0 and centers_only[0].numel() == 0
    assert_same(video_only[0], both[0])
    assert_same(centers_only[1], both[1])
    # The centre gradient is a fixed-order sum of per-tile partials: bit-identical on reruns.
    torch.testing.assert_close(backward(grad_out, video, centers, size, 1, False, True)[1], both[1], rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    crop, backward, _ = ops_for(device)
    video = torch.randn(2, 1, 3, 3, 3, device=device)
    no_cubes = torch.zeros(2, 0, 3, device=device)
    assert crop(video, no_cubes, [1, 2, 2], 0).shape == (2, 0, 1, 1, 2, 2)
    grad_video, grad_centers = backward(torch.zeros(2, 0, 1, 1, 2, 2, device=device), video, no_cubes, [1, 2, 2], 0, True, True)
    assert grad_video.shape == video.shape and not grad_video.any() and grad_centers.shape == (2, 0, 3)


def test_autotuned_backward_resets_its_accumulators():
    # On a GPU the backward kernel is autotuned: every config is benchmarked on the
    # real buffers before the real run. Replays that here with two tile sizes and a
    # scripted benchmarker that picks the larger tile (the interpreter has no timer):
    # without the final reset the video gradient would count every benchmark run,
    # and the centre gradient would keep the small-tile run's extra partials.
    if not triton_backend.is_available("cpu"):
        pytest.skip("Triton cannot run on cpu here (set TRITON_INTERPRET=1)")
    import triton

    interpreted = load_kernels(True)
    timings = iter([2.0, 1.0])  # config order: TILE=64, then TILE=256 (chosen)
    timed = []  # per benchmark run: the reset list and |grad video| as the timed call starts

    def benchmarker(kernel_call, quantiles):
        for _ in range(2):
            timed.append((list(tuned.reset_to_zero), float(tuned.nargs["grad_video_ptr"].abs().sum())))
            kernel_call()
        return next(timings)

    tuned = interpreted.autotune(
        configs=[triton.Config({"TILE": 64}), triton.Config({"TILE": 256})],
        key=interpreted.BACKWARD_KEY,
        reset_to_zero=interpreted.BACKWARD_RESET_TO_ZERO,
        benchmarker=benchmarker,
    )(interpreted.crop_backward_kernel.fn)
    kernels = types.SimpleNamespace(**{**vars(interpreted), "crop_backward_kernel": tuned, "MIN_TILE": 64})
    video, centers, size = crop_case(
        "cpu", torch.float64, seed=11, shape=(1, 2, 4, 6, 21), k=2, size=(2, 4, 18), placement="inside"
    )
    grad_out = torch.randn(1, 2, 2, *size, dtype=torch.float64)
    got = _launch.crop_backward(kernels, lambda kernel: kernel, grad_out, video, centers, size, 0, True, True)
    assert tuned.best_config.kwargs["TILE"] == 256
    # The timed runs zero nothing (no memset of the whole video gradient is timed):
    # the gradient only grows from run to run; the list is back for the final reset.
    assert [resets for resets, _ in timed] == [[]] * 4
    sums = [total for _, total in timed]
    assert sums[0] == 0 and all(b > a for a, b in zip(sums, sums[1:])), sums
    assert tuned.reset_to_zero == interpreted.BACKWARD_RESET_TO_ZERO
    _, want_video, want_centers = reference_crop(video, centers, size, "zeros", grad_out)
    assert_matches(got[0], want_video, TOLERANCES[torch.float64], "grad video after autotuning")
    assert want_centers.abs().min() > 0, "degenerate case: every centre gradient component must be non-zero"
    assert_matches(got[1], want_centers, TOLERANCES[torch.float64], "grad centers after autotuning")


# --- crop_cubes_int -------------------------------------------------------------------


def _int_case(device, dtype, channels_last, seed=6):
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 3, 5, 9, 20)  # (N, C, T, H, W)
    video = make_video(shape, dtype, device, generator=gen)
    if dtype == torch.uint8:
        video = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).to(device)
    if channels_last:
        video = video.permute(0, 2, 3, 4, 1).contiguous()  # (N, T, H, W, C) as a decoder gives
    # Centres anywhere, including outside the video (the start is clamped inside).
    centers = (torch.rand(2, 3, 3, generator=gen, dtype=torch.float64) * 30 - 5).to(device)
    # One exact tie: c - D/2 = 2.5 rounds up to 3 on every axis.
    centers[0, 0] = torch.tensor([2.5, 2.5, 2.5]) + torch.tensor([2, 4, 17], dtype=torch.float64) / 2
    return video, centers, [2, 4, 17]


@pytest.mark.parametrize(
    "dtype,channels_last,normalise,out_dtype",
    [
        (torch.uint8, True, True, torch.float32),
        (torch.uint8, True, False, None),
        (torch.uint8, False, True, torch.float16),
        (torch.uint8, False, False, torch.float32),
        (torch.int16, False, False, None),
        (torch.float16, True, False, None),
        (torch.bfloat16, False, False, None),
        (torch.float64, False, True, torch.float64),
    ],
    ids=str,
)
@pytest.mark.parametrize("device", DEVICES)
def test_crop_int_matches_reference(device, dtype, channels_last, normalise, out_dtype):
    video, centers, size = _int_case(device, dtype, channels_last)
    stats = {}
    if normalise:
        stats = {"mean": [0.485 * 255, 0.456 * 255, 0.406 * 255], "std": [0.229 * 255, 0.224 * 255, 0.225 * 255]}
    kwargs = dict(channels_last=channels_last, out_dtype=out_dtype, **stats)
    got = cubecrop.crop_cubes_int(video, centers, size, backend="triton", **kwargs)
    want = cubecrop.crop_cubes_int(video.cpu(), centers.cpu(), size, backend="reference", **kwargs)
    assert got.dtype == want.dtype and got.shape == want.shape and got.device == video.device
    if normalise and got.dtype != torch.float64:
        # fp32 arithmetic vs the reference's float64: one or two roundings apart.
        tol = {torch.float32: 1e-6, torch.float16: 1e-3}[got.dtype]
        torch.testing.assert_close(got.cpu().double(), want.double(), rtol=tol, atol=tol)
    else:
        assert torch.equal(got.cpu(), want), "an integer crop is a copy: it must be exact"


@pytest.mark.parametrize("device", DEVICES)
def test_crop_int_mean_only_and_std_only(device):
    video, centers, size = _int_case(device, torch.uint8, channels_last=False)
    for stats in ({"mean": [10.0, 20.0, 30.0]}, {"std": [2.0, 4.0, 8.0]}):
        got = cubecrop.crop_cubes_int(video, centers, size, backend="triton", **stats)
        want = cubecrop.crop_cubes_int(video.cpu(), centers.cpu(), size, backend="reference", **stats)
        torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)


# --- registration: opcheck, torch.compile, FLOPs --------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    crop, backward, crop_int = ops_for(device)
    video, centers, size = crop_case(device, torch.float32, seed=7, shape=(1, 2, 3, 4, 5), size=(2, 2, 3), k=2, placement="border")
    torch.library.opcheck(crop, (video.requires_grad_(), centers.requires_grad_(), size, 1))
    grad_out = torch.randn(1, 2, 2, *size, device=device)
    torch.library.opcheck(backward, (grad_out, video.detach(), centers.detach(), size, 0, True, True))
    torch.library.opcheck(backward, (grad_out, video.detach(), centers.detach(), size, 0, False, True))
    u8 = torch.randint(0, 256, (1, 3, 4, 5, 2), dtype=torch.uint8, device=device)  # channels last, C = 2
    c64 = centers.detach().double()
    stats = torch.tensor([100.0, 50.0], device=device)
    torch.library.opcheck(crop_int, (u8, c64, [2, 3, 4], True, stats, stats, torch.float32))
    torch.library.opcheck(crop_int, (u8.permute(0, 4, 1, 2, 3), c64, [2, 3, 4], False, None, None, torch.uint8))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device):
    # On CPU the ops are opaque (aot_eager shows the fake kernels and autograd trace);
    # on GPU inductor traces into the triton_op bodies and their kernels.
    compiler = "inductor" if device == "cuda" else "aot_eager"
    video, centers, size = crop_case(device, torch.float32, seed=8, shape=(1, 2, 3, 5, 6), size=(2, 3, 4), k=2, placement="border")

    def loss(v, c):
        cubes = cubecrop.crop_cubes(v, c, size, "zeros", backend="triton")
        # (std= is left out: cubecrop.ops checks std != 0 on the data, which breaks fullgraph.)
        ints = cubecrop.crop_cubes_int(v, c.detach(), size, mean=[0.5, 0.5], backend="triton")
        return (cubes * cubes).sum() + ints.sum()

    eager = [t.detach().requires_grad_() for t in (video, centers)]
    traced = [t.detach().requires_grad_() for t in (video, centers)]
    want = loss(*eager)
    want.backward()
    got = torch.compile(loss, fullgraph=True, backend=compiler)(*traced)
    got.backward()
    torch.testing.assert_close(got, want)
    for a, b in zip(traced, eager):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_flop_counter_counts_the_triton_ops(device):
    video, centers, size = crop_case(device, torch.float32, seed=9, shape=(1, 1, 3, 4, 5), size=(2, 2, 3), k=2, placement="border")
    video.requires_grad_()
    out_shape = (1, 2, 1, *size)
    with FlopCounterMode(display=False) as counter:
        cubecrop.crop_cubes(video, centers, size, backend="triton").sum().backward()
    assert counter.get_total_flops() == crop_forward_flops(out_shape) + crop_backward_flops(out_shape)
    with FlopCounterMode(display=False) as counter:
        cubecrop.crop_cubes_int(video.detach(), centers, size, mean=[1.0], backend="triton")
    assert counter.get_total_flops() == crop_int_flops(out_shape, True)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_mode_takes_the_gather_path(device, padding_mode):
    # Overlapping cubes plus cubes across the border (clamped taps pile onto edge voxels).
    gen = torch.Generator().manual_seed(10)
    shape, size = (2, 2, 4, 6, 7), [3, 4, 5]
    video = make_video(shape, torch.float32, device, generator=gen)
    centers = torch.cat(
        [overlapping_centers(2, 2, shape[2:], size, torch.float32, device, gen),
         make_centers(2, 1, shape[2:], size, "border", torch.float32, device, gen)],
        dim=1,
    )
    with deterministic_guard(True):
        check_crop(video, centers, size, padding_mode)
        _, backward, _ = ops_for(device)
        grad_out = torch.randn(2, 3, 2, *size, generator=gen).to(device)
        first = backward(grad_out, video, centers, size, PADDING[padding_mode], True, True)
        second = backward(grad_out, video, centers, size, PADDING[padding_mode], True, True)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # Outside deterministic mode the atomic kernel gives the same gradient up to rounding.
    fast = backward(grad_out, video, centers, size, PADDING[padding_mode], True, False)
    torch.testing.assert_close(fast[0], first[0], rtol=1e-5, atol=1e-5)
