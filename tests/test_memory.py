"""keep_freed_memory: freed blocks are reused instead of being page-faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from midivae.memory import keep_freed_memory

ON_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# The C library's malloc and free, as the subprocess scripts below call them.
_LIBC = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
"""

# One round allocates 64 MiB with malloc, writes every page, frees it; the page faults of a
# second round tell whether the first round's pages were kept.
_ROUNDS = _LIBC + """
import resource
from midivae.memory import keep_freed_memory
SIZE = 64 << 20

def faults_of_a_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_a_round()
default = faults_of_a_round()
applied = keep_freed_memory() and keep_freed_memory()
faults_of_a_round()
print(default, faults_of_a_round(), applied)
"""



def _printed(script: str) -> list[str]:
    """What ``script`` prints, run in a fresh interpreter (its heap untouched by this one's)."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()

@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_a_freed_block_is_reused_without_page_faults():
    out = _printed(_ROUNDS)
    default, kept, applied = int(out[0]), int(out[1]), out[2]
    assert applied == "True"
    # glibc's default maps the 64 MiB afresh every round: a fault per page (16,384 4-KiB pages,
    # or 32 where transparent huge pages back every mapping); kept: the second round writes
    # into the first round's pages
    assert default >= 32
    assert kept * 20 < default


def test_it_reports_whether_it_took_effect_and_is_idempotent():
    first = keep_freed_memory()
    assert keep_freed_memory() is first
    assert first is ON_GLIBC


# 256 MiB of small heap blocks, the last one kept (glibc can then not trim the heap from its top),
# the rest freed: resident memory before and after release_freed_memory.
_HOLES = _LIBC + """
from midivae.memory import release_freed_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20

blocks = [libc.malloc(4096) for _ in range(65536)]
for b in blocks:
    ctypes.memset(b, 1, 4096)
for b in blocks[:-1]:
    libc.free(b)
held = rss_mb()
ran = release_freed_memory()
print(held, rss_mb(), ran)
"""


@pytest.mark.skipif(not ON_GLIBC, reason="malloc_trim is glibc's")
def test_freed_pages_below_a_live_block_go_back_to_the_kernel():
    out = _printed(_HOLES)
    held, released, ran = int(out[0]), int(out[1]), out[2]
    assert ran == "True"
    assert held - released >= 200  # of the 256 MiB freed below the live block (held until then)


def test_release_reports_whether_it_ran():
    from midivae.memory import release_freed_memory

    assert release_freed_memory() is ON_GLIBC
