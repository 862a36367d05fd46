"""Every compiled kernel keeps to the determinism contract at the LLVM level: no
float64 arithmetic (a stray Python float literal promotes silently), no fast-math
flags (which would let LLVM reorder or contract), no library transcendental, and no
fused multiply-add other than the explicit llvm.fma.f32.

Kernels are re-compiled here without numba's cache, whose entries cannot be
inspected, at the signatures the training step and optimizers actually use.
"""
import importlib
import pkgutil
import re

import numba
import numpy as np

import kernels
from node.types.genesis import load_genesis
from node.uPoW.trainer import Trainer
from kernels import optim

FORBIDDEN = re.compile(
    r"(?:fadd|fsub|fmul|fdiv|frem|fneg)(?: \w+)* double"       # float64 arithmetic
    r"|(?:fadd|fsub|fmul|fdiv|frem) (?:fast|contract|reassoc|nnan|ninf|nsz|arcp|afn)\b"
    r"|@llvm\.(?:exp|exp2|log|log2|log10|pow|sin|cos|fmuladd)\.f"  # LLVM math intrinsics
    r"|@(?:exp|expf|log|logf|tanh|tanhf|pow|powf|__svml\w*)\("   # libm / SVML calls
    r"|@llvm\.fma\.f64")


def _exercise_every_kernel() -> None:
    trainer = Trainer(load_genesis())
    state = trainer.initial_state()
    trainer.train(state, 1)
    x = np.ones(10, np.float32)
    optim.mean_of_deltas(x, np.ones((2, 10), np.float32))
    optim.outer_nesterov(x, x.copy(), x.copy(), np.float32(0.7), np.float32(0.9))


def _kernel_dispatchers():
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"kernels.{info.name}")
        for name, obj in sorted(vars(module).items()):
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__:
                yield f"{info.name}.{name}", obj


def test_no_float64_fastmath_or_library_math_in_any_kernel():
    _exercise_every_kernel()
    checked, violations = 0, {}
    for name, dispatcher in _kernel_dispatchers():
        options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
        assert not options.get("fastmath"), f"{name} is compiled with fastmath"
        fresh = numba.njit(**options)(dispatcher.py_func)
        for signature in dispatcher.signatures:
            fresh.compile(signature)
            found = sorted({m.group(0) for m in FORBIDDEN.finditer(fresh.inspect_llvm(signature))})
            checked += 1
            if found:
                violations[f"{name}{signature}"] = found
    assert checked >= 20, f"only {checked} kernel signatures were compiled"
    assert not violations, violations
