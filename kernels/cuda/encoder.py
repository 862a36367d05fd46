"""Token + position embedding on CUDA: kernels/encoder.py's arithmetic, bit for bit."""
from numba import cuda

from kernels.cuda.fp import THREADS, blocks, fadd


@cuda.jit
def _encoder_forward(out, tokens, wte, wpe):
    B, T, C = out.shape
    i = cuda.grid(1)
    if i < B * T * C:
        bt = i // C
        c = i % C
        b = bt // T
        t = bt % T
        out[b, t, c] = fadd(wte[tokens[b, t], c], wpe[t, c])


@cuda.jit
def _encoder_backward(dwte, dwpe, dout, tokens):
    # One thread per channel walks (b, t) in ascending order, as the CPU does: each
    # gradient element is one thread's sequential sum, and repeated tokens never race.
    B, T, C = dout.shape
    c = cuda.grid(1)
    if c < C:
        for b in range(B):
            for t in range(T):
                g = dout[b, t, c]
                tok = tokens[b, t]
                dwte[tok, c] = fadd(dwte[tok, c], g)
                dwpe[t, c] = fadd(dwpe[t, c], g)


def encoder_forward(out, tokens, wte, wpe) -> None:
    """out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:].  out (B,T,C), tokens (B,T) int32."""
    _encoder_forward[blocks(out.size), THREADS](out, tokens, wte, wpe)


def encoder_backward(dwte, dwpe, dout, tokens) -> None:
    """dwte[tok] += dout, dwpe[t] += dout, each summed over (b, t) in ascending order."""
    _encoder_backward[blocks(dout.shape[2]), THREADS](dwte, dwpe, dout, tokens)
