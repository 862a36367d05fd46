"""The CPU backend's ops under the names kernels.cuda gives its launchers."""
from kernels.attention import attention_backward, attention_forward
from kernels.crossentropy import crossentropy_backward, crossentropy_forward, mean_loss
from kernels.encoder import encoder_backward, encoder_forward
from kernels.gelu import gelu_backward, gelu_forward
from kernels.layernorm import layernorm_backward, layernorm_forward
from kernels.linear import bias_backward, linear_backward, linear_forward
from kernels.matmul import matmul_acc
from kernels.optim import adamw, clip_grad_norm, mean_of_deltas, outer_nesterov, sum_of_squares
from kernels.residual import residual_forward
from kernels.rng import fill_uniform

__all__ = [
    "adamw", "attention_backward", "attention_forward", "bias_backward", "clip_grad_norm",
    "crossentropy_backward", "crossentropy_forward", "encoder_backward", "encoder_forward",
    "fill_uniform", "gelu_backward", "gelu_forward", "layernorm_backward",
    "layernorm_forward", "linear_backward", "linear_forward", "matmul_acc", "mean_loss",
    "mean_of_deltas", "outer_nesterov", "residual_forward", "sum_of_squares",
]
