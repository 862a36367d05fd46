"""glibc's allocator in a node that runs for months.

Each thread that allocates (the event loop's worker threads: snapshots, blob reads,
round closes) gets an arena of its own, up to eight per core, and glibc hands the
memory freed in an arena back to the system only from its top.  A node's resident
memory then creeps up round after round while its live objects do not (measured with
scripts/bench_soak.py: BENCHMARKS.md, "Retention").  So the node keeps two arenas and
returns the free pages of all of them at each round's close.  And glibc, once a block
it had mapped on its own (a blob of tens of MB) is freed, raises the size from which it
maps blocks to that size: every later checkpoint or delta of a few MB then lands in an
arena, where one block kept above the others pins all their pages.  A fixed threshold
keeps each block of 1 MiB or more in a mapping of its own, returned whole when freed.
Elsewhere than glibc all of it is a no-op."""
from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt's parameters, from glibc's malloc.h
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 1 << 20


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()


def tune_allocator() -> None:
    """Keep ARENAS arenas (call before threads start: arenas, once made, stay), and map
    every block of MMAP_THRESHOLD bytes or more on its own."""
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, ARENAS)
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_free_memory() -> None:
    """Give the free pages of every arena back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
