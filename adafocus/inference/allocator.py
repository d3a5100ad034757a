"""Keep freed CPU memory in the process, so that large activations do not page-fault back in.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, adapting up to
32 MiB) with a fresh mapping and unmaps it on free. At paper scale every convolution output
is tens to hundreds of MB, so each one is a new mapping whose pages the kernel zero-fills
on first touch: on the 2-core test machine that was about half of a ResNet-50's CPU
inference time (REPRODUCTION.md section 3d). PyTorch's CPU tuning guide preloads jemalloc or
tcmalloc for this; `retain_freed_memory` sets glibc's own thresholds (mallopt) instead, which
needs no other library: blocks up to 1 GiB come from the heap, and up to 2 GiB of free heap
top stays mapped. The cost is resident memory: the process keeps its peak working set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # mallopt takes an int

_applied = False


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True where applied.

    A no-op returning False where the C library is not glibc (macOS, Windows, musl). Affects
    every later allocation of the process, so applications call it, not the library."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    except (OSError, AttributeError) as error:
        log.debug("mallopt unavailable: %s", error)
        return False
    _applied = ok
    return ok
