"""glibc's allocator in a node that runs for months.

Each thread that allocates (the event loop's worker threads: snapshots, blob reads,
round closes) gets an arena of its own, up to eight per core, and glibc hands the
memory freed in an arena back to the system only from its top.  A node's resident
memory then creeps up round after round while its live objects do not (measured with
scripts/bench_soak.py: BENCHMARKS.md, "Retention").  So the node keeps two arenas and
returns the free pages of all of them at each round's close.  Elsewhere than glibc
both are no-ops."""
from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()


def limit_arenas() -> None:
    """Keep ARENAS arenas (call before threads start: arenas, once made, stay)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, ARENAS)


def release_free_memory() -> None:
    """Give the free pages of every arena back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
