"""Keep freed CPU memory in the process, so that large activations do not page-fault back in.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, adapting up to
32 MiB) with a fresh mapping and unmaps it on free. At paper scale every convolution output
is tens to hundreds of MB, so each one is a new mapping whose pages the kernel zero-fills
on first touch: on the 2-core test machine that was about half of paper_tsm's CPU inference
time (REPRODUCTION.md section 3d). PyTorch's CPU tuning guide preloads jemalloc or tcmalloc
for this; `retain_freed_memory` sets glibc's own thresholds (mallopt) instead, which needs
no other library: blocks up to 1 GiB come from the heap, and up to 2 GiB of free heap top
stays mapped. The cost is resident memory: the process keeps its peak working set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from typing import Optional

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
RETAIN_MMAP_THRESHOLD = 1 << 30
RETAIN_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int
SYSTEM_THRESHOLD = 128 * 1024  # glibc's initial mmap and trim thresholds

_retained = False


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError as error:
        log.debug("C library not loadable: %s", error)
        return None


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """glibc's mmap and trim thresholds in bytes for later allocations; True where applied
    (False on other C libraries). Going back to SYSTEM_THRESHOLD also returns the free heap
    top to the system (malloc_trim), as a fresh process would have it."""
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    if trim_threshold <= SYSTEM_THRESHOLD:
        libc.malloc_trim(0)
    return ok


def retain_freed_memory() -> bool:
    """Raise glibc's thresholds for this process (once); True where applied.

    A no-op returning False where the C library is not glibc (macOS, Windows, musl). Affects
    every later allocation of the process, so applications call it, not the library."""
    global _retained
    if not _retained:
        _retained = set_malloc_thresholds(RETAIN_MMAP_THRESHOLD, RETAIN_TRIM_THRESHOLD)
    return _retained
