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
from node.cmd.malloc import tune_allocator, release_free_memory

def rss_anon_mb():
    return int(re.search(r"RssAnon:\s+(\d+)", open("/proc/self/status").read())[1]) / 1024

tune_allocator()
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
    # glibc alone keeps most of the 327 MB freed (how much it trims by itself varies
    # with the machine, 199 MB on CI's): the node's release returns it
    assert before > 100 and after < before / 4, (before, after)


BIG_BLOCKS = r"""
import re, sys
from node.cmd.malloc import tune_allocator

def rss_anon_mb():
    return int(re.search(r"RssAnon:\s+(\d+)", open("/proc/self/status").read())[1]) / 1024

if sys.argv[1] == "tuned":
    tune_allocator()
blob = b"b" * (24 << 20); del blob  # a large blob read and dropped: glibc's threshold rises to it
blocks = [b"c" * (4 << 20) for _ in range(40)]  # a round's checkpoints and deltas, 160 MB, touched
kept = blocks[-1]  # one outlives the rest
del blocks
print(rss_anon_mb())
"""


@pytest.mark.skipif(malloc._LIBC is None, reason="not glibc: the allocator keeps its own counsel")
def test_blocks_of_a_few_mb_go_back_to_the_system_when_freed_even_after_a_larger_one():
    rss = {}
    for mode in ("glibc's own", "tuned"):
        out = subprocess.run([sys.executable, "-c", BIG_BLOCKS, mode], capture_output=True, text=True,
                             timeout=120, check=True)
        rss[mode] = float(out.stdout)
    assert rss["glibc's own"] > 100 and rss["tuned"] < 40, rss
