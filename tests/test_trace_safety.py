"""Backend resolution inside torch.compile(fullgraph=True), for a CUDA device, on any machine.

cubecrop.crop_cubes resolves its backend on every call, so a compiled model traces
cubecrop.ops.available_backends. For a CUDA tensor that asks whether the CUDA
kernels were built (a dispatcher query dynamo cannot trace) and whether Triton has
a GPU driver (triton's driver API, also untraceable). Both are answered once and
cached (cubecrop/_extension.py, cubecrop/triton/__init__.py), so the trace only
sees constants. A CPU machine never calls crop_cubes on CUDA tensors, but resolving
the backend for torch.device("cuda") walks the same code, so CI checks it here.
"""
import torch

import cubecrop
import cubecrop.triton as triton_backend
from cubecrop import ops


def _untraceable_probe():
    # What the real probe is to dynamo: a call it cannot trace (a graph break under fullgraph).
    return torch._C._dispatch_has_kernel_for_dispatch_key("cubecrop::crop_cubes", "CPU")


def _compiled_backend_count(device: str) -> torch.Tensor:
    def f(x):
        return x + len(ops.available_backends(torch.device(device))) + len(ops.resolve_backend(None, torch.device(device)))

    torch._dynamo.reset()
    try:
        return torch.compile(f, backend="eager", fullgraph=True)(torch.zeros(2))
    finally:
        torch._dynamo.reset()


def _eager_backend_count(device: str) -> torch.Tensor:
    return torch.zeros(2) + len(ops.available_backends(device)) + len(ops.resolve_backend(None, torch.device(device)))


def test_resolving_the_backend_for_cuda_compiles_fullgraph(monkeypatch):
    monkeypatch.delenv("CUBECROP_BACKEND", raising=False)
    got = _compiled_backend_count("cuda")
    torch.testing.assert_close(got, _eager_backend_count("cuda"))


def test_first_triton_driver_query_inside_a_compiled_function(monkeypatch):
    # The driver answer is not cached yet and its probe is untraceable: the first query
    # happens during tracing and must still leave one graph.
    monkeypatch.delenv("CUBECROP_BACKEND", raising=False)
    monkeypatch.setattr(triton_backend, "_GPU_DRIVER_ACTIVE", None)
    monkeypatch.setattr(triton_backend, "_probe_gpu_driver", lambda: _untraceable_probe() or True)
    got = _compiled_backend_count("cuda")
    assert triton_backend._GPU_DRIVER_ACTIVE is True
    assert "triton" in ops.available_backends("cuda")
    torch.testing.assert_close(got, _eager_backend_count("cuda"))


def test_the_driver_is_probed_once(monkeypatch):
    calls = []
    monkeypatch.setattr(triton_backend, "_GPU_DRIVER_ACTIVE", None)
    monkeypatch.setattr(triton_backend, "_probe_gpu_driver", lambda: calls.append(1) or False)
    assert not triton_backend.is_available("cuda")
    assert not triton_backend.is_available("cuda:0")
    assert calls == [1]


def test_cached_answers_match_the_live_queries():
    assert cubecrop.cuda_kernels_built() == torch._C._dispatch_has_kernel_for_dispatch_key("cubecrop::crop_cubes", "CUDA")
    assert triton_backend.gpu_driver_active() == triton_backend._probe_gpu_driver()
