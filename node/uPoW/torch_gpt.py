"""The same GPT in plain PyTorch: the oracle in tests, the fast non-deterministic
baseline in benchmarks.  Never on the verified path.

It takes tensors by the names of node.uPoW.model.ParameterLayout (the export
format), so an exported model runs in it as loaded by safetensors.torch.
"""
import torch
import torch.nn.functional as F


def torch_gpt_loss(params: dict[str, torch.Tensor], tokens: torch.Tensor, targets: torch.Tensor,
                   n_layer: int, n_head: int) -> torch.Tensor:
    """Mean cross-entropy of the decoder on (B,T) int64 tokens/targets."""
    B, T = tokens.shape
    wte = params["wte.weight"]
    C = wte.shape[1]
    hs = C // n_head
    x = wte[tokens] + params["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    for l in range(n_layer):
        p = lambda name: params[f"h.{l}.{name}"]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), eps=1e-5)
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (z.view(B, T, n_head, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (hs ** 0.5)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), eps=1e-5)
        h = F.gelu(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"), approximate="tanh")
        x = x + h @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), params["ln_f.weight"], params["ln_f.bias"], eps=1e-5)
    logits = x @ wte.T
    return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))
