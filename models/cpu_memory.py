"""Keep the memory a CPU model frees inside the process, so that scoring does not page-fault on every batch.

glibc serves each allocation above its mmap threshold (which it never raises past 32 MiB) with a fresh mmap and hands
it back to the kernel on free; the next allocation of that size page-faults, and the kernel zeroes every page again.
PyTorch's CPU activations are such allocations, made and freed on every forward pass: FFP `small` scoring 8 windows at
a time took about 7,000 page faults per frame and spent as much CPU in the kernel as in its convolutions.
`keep_freed_memory` tells glibc to serve every allocation from its heap and never to give freed memory back, so a
model's working set is faulted in once and then reused (bench/cpu_memory.py measures both ways in one run).

The price is that the process's resident memory stays at its peak. Scoring and training processes repeat the same
shapes batch after batch, so their peak is their steady state; the API and the ingesters, which hold no model, do
not call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (a C int): free memory at the heap's top is kept


def keep_freed_memory() -> bool:
    """Serve all allocations from the heap and keep what is freed; True if glibc took it (False elsewhere: musl,
    macOS), in which case nothing changed."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own policy
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = bool(mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1)
    log.debug("malloc: keep freed memory in the process: %s", applied)
    return applied


def keep_freed_memory_for(device_type: str) -> bool:
    """`keep_freed_memory` for a process that scores on `device_type` ("cpu", "cuda", ...): on a GPU the activations
    live in torch's own caching allocator, so glibc's policy stays as it is. True if it was applied."""
    return device_type == "cpu" and keep_freed_memory()
