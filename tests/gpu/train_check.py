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
from node.uPoW.kernel_bench import TEN_MILLION_MODEL
from node.types.genesis import load_genesis
from node.uPoW.aggregation import outer_step
from node.uPoW.model_state import ModelState, encode_model
from node.uPoW.trainer import Trainer

CONFIGS = {
    "tiny": dict(n_layer=1, n_embd=16, n_head=4, context_length=8),
    "devnet": {},
    "10m": TEN_MILLION_MODEL,  # what the GPU benchmark measures
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


def _outer(genesis, backend, start: np.ndarray, ends: list[np.ndarray]) -> str:
    """The round close's outer step (two steps, so the momentum is not zero going in)."""
    model = ModelState(params=start, momentum=np.zeros_like(start))
    for _ in range(2):
        model = outer_step(genesis, model, [end - start for end in ends], backend)
    return hashlib.sha256(encode_model(model)).hexdigest()


def main() -> None:
    steps, config = int(sys.argv[1]), sys.argv[2]
    genesis = _genesis(config)
    cpu, cuda = cpu_backend(), cuda_backend()
    cpu_hashes, start, cpu_end = _run(genesis, cpu, steps)
    cuda_hashes, _, cuda_end = _run(genesis, cuda, steps)
    print(json.dumps({"cpu": cpu_hashes, "cuda": cuda_hashes,
                      "params": int(start.size),
                      "outer_cpu": _outer(genesis, cpu, start, [cpu_end, cpu_end * np.float32(0.5)]),
                      "outer_cuda": _outer(genesis, cuda, start,
                                           [cuda_end, cuda_end * np.float32(0.5)])}))


if __name__ == "__main__":
    main()
