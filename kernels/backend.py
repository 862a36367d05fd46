"""Where the kernels run: the CPU (numba) or an NVIDIA GPU (numba-cuda), same bits.

A backend is its ops (the kernel launchers under one set of names) and the array
handling the model needs around them: allocation, zero-fill, copy and transpose into
allocated buffers, and moving data in and out.  On the GPU, data stays on the device
between ops, and a training step allocates nothing.
"""
from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Callable

import numpy as np


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message says why."""


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    ops: ModuleType
    zeros: Callable[[Any], Any]
    fill_zero: Callable[[Any], None]
    copy_into: Callable[[Any, Any], None]       # (dst, src)
    transpose_into: Callable[[Any, Any], None]  # (dst, src): dst = src.T
    to_device: Callable[[np.ndarray], Any]
    to_host: Callable[[Any], np.ndarray]


def cpu_backend() -> Backend:
    from kernels import cpu

    def fill_zero(x: np.ndarray) -> None:
        x[...] = np.float32(0.0)

    def transpose_into(dst: np.ndarray, src: np.ndarray) -> None:
        dst[...] = src.T

    return Backend(name="cpu", ops=cpu, zeros=lambda shape: np.zeros(shape, np.float32),
                   fill_zero=fill_zero, copy_into=np.copyto,
                   transpose_into=transpose_into,
                   to_device=lambda x: x, to_host=lambda x: x)


BACKENDS = ("cpu", "cuda")


def backend_named(name: str) -> Backend:
    """The backend called name (what a spawned process is told to build)."""
    if name == "cpu":
        return cpu_backend()
    if name == "cuda":
        return cuda_backend()
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


def cuda_backend() -> Backend:
    """The CUDA backend; BackendUnavailable where no usable GPU is present."""
    from numba import cuda

    try:
        available = cuda.is_available()
    except Exception as exc:  # a broken driver install raises instead of answering
        raise BackendUnavailable(f"no usable CUDA GPU: {exc}") from None
    if not available:
        raise BackendUnavailable("no usable CUDA GPU (numba.cuda.is_available() is false)")
    import kernels.cuda as ops
    from kernels.cuda import arrays

    try:  # compile and run one kernel now: a numba-cuda that cannot compile here fails here,
        arrays.zeros(1).copy_to_host()  # not at the first block this node applies
    except Exception as exc:  # numba-cuda's failures have no common base class
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise BackendUnavailable(f"the CUDA kernels cannot compile or run here: "
                                 f"{type(exc).__name__}: {first_line}") from None
    return Backend(name="cuda", ops=ops, zeros=arrays.zeros, fill_zero=arrays.fill_zero,
                   copy_into=arrays.copy_into, transpose_into=arrays.transpose_into,
                   to_device=cuda.to_device,
                   to_host=lambda x: x.copy_to_host())
