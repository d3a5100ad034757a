"""Loads the compiled extension, whose import registers the native ops."""
import torch

try:
    from cubecrop import _C  # noqa: F401  (import runs the TORCH_LIBRARY registrations)
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "cubecrop's compiled extension (cubecrop._C) is missing or failed to load: "
        f"{error}. Build it from the repository root with "
        "`pip install -e . --no-build-isolation` (add FORCE_CUDA=1 to build the CUDA kernels "
        "on a machine without a GPU)."
    ) from error


def has_kernel(op_name: str, dispatch_key: str) -> bool:
    """Whether the native op `cubecrop::<op_name>` has a kernel for `dispatch_key` (e.g. "CUDA")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"cubecrop::{op_name}", dispatch_key)


# Asked once, right after _C registered its kernels: the dispatcher query is opaque
# to dynamo, and backend resolution runs inside compiled graphs, where a plain
# module-level bool is a constant.
_CUDA_KERNELS_BUILT = has_kernel("crop_cubes", "CUDA")


def cuda_kernels_built() -> bool:
    """Whether the extension was built with its CUDA kernels (fixed for the process)."""
    return _CUDA_KERNELS_BUILT
