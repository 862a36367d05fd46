"""The CUDA backend: every op of kernels/ under the CPU kernel's name and argument
order, giving the CPU kernel's bits (DESIGN.md §3).  Arguments are numba device arrays
or anything exporting ``__cuda_array_interface__``; scalars as on the CPU."""
from kernels.cuda.attention import attention_backward, attention_forward
from kernels.cuda.crossentropy import crossentropy_backward, crossentropy_forward, mean_loss
from kernels.cuda.encoder import encoder_backward, encoder_forward
from kernels.cuda.gelu import gelu_backward, gelu_forward
from kernels.cuda.layernorm import layernorm_backward, layernorm_forward
from kernels.cuda.linear import bias_backward, linear_backward, linear_forward
from kernels.cuda.matmul import matmul_acc
from kernels.cuda.optim import (adamw, clip_grad_norm, mean_of_deltas, outer_nesterov,
                                sum_of_squares)
from kernels.cuda.residual import residual_forward
from kernels.cuda.rng import fill_uniform

__all__ = [
    "adamw", "attention_backward", "attention_forward", "bias_backward", "clip_grad_norm",
    "crossentropy_backward", "crossentropy_forward", "encoder_backward", "encoder_forward",
    "fill_uniform", "gelu_backward", "gelu_forward", "layernorm_backward",
    "layernorm_forward", "linear_backward", "linear_forward", "matmul_acc", "mean_loss",
    "mean_of_deltas", "outer_nesterov", "residual_forward", "sum_of_squares",
]
