"""The node hands freed memory back at each round's close: in a fresh process, threads
allocate a lot and free all but a few blocks spread over their arenas (a round close's
models and deltas), and release_free_memory() returns those pages, which glibc alone
would keep."""
import subprocess
import sys

import pytest

from node.cmd import malloc

PROBE = r"""
import re, threading
from node.cmd.malloc import limit_arenas, release_free_memory

def rss_anon_mb():
    return int(re.search(r"RssAnon:\s+(\d+)", open("/proc/self/status").read())[1]) / 1024

limit_arenas()
kept = []
def churn():
    blocks = [bytes(2048) for _ in range(40_000)]  # past Python's small-object allocator
    kept.extend(blocks[::200])
threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
before = rss_anon_mb()
release_free_memory()
print(before, rss_anon_mb())
"""


@pytest.mark.skipif(malloc._LIBC is None, reason="not glibc: the allocator keeps its own counsel")
def test_freed_memory_spread_over_thread_arenas_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    before, after = map(float, out.stdout.split())
    assert before > 200 and after < before / 4, (before, after)
