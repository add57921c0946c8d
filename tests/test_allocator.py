"""allocator.keep_freed_memory: glibc takes every setting, and ANTISPOOF_MALLOC=default opts out."""
from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from antispoof.allocator import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_glibc_takes_every_setting_and_the_variable_opts_out(monkeypatch):
    assert keep_freed_memory() is True
    monkeypatch.setenv("ANTISPOOF_MALLOC", "default")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_batchs_buffers_stay_mapped_for_the_next_batch():
    """Twenty 3 MiB buffers alive at once, freed, allocated again, 50 times (a training step's
    activations): glibc by default hands the freed heap top back and faults every page in again
    each round; with the settings the pages are faulted in once."""
    script = """
import ctypes, resource, sys
from antispoof.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    blocks = [libc.malloc(3 << 20) for _ in range(20)]
    for p in blocks:
        ctypes.memset(p, 1, 3 << 20)
    for p in blocks:
        libc.free(p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("keep", "default")}
    pages_per_round = 20 * (3 << 20) // 4096
    assert faults["keep"] < 2 * pages_per_round, faults  # once (fewer still with transparent huge pages)
    assert faults["default"] > 10 * faults["keep"], faults  # round after round
