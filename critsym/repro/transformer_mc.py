"""Torch stacks of the ViT-like transformer of ``critsym repro transformer`` and their APJN
measured with :func:`critsym.apjn` (mean ± SE over independent networks)."""

from __future__ import annotations

import math

import numpy as np

from ..stats import mean_se
from .transformer_theory import MEASURED, N_BLOCKS, N_TOKENS, VIT_SIGMA


def _torch_modules():
    import torch
    from torch import nn

    class TokenErf(nn.Module):
        """erf(α x) applied entrywise (the "Derf" replacement of LayerNorm, no affine)."""

        def __init__(self, alpha: float):
            super().__init__()
            self.alpha = alpha

        def forward(self, x):
            return torch.erf(self.alpha * x)

    class SelfAttention(nn.Module):
        """Multi-head softmax self-attention: logits (W_Q x_a)·(W_K x_b)/√d_head."""

        def __init__(self, dim: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim, bias=False)
            self.out = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                       for t in self.qkv(x).chunk(3, dim=-1))
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
            return self.out((a @ v).transpose(1, 2).reshape(b, n, d))

    class Block(nn.Module):
        def __init__(self, dim, heads, norm, mu, alpha):
            super().__init__()
            self.norm, self.mu = norm, mu

            def token_map():
                if norm == "derf":
                    return TokenErf(alpha)
                return nn.LayerNorm(dim) if norm in ("pre", "post") else nn.Identity()

            self.n1, self.n2 = token_map(), token_map()
            self.attn = SelfAttention(dim, heads)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            if self.norm == "post":
                x = self.n1(self.attn(x) + self.mu * x)
                return self.n2(self.mlp(x) + self.mu * x)
            x = self.attn(self.n1(x)) + self.mu * x
            return self.mlp(self.n2(x)) + self.mu * x

    class Stack(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.blocks = nn.Sequential(*blocks)

        def forward(self, x):
            return self.blocks(x)

    return Block, Stack


def vit_stack(norm: str, *, mu: float = 1.0, dim: int = 64, depth: int = N_BLOCKS,
              heads: int = 8, varw: float = 1.0, sigmas: dict | None = None,
              attention: str = "softmax", alpha: float = 1.0, seed: int = 0):
    """A torch stack of ``depth`` transformer blocks (float64) on inputs (batch, tokens, dim).

    Weights N(0, σ²/fan_in), biases 0.  ``sigmas`` (keys qk, v, o, w1, w2: standard deviations ×
    √fan_in) overrides the common σ² = ``varw``.  ``attention="uniform"`` zeroes W_Q and W_K, so
    the softmax is exactly 11ᵀ/n.  ``norm``: "pre", "post", "none" or "derf" (erf(αx) before
    each branch).
    """
    import torch

    Block, Stack = _torch_modules()
    s = {key: math.sqrt(varw) for key in ("qk", "v", "o", "w1", "w2")}
    s.update(sigmas or {})
    torch.manual_seed(seed)
    model = Stack([Block(dim, heads, norm, mu, alpha) for _ in range(depth)]).double()
    with torch.no_grad():
        for b in model.blocks:
            w = b.attn.qkv.weight
            w[:2 * dim].normal_(0.0, s["qk"] / math.sqrt(dim))
            if attention == "uniform":
                w[:2 * dim].zero_()
            w[2 * dim:].normal_(0.0, s["v"] / math.sqrt(dim))
            b.attn.out.weight.normal_(0.0, s["o"] / math.sqrt(dim))
            b.mlp[0].weight.normal_(0.0, s["w1"] / math.sqrt(dim))
            b.mlp[2].weight.normal_(0.0, s["w2"] / math.sqrt(4 * dim))
            for lin in (b.attn.out, b.mlp[0], b.mlp[2]):
                lin.bias.zero_()
    return model


def _inputs(n_batch: int, dim: int, q0: float, seed: int):
    import torch

    g = torch.Generator().manual_seed(10_000 + seed)
    return math.sqrt(q0) * torch.randn(n_batch, N_TOKENS, dim, generator=g, dtype=torch.float64)


def measure_one_block(norm: str, mu: float, varw: float, *, dim: int, n_nets: int, seed: int,
                      attention: str = "softmax", n_batch: int = 2, n_probes: int = 4,
                      q0: float = 1.0) -> tuple[float, float]:
    """J^{7→8} of :func:`vit_stack` networks: mean ± SE over ``n_nets`` independent networks
    (each the mean over ``n_batch`` Gaussian inputs and ``n_probes`` probes)."""
    from ..torch.apjn import apjn

    vals = []
    for i in range(n_nets):
        model = vit_stack(norm, mu=mu, varw=varw, dim=dim, attention=attention,
                          seed=seed * 7919 + i)
        x = _inputs(n_batch, dim, q0, seed * 7919 + i)
        vals.append(apjn(model, x, MEASURED, n_probes=n_probes, seed=seed + i).J[1])
    m, se = mean_se(vals)
    return float(m), float(se)


def measure_depth(norm: str, depth: int, *, dim: int, n_nets: int, seed: int, n: int,
                  n_batch: int = 2, n_probes: int = 4, alpha: float = 1.0,
                  q0: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """J^{0,l}, l = 0..depth, of the ViT-base-like uniform-attention stack (l = 0: an identity
    on the input), mean ± SE over networks."""
    import torch

    from ..torch.apjn import apjn

    sig = dict(qk=0.0, v=VIT_SIGMA, o=VIT_SIGMA, w1=VIT_SIGMA, w2=2 * VIT_SIGMA)
    rows = []
    for i in range(n_nets):
        stack = vit_stack(norm, depth=depth, dim=dim, sigmas=sig, attention="uniform",
                          alpha=alpha, seed=seed * 7919 + i)
        model = torch.nn.Sequential(torch.nn.Identity(), *stack.blocks)
        g = torch.Generator().manual_seed(20_000 + seed * 7919 + i)
        x = math.sqrt(q0) * torch.randn(n_batch, n, dim, generator=g, dtype=torch.float64)
        names = [str(k) for k in range(depth + 1)]
        rows.append(apjn(model, x, names, n_probes=n_probes, seed=seed + i).J)
    m, se = mean_se(np.array(rows), axis=0)
    return m, se
