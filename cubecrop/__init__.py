"""cubecrop: differentiable trilinear 3D cube cropping for video models.

    import cubecrop
    cubes = cubecrop.crop_cubes(video, centers, size=(12, 128, 128))   # (N, K, C, 12, 128, 128)

See docs/design.md (coordinate convention), docs/ops.md (the ops' contract) and README.md.
"""
from cubecrop.geometry import integer_starts, integer_windows
from cubecrop.feature import EnlargedWindow, crop_enlarged, enlarged_window, feature_offset_crop
from cubecrop.ops import (
    BACKENDS,
    PADDING_MODES,
    available_backends,
    crop_cubes,
    crop_cubes_int,
    resolve_backend,
)
from cubecrop._extension import cuda_kernels_built

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PADDING_MODES",
    "EnlargedWindow",
    "available_backends",
    "crop_cubes",
    "crop_cubes_int",
    "crop_enlarged",
    "cuda_kernels_built",
    "enlarged_window",
    "feature_offset_crop",
    "integer_starts",
    "integer_windows",
    "resolve_backend",
]
