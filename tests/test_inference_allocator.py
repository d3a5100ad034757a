"""adafocus.inference.allocator: after retain_freed_memory, a large block freed and allocated
again comes back without page faults (glibc would otherwise unmap it and fault it back in)."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt thresholds are glibc's")

CHILD = r"""
import resource, sys
import torch
from adafocus.inference.allocator import retain_freed_memory

def faults_per_round(rounds=12, megabytes=64):
    # page faults per 64 MB allocate-fill-free round, as a fraction of its pages, in the last
    # 4 rounds (the heap takes a few rounds to settle after the thresholds change)
    counts = []
    for _ in range(rounds):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(megabytes << 18)  # 64 MB of float32
        x.fill_(1.0)  # touches every page
        del x
        counts.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / (megabytes * 256))
    return sorted(counts[-4:])[1]

before = faults_per_round()
applied = retain_freed_memory()
again = retain_freed_memory()
after = faults_per_round()
print(before, after, applied, again)
"""


def test_retained_memory_comes_back_without_page_faults():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    before, after, applied, again = out.stdout.split()
    assert applied == "True" and again == "True"
    assert float(before) > 0.5  # the system allocator maps the block afresh each time
    assert float(after) < 0.05
