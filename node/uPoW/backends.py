"""Where the work computes, for the layers above useful work: only this package imports
kernels/, so the node and the commands name a backend through here."""
from __future__ import annotations

from kernels.backend import BACKENDS, Backend, BackendUnavailable, backend_named, cpu_backend, cuda_backend
from kernels.fpenv import FloatingPointEnvironmentError
from node.types.errors import CommandError

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "FloatingPointEnvironmentError",
           "backend_named", "backend_for"]


def backend_for(gpu: bool) -> Backend:
    """The CUDA backend when gpu, else the CPU's; where --gpu cannot run here, a
    CommandError that names the flag and says why."""
    if not gpu:
        return cpu_backend()
    try:
        return cuda_backend()
    except BackendUnavailable as exc:
        raise CommandError(f"--gpu: {exc}") from None
