"""Where freed memory goes: kept for the trainer's next step, handed back between evaluation steps.

:func:`keep_freed_memory` keeps it in the process, so that large tensors are not page-faulted in
again each step; :func:`release_freed_memory` returns what a finished evaluation step freed.

glibc serves every allocation above its mmap threshold (at most 32 MiB, 128 KiB at first) with a
fresh ``mmap`` and hands it back to the kernel on free. A training step or an encoded batch
allocates tensors of tens of MB (the logits of 128 phrases alone are 41 MB), so each step
page-faults every page of them in again and the kernel zeroes them: on a 2-core machine that was
a third of a reference-model training step and half of an encoding pass
(``python benchmarks/train_speed.py`` measures both ways side by side).

PyTorch's CPU tuning guide answers this with a caching allocator (jemalloc or tcmalloc through
``LD_PRELOAD``); :func:`keep_freed_memory` gets the same reuse from glibc itself, in-process: no
allocation is served by ``mmap`` and the heap's free top is kept. The cost is that the process
keeps its peak heap after large frees (as with those allocators), and that glibc's aligned
allocations (torch's) may not fit a freed block of their own size and grow the heap instead: a
training loop settles (60 steps: resident memory flat), but a whole evaluation ran ~10% slower
and peaked ~11% higher with it, so only the trainer calls it.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys

#: mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: the largest trim threshold mallopt takes (an int): free heap top above it is still returned
_TRIM_THRESHOLD = 2**31 - 1

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of unmapping it; once per process, idempotent.

    True where it took effect (Linux with glibc); elsewhere nothing changes and it returns False.
    """
    global _applied
    if _applied:
        return True
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return _applied


def release_freed_memory() -> bool:
    """Hand the free pages inside glibc's heap back to the kernel (``malloc_trim``).

    glibc gives back only the free top of its heap: what a finished step freed below live
    blocks stays resident, and the next step's large arrays (each its own ``mmap``) cannot use
    it. An evaluation calls this between methods; at 27,151 phrases each call returned 200-270
    MB in a few ms. True where it ran (glibc), else False.
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


@functools.lru_cache(maxsize=None)
def _glibc_function(name: str):
    """A glibc function of this process's C library (None off glibc: both functions are glibc's)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
