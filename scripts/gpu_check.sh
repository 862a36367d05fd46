#!/usr/bin/env bash
# The GPU checks in one run, within the device's 10 minutes a command: the hardware
# tests (tests/gpu: every op bit for bit against the CPU, 20 training steps and the outer
# step, a --gpu miner on a devnet) and `uponode bench kernels --gpu --json`.
#
#   scripts/gpu_check.sh --fetch   here, with a package registry: the wheels a machine
#                                  with CUDA, torch and numba-cuda but no registry lacks
#                                  (Python 3.12), into .whl/, and a numpy numba-cuda can
#                                  compile with (the device image's 2.5 cannot: pyproject)
#   scripts/gpu_check.sh           on the GPU machine: installs .whl/ where present, runs
#                                  the checks and writes to $OUT (./gpu-check without it):
#                                  gpu.txt (machine, each stage's exit code), cuda_tests.log,
#                                  devnet.log, bench.jsonl, bench.log, and the devnet's GPU
#                                  node log when that test fails; exits non-zero if any
#                                  stage failed
#
# The devnet test runs beside the op checks (it waits on block time, they on the GPU and
# the CPU); the benchmark runs last and alone, so nothing else shares the GPU it times.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch" ]; then
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl plyvel pynacl cffi pycparser pytest-asyncio 'numpy<2.5'
fi
out="${OUT:-gpu-check}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "gpu_check: installing .whl/ failed"; exit 2; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + 570))
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    nproc
    python3 -c "import torch, numba, numba_cuda; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)"
} 2>&1 | tee "$out/gpu.txt"

stage_done() {  # name, exit code
    echo "$1: exit $2 at ${SECONDS}s" | tee -a "$out/gpu.txt"
}

timeout 400 python3 -m pytest -m gpu tests/gpu/test_gpu_miner_devnet.py -p no:cacheprovider \
    -q -rA --basetemp=/tmp/gpu-devnet >"$out/devnet.log" 2>&1 &
devnet=$!

timeout 330 python3 -m pytest -m gpu tests/gpu/test_cuda_gpu.py -p no:cacheprovider -q -rA 2>&1 \
    | tee "$out/cuda_tests.log"
cuda_rc=${PIPESTATUS[0]}
stage_done cuda_tests "$cuda_rc"

wait "$devnet"
devnet_rc=$?
stage_done devnet "$devnet_rc"
if [ "$devnet_rc" -ne 0 ]; then
    for log in /tmp/gpu-devnet/*/devnet/node-3/node.log; do
        [ -f "$log" ] && tail -c 2000000 "$log" >"$out/gpu_node.log"
    done
fi

left=$((deadline - SECONDS))
if [ "$left" -ge 30 ]; then  # timeout 0 would mean no limit at all
    timeout "$left" python3 -m node.cli bench kernels --gpu --json \
        >"$out/bench.jsonl" 2>"$out/bench.log"
    bench_rc=$?
else
    echo "gpu_check: ${left}s left, too little for the benchmark" | tee "$out/bench.log"
    bench_rc=124
fi
stage_done bench "$bench_rc"
cat "$out/bench.jsonl"

[ "$cuda_rc" -eq 0 ] && [ "$devnet_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
