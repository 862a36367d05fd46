"""Every CUDA kernel keeps the determinism contract (DESIGN.md §3), checked without a
GPU for sm_90 and sm_80 at three levels:

- the LLVM IR numba hands to NVVM has no bare float add, sub (other than negation), mul
  or div: every one is a libdevice *_rn call, so NVVM has nothing it could contract;
- the PTX without NVVM optimization holds exactly one fma.rn.f32 per fma call site in
  the source, counted through the inlined device functions (optimization unrolls loops,
  which repeats the asked-for fma without adding any);
- the optimized PTX, the code that runs, has an explicit .rn on every float32 add, sub,
  mul, div, sqrt and fma (ptxas may fuse a mul and add without one), and no .ftz,
  .approx, float64 arithmetic, float min/max or hardware transcendental.
"""
import ast
import importlib
import inspect
import pkgutil
import re
import textwrap

import numba
import numba.cuda.dispatcher as cuda_dispatcher
import pytest
from numba import cuda
from numba.cuda.compiler import _compile_pyfunc_with_fixup  # the kernel's LLVM IR

import kernels.cuda

F1, F2, F3, F4 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "float32[:, :, :, ::1]"
I1, I2 = "int32[::1]", "int32[:, ::1]"
F = "float32"

# The launch signatures: what the launchers pass for C-contiguous device arrays.
SIGNATURES = {
    "arrays._fill_zero": (F1,),
    "arrays._copy": (F1, F1),
    "arrays._transpose": (F2, F2),
    "attention._attention_forward": (F3, F4, F3, "int64"),
    "attention._attention_dpre": (F4, F3, F3, F4, "int64"),
    "attention._attention_dq": (F3, F4, F3, "int64"),
    "attention._attention_dkv": (F3, F4, F3, F3, F4, "int64"),
    "crossentropy._crossentropy_forward": (F1, F2, F2, I1),
    "crossentropy._mean_loss": (F1, F1),
    "crossentropy._crossentropy_backward": (F2, F2, I1),
    "encoder._encoder_forward": (F3, I2, F2, F2),
    "encoder._encoder_backward": (F2, F2, F3, I2),
    "gelu._gelu_forward": (F1, F1),
    "gelu._gelu_backward": (F1, F1, F1),
    "layernorm._layernorm_forward": (F2, F1, F1, F2, F1, F1),
    "layernorm._layernorm_backward_input": (F2, F2, F2, F1, F1, F1),
    "layernorm._layernorm_backward_params": (F1, F1, F2, F2, F1, F1),
    "linear._fill_rows": (F2, F1),
    "linear._bias_backward": (F1, F2),
    "matmul._matmul_8x8": (F2, F2, F2, "boolean", "boolean"),
    "matmul._matmul_4x4": (F2, F2, F2, "boolean", "boolean"),
    "matmul._matmul_2x2": (F2, F2, F2, "boolean", "boolean"),
    "optim._chunk_sums_of_squares": (F1, F1),
    "optim._sum_in_order": (F1, F1),
    "optim._clip_factor": (F1, F1, F),
    "optim._scale_if_clipped": (F1, F1, F),
    "optim._adamw": (F1, F1, F1, F1, "int64[::1]", "int64[::1]", F1) + (F,) * 6,
    "optim._mean_of_deltas": (F1, F2),
    "optim._outer_nesterov": (F1, F1, F1, F, F),
    "residual._residual_forward": (F1, F1, F1),
    "rng._fill_uniform": (F1, "uint64", F),
}

ROUNDED_OPS = {"add", "sub", "mul", "div", "sqrt", "fma"}
FORBIDDEN = re.compile(r"\.ftz\b|\.approx\b|\.f64\b|\b(?:ex2|lg2|sin|cos|rsqrt|rcp|tanh)\.")
BARE_IR_ARITHMETIC = re.compile(
    r"= (?:fadd|fmul|fdiv|frem)\b[^\n]*|= fsub (?!float 0x8000000000000000,)[^\n]*"
    r"|\b(?:fast|contract|reassoc|afn)\b[^\n]*float[^\n]*|@llvm\.fmuladd[^\n]*")
FMA_PTX = re.compile(r"^\s*fma\.rn\.f32\b", re.M)


def _dispatchers(device: bool):
    for info in pkgutil.iter_modules(kernels.cuda.__path__):
        module = importlib.import_module(f"kernels.cuda.{info.name}")
        for name, obj in sorted(vars(module).items()):
            if (isinstance(obj, cuda_dispatcher.CUDADispatcher)
                    and obj.py_func.__module__ == module.__name__
                    and bool(obj.targetoptions.get("device")) == device):
                yield f"{info.name}.{name}", obj


def _fma_calls(py_func) -> int:
    """fma call sites in py_func, each device function call counting its own."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(py_func)))
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            callee = py_func.__globals__.get(node.func.id)
            if node.func.id == "fma":
                count += 1
            elif isinstance(callee, cuda_dispatcher.CUDADispatcher):
                count += _fma_calls(callee.py_func)
    return count


def _violations(ptx: str) -> list[str]:
    found = []
    for line in ptx.splitlines():
        line = line.strip()
        if not line or line.startswith(("//", ".", "{", "}", "$")):
            continue
        opcode = line.split()[0].rstrip(";")
        parts = opcode.split(".")
        if parts[0] in ROUNDED_OPS and "f32" in parts and "rn" not in parts:
            found.append(line)
        elif parts[0] in ("max", "min") and "f32" in parts:
            found.append(line)
        elif FORBIDDEN.search(opcode):
            found.append(line)
    return found


class _Device:
    def __init__(self, cc):
        self.compute_capability = cc


@pytest.fixture
def no_gpu_compile(monkeypatch):
    """compile_ptx needs no GPU, but a kernel's device functions ask for the current
    device's compute capability; give them the target's."""
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("NUMBA_ENABLE_CUDASIM is set: there is no PTX to inspect")

    def use(cc):
        monkeypatch.setattr(cuda_dispatcher, "get_current_device", lambda: _Device(cc))
    return use


def test_every_kernel_has_a_launch_signature():
    assert sorted(name for name, _ in _dispatchers(device=False)) == sorted(SIGNATURES)


def test_device_functions_are_inlined():
    for name, fn in _dispatchers(device=True):
        assert fn.targetoptions.get("forceinline"), f"{name} is not force-inlined"


@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=["sm90", "sm80"])
def test_ptx_has_only_the_asked_fma_and_rounded_ops(cc, no_gpu_compile):
    no_gpu_compile(cc)
    problems = {}
    fma_checked = 0
    for name, kernel in _dispatchers(device=False):
        signature = f"void({', '.join(SIGNATURES[name])})"
        lib, _ = _compile_pyfunc_with_fixup(kernel.py_func, signature, device=False, cc=cc,
                                            abi="numba")
        bare_ir = BARE_IR_ARITHMETIC.findall("\n".join(lib.llvm_strs))
        expected = _fma_calls(kernel.py_func)
        ptx_o0, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc, opt=False)
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
        fma_o0, fma_opt = len(FMA_PTX.findall(ptx_o0)), len(FMA_PTX.findall(ptx))
        bad = _violations(ptx)
        if bare_ir or fma_o0 != expected or (fma_opt > 0) != (expected > 0) or bad:
            problems[name] = {"bare_ir": bare_ir[:3], "fma_expected": expected,
                              "fma_ptx_o0": fma_o0, "fma_ptx": fma_opt, "bad_ptx": bad[:3]}
        fma_checked += expected
    assert not problems, problems
    assert fma_checked > 50
