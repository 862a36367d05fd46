"""Token + position embedding, forward and backward."""
import numba

from kernels.fp import kernel


@kernel(parallel=True)
def encoder_forward(out, tokens, wte, wpe):
    """out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:].  out (B,T,C), tokens (B,T) int32."""
    B, T, C = out.shape
    for bt in numba.prange(B * T):
        b = bt // T
        t = bt % T
        tok = tokens[b, t]
        for c in range(C):
            out[b, t, c] = wte[tok, c] + wpe[t, c]


@kernel(parallel=True)
def encoder_backward(dwte, dwpe, dout, tokens):
    """dwte[tok] += dout, dwpe[t] += dout, each summed over (b, t) in ascending order.

    Parallel over channels only: every (row, channel) gradient is one thread's
    sequential sum, so repeated tokens never race and the order never varies.
    """
    B, T, C = dout.shape
    for c in numba.prange(C):
        for b in range(B):
            for t in range(T):
                g = dout[b, t, c]
                dwte[tokens[b, t], c] += g
                dwpe[t, c] += g
