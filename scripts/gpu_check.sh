#!/usr/bin/env bash
# The GPU checks in one run: the hardware tests (tests/gpu: every op bit for bit against
# the CPU, 20 training steps, the outer step, a --gpu miner on a devnet, and
# `uponode bench kernels --gpu --json`, whose records the log keeps).
#
#   scripts/gpu_check.sh --fetch   here, with a package registry: the wheels a machine
#                                  with CUDA, torch and numba-cuda but no registry lacks
#                                  (Python 3.12), into .whl/
#   scripts/gpu_check.sh           on the GPU machine: installs .whl/ where present, runs
#                                  the checks, writes gpu.txt and gpu_tests.log to $OUT
#                                  (./gpu-check without it); exits with pytest's code
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch" ]; then
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl plyvel pynacl cffi pycparser pytest-asyncio
fi
out="${OUT:-gpu-check}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "gpu_check: installing .whl/ failed"; exit 2; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, numba; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numba', numba.__version__)"
} 2>&1 | tee "$out/gpu.txt"
# within the device's 10 minutes a command; -rP keeps the passed tests' output (the figures)
timeout 560 python3 -m pytest -m gpu tests/gpu -p no:cacheprovider -q -rP 2>&1 | tee "$out/gpu_tests.log"
exit "${PIPESTATUS[0]}"
