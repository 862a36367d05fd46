"""Full training steps on the CPU and the CUDA backend from the same start: the state
hash after every step, and the outer Nesterov step over the two runs' deltas.

    python -m tests.gpu.train_check STEPS [tiny|devnet|10m]

Prints a JSON object {"cpu": [...], "cuda": [...], "outer_cpu": hex, "outer_cuda": hex}.
Run it with NUMBA_ENABLE_CUDASIM=1 (tiny only) where there is no GPU.
"""
import dataclasses
import hashlib
import json
import sys

import numpy as np

from kernels.backend import cpu_backend, cuda_backend
from node.genesis import load_genesis
from node.uPoW.trainer import Trainer

CONFIGS = {
    "tiny": dict(n_layer=1, n_embd=16, n_head=4, context_length=8),
    "devnet": {},
    "10m": dict(n_layer=8, n_embd=336, n_head=6, context_length=64),  # about 11M parameters
}


def _genesis(config: str):
    genesis = load_genesis()
    model = dataclasses.replace(genesis.model, **CONFIGS[config])
    training = genesis.training if config != "tiny" else dataclasses.replace(
        genesis.training, batch_size=2, checkpoint_every=1, steps_per_unit=2)
    return dataclasses.replace(genesis, model=model, training=training)


def _run(genesis, backend, steps: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    trainer = Trainer(genesis, backend=backend)
    state = trainer.initial_state()
    start = trainer.host_state(state).params.copy()
    hashes = []
    for _ in range(steps):
        trainer.step(state)
        hashes.append(trainer.state_hash(state))
    return hashes, start, trainer.host_state(state).params


def _outer(backend, start: np.ndarray, ends: list[np.ndarray]) -> str:
    to_device, ops = backend.to_device, backend.ops
    deltas = to_device(np.stack([end - start for end in ends]))
    mean = backend.zeros(start.size)
    ops.mean_of_deltas(mean, deltas)
    weights, momentum = to_device(start.copy()), backend.zeros(start.size)
    ops.outer_nesterov(weights, momentum, mean, np.float32(0.7), np.float32(0.9))
    return hashlib.sha256(backend.to_host(weights).tobytes() + backend.to_host(momentum).tobytes()).hexdigest()


def main() -> None:
    steps, config = int(sys.argv[1]), sys.argv[2]
    genesis = _genesis(config)
    cpu, cuda = cpu_backend(), cuda_backend()
    cpu_hashes, start, cpu_end = _run(genesis, cpu, steps)
    cuda_hashes, _, cuda_end = _run(genesis, cuda, steps)
    print(json.dumps({"cpu": cpu_hashes, "cuda": cuda_hashes,
                      "params": int(start.size),
                      "outer_cpu": _outer(cpu, start, [cpu_end, cpu_end * np.float32(0.5)]),
                      "outer_cuda": _outer(cuda, start, [cuda_end, cuda_end * np.float32(0.5)])}))


if __name__ == "__main__":
    main()
