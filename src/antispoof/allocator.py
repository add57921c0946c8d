"""glibc's allocator set to keep freed memory, for PyTorch training and inference on the CPU.

Why: every batch allocates and frees the same large activation buffers. glibc serves a block over
its mmap threshold with a fresh mmap() and returns it with munmap(), and trims the top of the heap
back to the kernel, so each batch pays the page faults that zero that memory again. On 2 cores
SELCNN-MTL spent a fifth of its CPU time in the kernel; with the threshold at its 32 MiB maximum,
the heap kept and padded, training ran 1.2x the clips per second
(`ANTISPOOF_MALLOC=default bench/selcnn_profile.py` against the default, docs/training.md).
The price: a process keeps the memory of its largest batches until it ends.

`ANTISPOOF_MALLOC=default` leaves glibc as it is; elsewhere than glibc (macOS, musl) nothing
changes. Settings made with mallopt() at run time apply to the allocations that follow, so the
entry points call keep_freed_memory() before any model is built.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

VARIABLE = "ANTISPOOF_MALLOC"
# mallopt parameters (malloc.h) and their values
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    M_MMAP_THRESHOLD: 32 * 1024 * 1024,  # glibc's maximum on 64-bit: blocks below it come from the heap
    M_TRIM_THRESHOLD: 2**31 - 1,         # never give the heap top back between batches
    M_TOP_PAD: 256 * 1024 * 1024,        # grow the heap in large steps (fewer brk calls)
}


def keep_freed_memory() -> bool:
    """Apply SETTINGS unless ANTISPOOF_MALLOC=default; -> whether glibc took every one of them."""
    if os.environ.get(VARIABLE, "keep") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: its own allocator, nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
