"""The two copies of the Triton kernels: interpreted (CPU tensors) and compiled (GPU tensors).

`@triton.jit` decides at decoration time, from TRITON_INTERPRET, whether it
makes an interpreted or a compiled kernel. Deciding once per process would tie
the whole process to whoever imported the kernels first (a test module that
sets TRITON_INTERPRET=1 after another module imported them would silently get
compiled kernels, and setting it early would leak into every other test). So
_kernels.py is executed twice, each time under an explicit setting of the
interpreter knob: one module object per mode, both from the same source. The
knob is scoped, so TRITON_INTERPRET in os.environ is left as it was.
"""
import functools
import importlib.util
import pathlib
import sys
from types import ModuleType

import triton

_SOURCE = pathlib.Path(__file__).with_name("_kernels.py")


@functools.lru_cache(maxsize=None)
def load_kernels(interpreted: bool) -> ModuleType:
    name = f"{__package__}._kernels_{'interpreted' if interpreted else 'compiled'}"
    spec = importlib.util.spec_from_file_location(name, _SOURCE)
    module = importlib.util.module_from_spec(spec)
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpreted
        spec.loader.exec_module(module)
    # Registered so tracebacks and pickling of kernel objects find the module.
    sys.modules[name] = module
    return module

