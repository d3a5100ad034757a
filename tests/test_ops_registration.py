"""The native ops are registered as csrc/ops.cpp and docs/design.md say: schemas, a kernel per
dispatch key, fake kernels, autograd; and a CI build with nvcc really has CUDA kernels."""
import os
import shutil

import pytest
import torch

import cubecrop
from cubecrop._extension import has_kernel

SCHEMAS = {
    "crop_cubes": "cubecrop::crop_cubes(Tensor video, Tensor centers, int[3] size, int padding_mode) -> Tensor",
    "crop_cubes_backward": (
        "cubecrop::crop_cubes_backward(Tensor grad_out, Tensor video, Tensor centers, int[3] size, "
        "int padding_mode, bool need_video_grad, bool need_centers_grad) -> (Tensor, Tensor)"
    ),
    "crop_cubes_int": (
        "cubecrop::crop_cubes_int(Tensor video, Tensor centers, int[3] size, bool channels_last, "
        "Tensor? mean, Tensor? std, ScalarType out_dtype) -> Tensor"
    ),
}
OPS = list(SCHEMAS)


@pytest.mark.parametrize("op", OPS)
def test_op_exists_with_its_schema(op):
    assert hasattr(torch.ops.cubecrop, op), f"cubecrop::{op} is not registered"
    assert str(getattr(torch.ops.cubecrop, op).default._schema) == SCHEMAS[op]


@pytest.mark.parametrize("op", OPS)
def test_cpu_and_fake_kernels_registered(op):
    assert has_kernel(op, "CPU"), f"cubecrop::{op} has no CPU kernel (csrc/cpu)"
    assert has_kernel(op, "Meta"), f"cubecrop::{op} has no fake kernel (cubecrop/_native.py)"


def test_autograd_registered_for_the_differentiable_op_only():
    assert has_kernel("crop_cubes", "Autograd")
    # The backward op and the integer crop have no derivative; they must not pretend to.
    assert not has_kernel("crop_cubes_backward", "Autograd")
    assert not has_kernel("crop_cubes_int", "Autograd")


@pytest.mark.parametrize("op", OPS)
def test_cuda_kernels_complete_when_built(op):
    if not cubecrop.cuda_kernels_built():
        pytest.skip("this build has no CUDA kernels (FORCE_CUDA=1 builds them)")
    assert has_kernel(op, "CUDA"), f"the CUDA build lacks a kernel for cubecrop::{op}"


def _nvcc_present() -> bool:
    # The same test as .ci/run, which then builds with FORCE_CUDA=1.
    return shutil.which("nvcc") is not None or os.access("/usr/local/cuda/bin/nvcc", os.X_OK)


def test_ci_build_has_cuda_kernels():
    if os.environ.get("CI", "").lower() != "true":
        pytest.skip("only in CI (CI=true), where .ci/run builds with FORCE_CUDA=1 when nvcc is present")
    if not _nvcc_present():
        pytest.skip("no nvcc on this CI machine: a CPU-only build is expected")
    if os.environ.get("CUBECROP_CPU_ONLY_BUILD") == "1":
        pytest.skip("a CPU-only build on purpose (make test-compat without FORCE_CUDA=1)")
    assert cubecrop.cuda_kernels_built(), "CI has nvcc but the extension was built without its CUDA kernels"
    assert all(has_kernel(op, "CUDA") for op in OPS)


def test_cuda_kernels_built_agrees_with_the_dispatcher():
    assert cubecrop.cuda_kernels_built() == has_kernel("crop_cubes", "CUDA")


def test_default_backend_per_device(monkeypatch):
    monkeypatch.delenv("CUBECROP_BACKEND", raising=False)
    available = cubecrop.available_backends("cpu")
    assert available[0] == "cpu" and available[-1] == "reference"
    assert cubecrop.resolve_backend(None, torch.device("cpu")) == "cpu"
    monkeypatch.setenv("CUBECROP_BACKEND", "reference")
    assert cubecrop.resolve_backend(None, torch.device("cpu")) == "reference"
    # An explicit argument wins over the environment.
    assert cubecrop.resolve_backend("cpu", torch.device("cpu")) == "cpu"
    if torch.cuda.is_available() and cubecrop.cuda_kernels_built():
        monkeypatch.delenv("CUBECROP_BACKEND")
        assert cubecrop.resolve_backend(None, torch.device("cuda")) == "cuda"


def test_default_backend_is_used(monkeypatch):
    # crop_cubes without backend= runs the native CPU op, not the reference.
    monkeypatch.delenv("CUBECROP_BACKEND", raising=False)
    video = torch.randn(1, 1, 2, 3, 3)
    centers = torch.full((1, 1, 3), 1.5)
    seen = []

    class Recorder(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with Recorder():
        cubecrop.crop_cubes(video, centers, (1, 2, 2))
    assert torch.ops.cubecrop.crop_cubes.default in seen or torch.ops.cubecrop.crop_cubes in seen, seen
