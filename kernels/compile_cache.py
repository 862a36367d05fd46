"""Where numba keeps the compiled kernels: a directory named by a digest of every kernel
source file.

numba's own cache checks only the timestamp of the file that defines a function. A kernel
that inlines a helper from another file (fp, mathfn) would load its old machine code
after the helper changed, and a node upgraded in place would compute other bits than a
fresh one. Named by the sources, a changed file starts a new cache.
"""
from __future__ import annotations

import hashlib
import os
import pathlib

import numba

KERNELS = pathlib.Path(__file__).resolve().parent


def source_digest(root: pathlib.Path = KERNELS) -> str:
    """16 hex digits of SHA-256 over every .py file under root: its path and its bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        name, body = path.relative_to(root).as_posix().encode(), path.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(body).to_bytes(8, "big") + body)
    return digest.hexdigest()[:16]


def use_cache_named_by_source() -> None:
    """Point numba's cache at kernels-<digest>, under NUMBA_CACHE_DIR where the user set
    one, else under kernels/__pycache__; before any kernel is decorated, since numba
    fixes a function's cache place then."""
    name = f"kernels-{source_digest()}"
    chosen = os.environ.get("NUMBA_CACHE_DIR", "")
    if os.path.basename(chosen) != name:  # not already chosen, by a parent process say
        chosen = os.path.join(chosen or str(KERNELS / "__pycache__"), name)
    # in the environment too: numba's compiler reloads its config from it whenever a
    # NUMBA_ variable changes (--threads sets one), and child processes inherit it
    os.environ["NUMBA_CACHE_DIR"] = chosen
    numba.config.CACHE_DIR = chosen
