"""Build cubecrop's C++ (and, with a CUDA toolkit, CUDA) extension.

CUDA sources are built when FORCE_CUDA=1 or when torch sees a GPU; a machine
without a GPU but with nvcc builds them with FORCE_CUDA=1 (this is what CI does,
so a CUDA compile error cannot land). DEBUG=1 builds with -O0 -g.
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_requested() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def _extra_include_dirs():
    # pip's CUDA wheels put cuSPARSE/cuBLAS headers here; torch's headers include them.
    dirs = []
    for path in glob.glob(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia", "cu*", "include")):
        dirs.append(os.path.abspath(path))
    return dirs


def _extension():
    # Without a GPU to query, torch would build for every arch it knows; CI needs the
    # ones users run (Ampere, Ada, Hopper). Override with TORCH_CUDA_ARCH_LIST.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;8.6;8.9;9.0")
    debug = os.environ.get("DEBUG", "0") == "1"
    use_cuda = _cuda_requested()
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx_flags = opt + ["-std=c++20", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fdiagnostics-color=always"]
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    include_dirs = [os.path.join(ROOT, "csrc")]
    kwargs = dict(
        name="cubecrop._C",
        sources=sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        py_limited_api=True,
    )
    if not use_cuda:
        return CppExtension(**kwargs)
    kwargs["sources"] += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    kwargs["include_dirs"] += _extra_include_dirs()
    kwargs["extra_compile_args"]["nvcc"] = opt + [
        "-std=c++20",
        "--expt-relaxed-constexpr",
        "-lineinfo",
        "-Xcompiler=-Wall",
    ]
    kwargs["define_macros"] = [("CUBECROP_WITH_CUDA", None)]
    return CUDAExtension(**kwargs)


setup(
    name="cubecrop",
    version="0.1.0",
    description="Differentiable trilinear 3D cube cropping kernels and the AdaFocusV3 model",
    packages=find_packages(include=["cubecrop", "cubecrop.*", "adafocus", "adafocus.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
    python_requires=">=3.10",
    install_requires=["torch>=2.9", "numpy"],
    extras_require={
        # The adafocus command (train/eval/infer/make-lists): configs, video decoding, torchvision backbones.
        "train": ["pyyaml", "tqdm", "tensorboard", "matplotlib", "scikit-learn", "av", "torchvision"],
        # Optional faster decoder; needs FFmpeg's shared libraries (Debian/Ubuntu: apt-get install ffmpeg).
        "torchcodec": ["torchcodec"],
        "test": ["pytest", "hypothesis", "expecttest"],
        "onnx": ["onnx", "onnxscript", "onnxruntime"],
    },
    entry_points={"console_scripts": ["adafocus=adafocus.apps.cli:main"]},
)
