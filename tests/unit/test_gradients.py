"""Gradient parity: the deterministic kernels against PyTorch autograd.

Tolerance: for the loss, relative error ≤ 1e-5; for every parameter tensor,
max|g - g_torch| / max|g_torch| ≤ 1e-5 (measured about 1.2e-6 on both configs).
An elementwise relative error is meaningless where a gradient entry is near zero,
so errors are measured against the tensor's scale.
"""
import dataclasses

import numpy as np
import pytest
import torch

from node.types.genesis import load_genesis
from node.uPoW.data import Corpus, train_batch
from node.uPoW.model import GPT, ParameterLayout, init_parameters
from node.uPoW.torch_gpt import torch_gpt_loss

GRAD_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-5

GENESIS = load_genesis()
LARGER = dataclasses.replace(GENESIS.model, n_layer=6, n_head=6, n_embd=192, context_length=128)


def _perturbed_params(layout: ParameterLayout) -> np.ndarray:
    # init has zero biases and unit gains; perturb them so their gradients are tested
    # on general values, not only on the special case
    params = init_parameters(layout)
    rng = np.random.default_rng(7)
    for spec in layout.tensors:
        if not spec.decayed:
            view = params[spec.offset:spec.offset + spec.size]
            view += rng.normal(0, 0.1, spec.size).astype(np.float32)
    return params


@pytest.mark.parametrize("config,batch_size", [(GENESIS.model, GENESIS.training.batch_size),
                                                (LARGER, 4)], ids=["devnet", "larger"])
def test_loss_and_every_gradient_match_torch(config, batch_size):
    layout = ParameterLayout(config)
    params = _perturbed_params(layout)
    corpus = Corpus.from_genesis(GENESIS)
    tokens, targets = train_batch(corpus, 3, 0, batch_size, config.context_length)

    model = GPT(layout, batch_size, config.context_length)
    loss = model.forward(params, tokens, targets)
    grads = np.zeros(layout.size, np.float32)
    model.backward(grads)

    torch.set_num_threads(1)
    ref = {name: torch.tensor(view, requires_grad=True) for name, view in layout.views(params).items()}
    ref_loss = torch_gpt_loss(ref, torch.from_numpy(tokens).long(), torch.from_numpy(targets).long(),
                              config.n_layer, config.n_head)
    ref_loss.backward()

    assert abs(float(loss) - ref_loss.item()) <= LOSS_TOLERANCE * abs(ref_loss.item())
    ours = layout.views(grads)
    worst = {}
    for name, tensor in ref.items():
        expected = tensor.grad.numpy()
        scale = np.abs(expected).max()
        assert scale > 0, f"{name}: torch's gradient is all zero, the comparison would be empty"
        worst[name] = float(np.abs(ours[name] - expected).max() / scale)
    print(f"loss {float(loss)!r} torch {ref_loss.item()!r}; worst gradient error {max(worst.values()):.2e} ({max(worst, key=worst.get)})")
    bad = {name: err for name, err in worst.items() if err > GRAD_TOLERANCE}
    assert not bad, f"gradients off by more than {GRAD_TOLERANCE} of their scale: {bad}"
