"""Diagnostic of the Mixer recursion gap (README, "What the Mixer recursion leaves out").

One gelu Mixer (σ_w = 1.2, σ_b = 0.3), float64, T = C = D = width.  For every sub-block it
prints the state (K, O_T, O_C), the token-to-token spread CV² of the LayerNorm variance σ_t²,
the one-step χ measured by JVPs, and χ = μ² + σ_w⁴ E[φ'(z)²]·E_t[1/σ_t²] (measured spread)
against μ² + σ_w⁴ E[φ'(z)²]/E_t[σ_t²] (what the recursion assumes), and the ratio
E_t[1/σ_t²]·E_t[σ_t²].

    python docs/mixer_gap_diagnostic.py WIDTH MU N_SUBBLOCKS     # e.g. 512 0.5 16
"""

import math
import sys

import torch
from torch.func import grad, jvp, vmap

W = int(sys.argv[1]) if len(sys.argv) > 1 else 256
MU = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
NSUB = int(sys.argv[3]) if len(sys.argv) > 3 else 12
SW, SB = 1.2, 0.3
DT = torch.float64
gelu = torch.nn.functional.gelu
torch.manual_seed(0)


def linear(n_in, n_out):
    return (torch.randn(n_out, n_in, dtype=DT) * SW / math.sqrt(n_in),
            torch.randn(n_out, dtype=DT) * SB)


def ln(x):
    m = x.mean(-1, keepdim=True)
    return (x - m) / ((x - m) ** 2).mean(-1, keepdim=True).sqrt()


params = [(linear(W, W), linear(W, W)) for _ in range(NSUB)]


def preact(i, y):
    (W1, b1), _ = params[i]
    return W1 @ y + b1[:, None] if i % 2 == 0 else y @ W1.T + b1


def sub(i, x):
    """Token sub-block (even i, MLP across tokens) or channel sub-block (odd i)."""
    _, (W2, b2) = params[i]
    h = gelu(preact(i, ln(x)))
    out = W2 @ h + b2[:, None] if i % 2 == 0 else h @ W2.T + b2
    return MU * x + out


x = torch.randn(W, W, dtype=DT)
for i in range(NSUB):
    K = (x**2).mean().item()
    OT = x.mean(1).var().item() - x.var(1).mean().item() / W
    OC = x.mean(0).var().item() - x.var(0).mean().item() / W
    s2 = x.var(1, unbiased=False)
    inv, ms = (1 / s2).mean().item(), s2.mean().item()
    chi_mc = sum((jvp(lambda z, i=i: sub(i, z), (x,), (torch.randn_like(x),))[1] ** 2)
                 .mean().item() for _ in range(4)) / 4
    dphi = vmap(grad(gelu))(preact(i, ln(x)).flatten())
    Ed2 = (dphi**2).mean().item()
    kind = "token  " if i % 2 == 0 else "channel"
    print(f"sub-block {i:2d} {kind} K={K:.4f} O_T={OT:.4f} O_C={OC:.4f} "
          f"CV2={s2.var().item() / ms**2:.4f} chi_MC={chi_mc:.4f} "
          f"chi(E[1/s2])={MU**2 + SW**4 * Ed2 * inv:.4f} "
          f"chi(1/E[s2])={MU**2 + SW**4 * Ed2 / ms:.4f} ratio={inv * ms:.4f}")
    x = sub(i, x)
