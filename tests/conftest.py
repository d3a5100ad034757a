"""Shared fixtures of the test suite: the backends every op test runs against.

Each op test takes the `backend` fixture and runs once per (device, backend)
pair, so the cpu, cuda and triton kernels are all checked by the same code:
  cpu:  cubecrop.available_backends("cpu") minus "reference" (cpu; triton under
        TRITON_INTERPRET=1, with tiny shapes: the interpreter runs ~0.5 ms per program)
  cuda: "cuda" and "triton", skipped with the reason when there is no GPU.
$CUBECROP_TEST_BACKENDS (e.g. "cpu:reference,cpu:cpu") overrides the list; it is how
the tests were developed against the reference before the kernels existed.
"""
import os

import torch

# Triton decides at @triton.jit time whether to interpret, so this must precede any
# import of cubecrop.triton. With a GPU the compiled kernels are tested instead.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import contextlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable, Optional  # noqa: E402

import pytest  # noqa: E402

import cubecrop  # noqa: E402


@dataclass(frozen=True)
class Backend:
    name: str  # cubecrop backend name, passed as backend=
    device: str  # "cpu" or "cuda": where the test tensors live
    interpreted: bool = False  # the Triton interpreter: keep shapes and example counts tiny
    # Tests of the test helpers plug a deliberately wrong crop in here: (video, centers, size, padding_mode) -> out.
    fn: Optional[Callable] = None

    @property
    def id(self) -> str:
        return f"{self.device}-{self.name}"

    @property
    def native(self) -> bool:
        """Whether the backend runs torch.library ops (C++/CUDA kernels, or Triton's op families)."""
        return self.name in ("cpu", "cuda", "triton")

    def op(self, name: str):
        """The torch.ops.cubecrop op behind `name` (crop_cubes, crop_cubes_backward, crop_cubes_int)."""
        if self.name in ("cpu", "cuda"):
            return getattr(torch.ops.cubecrop, name)
        if self.name == "triton":  # cubecrop/triton/_ops.py: one op family per kernel copy
            return getattr(torch.ops.cubecrop, ("triton_interpret_" if self.device == "cpu" else "triton_") + name)
        raise ValueError(f"backend {self.name!r} has no torch.library op")

    def budget(self, shape, k: int):
        """(shape, K) cut down for the Triton interpreter (one batch item, <= 2 channels, <= 2 cubes):
        it runs ~0.5 ms per program, i.e. per tile of each cube. Extents and cube sizes stay."""
        if not self.interpreted:
            return tuple(shape), k
        return (1, min(shape[1], 2), *shape[2:]), min(k, 2)

    def crop(self, video, centers, size, padding_mode="zeros"):
        if self.fn is not None:
            return self.fn(video, centers, size, padding_mode)
        return cubecrop.crop_cubes(video, centers, size, padding_mode, backend=self.name)

    def examples(self, count: int) -> int:
        """How many hypothesis examples / seeds to spend on this backend: few under the
        interpreter (slow programs) and on a GPU (each new cube shape is a Triton
        autotune key and a CUDA-side compile; the GPU check has minutes in all)."""
        if self.interpreted:
            return max(2, count // 8)
        if self.device == "cuda":
            return min(count, 8)
        return count


def _skip_reason(backend: Backend):
    if backend.device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device on this machine"
    if backend.name not in cubecrop.available_backends(backend.device):
        if backend.name == "cuda":
            return "the CUDA kernels were not built (FORCE_CUDA=1 builds them)"
        if backend.name == "triton":
            return f"Triton backend not available on {backend.device}"
        return f"backend {backend.name!r} not available on {backend.device}"
    return None


def backends_override():
    """The (device, backend) pairs $CUBECROP_TEST_BACKENDS names, or None when it is unset."""
    override = os.environ.get("CUBECROP_TEST_BACKENDS")
    if not override:
        return None
    return [tuple(item.strip().split(":")) for item in override.split(",") if item.strip()]


def _declared_backends():
    pairs = backends_override()
    if pairs is not None:
        return [Backend(name, device, name == "triton" and device == "cpu") for device, name in pairs]
    cpu = [name for name in cubecrop.available_backends("cpu") if name != "reference"]
    found = [Backend(name, "cpu", interpreted=(name == "triton")) for name in cpu]
    if "triton" not in cpu:
        found.append(Backend("triton", "cpu", interpreted=True))  # listed, so the skip reason shows
    found += [Backend("cuda", "cuda"), Backend("triton", "cuda")]
    return found


def backend_params(only_native: bool = False):
    params = []
    for backend in _declared_backends():
        if only_native and not backend.native:
            continue
        reason = _skip_reason(backend)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(backend, id=backend.id, marks=marks))
    return params


BACKEND_PARAMS = backend_params()
NATIVE_BACKEND_PARAMS = backend_params(only_native=True)


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> Backend:
    return request.param


@pytest.fixture(params=NATIVE_BACKEND_PARAMS)
def native_backend(request) -> Backend:
    return request.param


@contextlib.contextmanager
def deterministic_guard(mode: bool = True, warn_only: bool = False):
    """Set torch.use_deterministic_algorithms and restore both of its flags afterwards."""
    previous_mode = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_mode, warn_only=previous_warn)


# --- comparison with the float64 reference -------------------------------------------

# Per input dtype: relative tolerance; the absolute tolerance is the same times the
# largest reference magnitude. Low-precision outputs carry one rounding of the result
# (fp16 2^-11, bf16 2^-8 relative) on top of fp32 accumulation.
TOLERANCES = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 3e-3,
    torch.bfloat16: 2e-2,
}
# Centre gradients of fp16/bf16 videos are float32 sums of exactly representable
# products (fp32 accumulation, docs/design.md), so they are held tighter.
CENTER_GRAD_TOLERANCES = {**TOLERANCES, torch.float16: 1e-3, torch.bfloat16: 1e-3}


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    """|actual - expected| <= tol * (|expected| + max(1, max |expected|)), elementwise."""
    actual = actual.detach().to("cpu", torch.float64)
    expected = expected.detach().to("cpu", torch.float64)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def reference_crop(video, centers, size, padding_mode="zeros", grad_out=None):
    """The float64 reference on CPU: output, and with grad_out also (grad_video, grad_centers)."""
    from cubecrop import reference

    v = video.detach().to("cpu", torch.float64).requires_grad_(grad_out is not None)
    c = centers.detach().to("cpu", torch.float64).requires_grad_(grad_out is not None)
    out = reference.crop_cubes(v, c, size, padding_mode)
    if grad_out is None:
        return out
    grad_video, grad_centers = torch.autograd.grad(out, (v, c), grad_out.detach().to("cpu", torch.float64))
    return out, grad_video, grad_centers


def backend_crop(backend: Backend, video, centers, size, padding_mode="zeros", grad_out=None):
    """The same through `backend` on the tensors as given (device and layout preserved)."""
    v = video.detach().requires_grad_(grad_out is not None)
    c = centers.detach().requires_grad_(grad_out is not None)
    out = backend.crop(v, c, size, padding_mode)
    if grad_out is None:
        return out
    grad_video, grad_centers = torch.autograd.grad(out, (v, c), grad_out)
    return out, grad_video, grad_centers


def check_against_reference(backend: Backend, video, centers, size, padding_mode="zeros", grads=True, seed=0):
    """Values (and gradients) of `backend` match the float64 reference at the video dtype's tolerance."""
    dtype = video.dtype
    tol = TOLERANCES[dtype]
    size = list(size) if not isinstance(size, int) else [size] * 3
    n, c = video.shape[:2]
    out_shape = (n, centers.shape[1], c, *size)
    grad_out = None
    if grads:
        gen = torch.Generator().manual_seed(seed + 1)
        grad_out = torch.randn(out_shape, dtype=torch.float64, generator=gen).to(dtype=dtype, device=video.device)
    got = backend_crop(backend, video, centers, size, padding_mode, grad_out)
    want = reference_crop(video, centers, size, padding_mode, grad_out)
    if not grads:
        got, want = (got,), (want,)
    assert got[0].dtype == dtype, f"output dtype {got[0].dtype} != video dtype {dtype}"
    assert got[0].device == video.device
    assert_matches(got[0], want[0], tol, f"{backend.id} crop_cubes values ({dtype}, {padding_mode})")
    if grads:
        assert got[1].dtype == dtype and got[2].dtype == centers.dtype, "gradient dtypes must match the inputs"
        assert_matches(got[1], want[1], tol, f"{backend.id} grad video ({dtype}, {padding_mode})")
        assert_matches(got[2], want[2], CENTER_GRAD_TOLERANCES[dtype], f"{backend.id} grad centers ({dtype}, {padding_mode})")
    return got
