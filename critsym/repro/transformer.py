r"""Transformer blocks: one-block APJN phase diagrams of a ViT-like stack, and J^{0,l} vs depth.

**Phase diagrams** (the partial-Jacobian paper's ViT notebook, github ablghtianyi/PartialJac):
17 tokens, 10 blocks, MLP 4× with ReLU, every Linear (Q, K, V, O, W₁, W₂) with weights of
variance varw/fan_in and zero biases, residual x ↦ μx + branch around both sub-blocks, with
LayerNorm before each branch ("pre"), after each residual sum ("post") or nowhere ("none").
The one-block APJN J^{7→8} = (1/(n d)) ‖∂h⁸/∂h⁷‖_F² over varw ∈ [0.1, 4.1], μ ∈ [0.1, 1].

* Theory, as drawn: the **standard softmax regime** of the paper's attention (independent W_Q,
  W_K, logits of variance σ_QK² q̃(q̃ − p̃) with σ_QK = varw): :func:`standard_one_block`
  combines the exact softmax moments of :mod:`critsym.attention.softmax_moments` by the fold rule
  of :mod:`critsym.attention.standard` (``Attention(..., "standard")`` does not derive through
  the fold yet), propagating the expected token Gram across blocks.  Where the logit variance
  leaves the moments' range (no LN at large varw) it is NaN (grey).
* Theory, dashed: critsym's token theory (q, p per token and the two-part tangent (j, k)) of
  the block built from ``Residual``, ``LayerNorm``, ``Attention``, ``Linear`` and ``Act``
  (:func:`vit_block`) with **uniform attention** A = 11ᵀ/n; J^{7→8} is the (j, j) entry of the
  block's tangent map at the state after 7 blocks.  The standard regime with σ_QK = 0 equals it.
* Monte Carlo: real torch stacks of that architecture (:func:`vit_stack`) with softmax attention
  as in the paper, and — for the slices — with uniform attention (W_Q = W_K = 0, so the softmax
  is exactly 11ᵀ/n), where the uniform theory is exact up to O(1/d); J^{7→8} by
  :func:`critsym.apjn`, mean ± SE over independent networks.

Claims: pre-LN with μ = 1 is near-critical for every varw; pre-LN with μ < 1 and post-LN are
ordered (J < 1); no LN is chaotic (J > 1) once varw is not small.

**Depth** (labofdoubt/transformers-apjn): a ViT-base-like init (σ_O = σ_V = σ₁ = 0.64·√(3/4),
σ₂ = 2σ₁, uniform attention) with pre-LN, and with erf(x) ("Derf" erf(αx + s) of Chen et al.
2025, arXiv 2512.10938, at its initial α = 1, s = 0) in place of LayerNorm.  J^{0,l} grows as
a power law J ∝ l^b with LayerNorm (q grows ∝ l and each block adds O(1/q)) and as a
stretched exponential log J ≈ a + c·l^β, β ≈ ½, with erf (its Jacobian factor decays only as
q^{-1/2}).  Both forms are fitted (:func:`fit_growth`) to the theory and to the Monte Carlo.

``critsym repro transformer --out docs/figures/transformer_phase.png [--quick]`` writes the phase
figure there and the depth figure beside it (``…_depth.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from ..errors import HyperparameterError
from ..stats import line_fit, mean_se
from ._common import pyplot, save_figure, show

NORMS = ("pre", "post", "none")
N_TOKENS = 17
N_BLOCKS = 10
#: J^{7→8}: from the output of block 7 to the output of block 8 (blocks counted from 1)
MEASURED = ("blocks.6", "blocks.7")
#: ViT-base-like σ of labofdoubt/transformers-apjn: 0.64·√(768/1024)
VIT_SIGMA = 0.64 * math.sqrt(768 / 1024)
THEORY_LABEL = ("theory: standard softmax regime, σ_QK = varw (critsym.attention.standard; grey: "
                "logit variance beyond its range); dashed: uniform attention A = 11ᵀ/n")


# ---------------------------------------------------------------- theory (critsym)

def vit_block(norm: str, n: int = N_TOKENS, mu: object = "mu"):
    """One block as critsym operators: uniform ``Attention`` (σ_V, σ_O: ``sigma_v``,
    ``sigma_o``) and a ReLU MLP (``sigma_1``, ``sigma_2``), zero biases, residuals x ↦ μx + branch,
    with LayerNorm before each branch ("pre"), after each residual sum ("post"), nowhere
    ("none"), or erf in place of LayerNorm ("derf": Derf at α = 1)."""
    from ..ops import Act, Attention, LayerNorm, Linear, Residual

    att = Attention(n, "uniform", sigma_v="sigma_v", sigma_o="sigma_o")
    mlp = Linear("sigma_1", 0) >> Act("relu") >> Linear("sigma_2", 0)
    if norm == "pre":
        return Residual(LayerNorm() >> att, mu) >> Residual(LayerNorm() >> mlp, mu)
    if norm == "derf":
        return Residual(Act("erf") >> att, mu) >> Residual(Act("erf") >> mlp, mu)
    if norm == "post":
        return Residual(att, mu) >> LayerNorm() >> Residual(mlp, mu) >> LayerNorm()
    if norm == "none":
        return Residual(att, mu) >> Residual(mlp, mu)
    raise HyperparameterError(f"norm must be one of {NORMS + ('derf',)}, got {norm!r}")


@cache
def block_theory(norm: str, n: int = N_TOKENS):
    """The critsym Theory of :func:`vit_block` (derived once per (norm, n))."""
    from ..derive import derive

    return derive(vit_block(norm, n))


def _hyper(mu, sigma_o, sigma_v, sigma_1, sigma_2) -> dict:
    return dict(mu=mu, sigma_o=sigma_o, sigma_v=sigma_v, sigma_1=sigma_1, sigma_2=sigma_2)


def theory_run(depth: int, *, norm: str = "pre", mu=1.0, n: int = N_TOKENS, sigma_o=1.0,
               sigma_v=1.0, sigma_1=1.0, sigma_2=1.0, q0: float = 1.0, p0: float = 0.0):
    r"""critsym's token theory of ``depth`` blocks from (q⁰, p⁰), j⁰ = 1, k⁰ = 0: the
    RunResult with ``K`` = q, ``O_C`` = p, ``J`` = j, ``k`` per block (hyperparameters may be
    arrays: one run per entry).  For uniform attention A = 11ᵀ/n behind a per-token map e = N(h)
    (Jacobian moments q̂ = E N'², p̂ = E N'_a N'_b; LayerNorm: q̂ = p̂ = 1/q) the block is

        q, p ← μ²(q, p) + σ_OV² ν,  ν = E e²/n + (1 − 1/n) E e_a e_b,
        j ← μ² j + σ_OV²(q̂ j/n + p̂ k),  k ← μ² k + ((n−1)/n) σ_OV²(q̂ j/n + p̂ k),

    then the MLP multiplies j by μ² + σ₁²σ₂² q̂ E relu'² and k by μ² + σ₁²σ₂² p̂ κ'(ρ),
    κ'(ρ) = ¼ + asin(ρ)/(2π); "post" divides q, p, j, k by q at each LayerNorm."""
    th = block_theory(norm, n)
    return th.run(depth, K0=q0, O_C0=p0, J0=1.0, k0=0.0,
                  **_hyper(mu, sigma_o, sigma_v, sigma_1, sigma_2))


@lru_cache(maxsize=8)
def vit_base_depth_theory(norm: str, depth: int, n: int = N_TOKENS) -> np.ndarray:
    """J^{0,l}, l = 0..depth, of the ViT-base-like init (σ_O = σ_V = σ₁ = :data:`VIT_SIGMA`,
    σ₂ = 2σ₁, μ = 1, q⁰ = 1, p⁰ = 0) from critsym's theory (cached: the erf block takes
    ~45 ms per block)."""
    r = theory_run(depth, norm=norm, n=n, sigma_o=VIT_SIGMA, sigma_v=VIT_SIGMA,
                   sigma_1=VIT_SIGMA, sigma_2=2 * VIT_SIGMA)
    out = np.asarray(r.J, float)
    out.setflags(write=False)
    return out


def theory_one_block(norm: str, mu, varw, layer: int = 7, n: int = N_TOKENS,
                     q0: float = 1.0, p0: float = 0.0):
    """J^{l→l+1} of the ViT-like stack (every σ² = varw; ``mu``, ``varw`` broadcast as arrays):
    the (j, j) entry of the block's tangent map at the state after ``layer`` blocks."""
    mu, varw = np.broadcast_arrays(np.asarray(mu, float), np.asarray(varw, float))
    s = np.sqrt(varw)
    hyper = _hyper(mu, s, s, s, s)
    r = block_theory(norm, n).run(layer, K0=q0, O_C0=p0, **hyper)
    K, O_C = np.asarray(r.K, float)[-1], np.asarray(r.O_C, float)[-1]
    # collapsing tokens (ρ → 1) can leave p a rounding error above q after many blocks
    O_C = np.minimum(O_C, K)
    M = block_theory(norm, n).tangent_map(K=K, O_C=O_C, **hyper)
    out = np.asarray(M, float)[..., 0, 0]
    return float(out) if out.ndim == 0 else out


def _relu_moments(rho: float) -> tuple[float, float]:
    """(κ, κ') of ReLU at unit variances, correlation ρ: κ = E relu(u)relu(v) =
    (√(1−ρ²) + ρ(π − arccos ρ))/(2π), κ' = E relu'(u)relu'(v) = ¼ + asin(ρ)/(2π)."""
    rho = min(max(rho, -1.0), 1.0)
    return ((math.sqrt(1 - rho * rho) + rho * (math.pi - math.acos(rho))) / (2 * math.pi),
            0.25 + math.asin(rho) / (2 * math.pi))


def _standard_block(state, norm: str, mu: float, varw: float, sigma_qk: float, n: int):
    r"""One block on (q, p, j, κ) (κ = k n/(n−1), the per-pair tangent overlap) with standard
    softmax attention.  The attention input x (LN(h) for "pre", h otherwise) has Gram q̃, p̃,
    u = q̃ − p̃; the logits have variance v = σ_QK² q̃ u; D, X, W_D, W_X are the softmax moments
    of :mod:`critsym.attention.softmax_moments`, combined by the rule of
    :mod:`critsym.attention.standard`:

        q, p ← μ²(q, p) + varw² (p̃ + u (D, X)),
        (j, κ) ← μ²(j, κ) + varw [value + qk](j_v, κ_v),  (j_v, κ_v) = varw (q̂ j, p̂ κ),
        value = [[D, 1 − D], [X, 1 − X]],
        qk = σ_QK² u [[W_D (q̃ + u), −W_D q̃], [W_X p̃, W_X (u − p̃)]];

    then the ReLU MLP as in :func:`theory_run`; "post" divides by q after each sum."""
    from ..attention.softmax_moments import softmax_D, softmax_WD, softmax_WX, softmax_X

    q, p, j, kap = state
    m2 = mu * mu
    if norm == "pre":
        qt, pt, qh = 1.0, p / q, 1.0 / q
    else:
        qt, pt, qh = q, p, 1.0
    u = qt - pt
    v = sigma_qk**2 * qt * u
    rho = pt / qt
    D, WD = softmax_D(n, v), softmax_WD(n, v)
    X, WX = softmax_X(n, v, rho), softmax_WX(n, v, rho)
    jv, kv = varw * qh * j, varw * qh * kap
    b2u = sigma_qk**2 * u
    jy = D * jv + (1 - D) * kv + b2u * WD * ((qt + u) * jv - qt * kv)
    ky = X * jv + (1 - X) * kv + b2u * WX * (pt * jv + (u - pt) * kv)
    q, p = m2 * q + varw**2 * (pt + u * D), m2 * p + varw**2 * (pt + u * X)
    j, kap = m2 * j + varw * jy, m2 * kap + varw * ky
    if norm == "post":
        q, p, j, kap = 1.0, p / q, j / q, kap / q
    mlp = varw * varw
    if norm == "pre":
        ut, vt, qh = 1.0, p / q, 1.0 / q
    else:
        ut, vt, qh = q, p, 1.0
    kappa, kappa1 = _relu_moments(vt / ut)
    q, p = m2 * q + mlp * ut / 2, m2 * p + mlp * ut * kappa
    j, kap = (m2 + mlp * qh / 2) * j, (m2 + mlp * qh * kappa1) * kap
    if norm == "post":
        q, p, j, kap = 1.0, p / q, j / q, kap / q
    return q, p, j, kap


def standard_one_block(norm: str, mu: float, varw: float, layer: int = 7, n: int = N_TOKENS,
                       sigma_qk: float | None = None, q0: float = 1.0,
                       p0: float = 0.0) -> float:
    """J^{l→l+1} of the ViT-like stack with the paper's softmax attention in the standard regime
    (independent W_Q, W_K: σ_QK = σ_Q σ_K = varw unless ``sigma_qk`` is given), from
    :func:`_standard_block`.  Across blocks the theory propagates the expected token Gram (the
    approximation of :mod:`critsym.attention.standard`).  NaN where the logit variance leaves
    the tabulated range v <= 400 of the softmax moments (no LN at large varw: the attention is
    one-hot there)."""
    from ..errors import HyperparameterError as _Range

    sqk = float(varw if sigma_qk is None else sigma_qk)
    state = (float(q0), float(p0), 1.0, 0.0)
    try:
        for _ in range(layer):
            state = _standard_block(state, norm, mu, varw, sqk, n)
        return float(_standard_block((state[0], state[1], 1.0, 0.0), norm, mu, varw, sqk,
                                     n)[2])
    except _Range:
        return float("nan")


# ---------------------------------------------------------------- torch stacks

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


# ---------------------------------------------------------------- growth-law fits

@dataclass(frozen=True)
class GrowthFit:
    """Two three-parameter fits of log J^{0,l} over ``layers`` (ordinary least squares, or
    weighted by the SE of log J): a power law log J = a + b log(l + l₀) (l₀ ≥ 0 by a grid
    scan) and a stretched exponential log J = a + c l^β (β ∈ [0.01, 1.5] by a grid scan).
    ``rms_*``: the root-mean-square residual of log J (weighted when errors are given);
    ``chi2_*``: χ²/dof with the given errors (NaN without).

    The power law is the β → 0 end of the stretched family (l^β ≈ 1 + β log l), so the fitted β
    decides: :attr:`form` is "power law" for β < 0.15 and "stretched exponential" otherwise."""

    layers: tuple[int, int]
    power_b: float
    power_l0: float
    rms_power: float
    chi2_power: float
    beta: float
    stretched_c: float
    rms_stretched: float
    chi2_stretched: float

    @property
    def form(self) -> str:
        return "power law" if self.beta < 0.15 else "stretched exponential"

    def __repr__(self) -> str:
        return (f"GrowthFit(l={self.layers[0]}..{self.layers[1]}: {self.form}; power law "
                f"b={self.power_b:.3f}, l0={self.power_l0:.3g}, rms={self.rms_power:.2g}; "
                f"stretched β={self.beta:.2f}, rms={self.rms_stretched:.2g})")


def _best_line(xs, y, sig):
    """(index, fit, weighted mean square residual, χ²) of the best of the regressors ``xs``."""
    w = np.ones_like(y) if sig is None else 1.0 / sig**2
    best = None
    for i, x in enumerate(xs):
        f = line_fit(x, y, sigma=sig)
        r = y - f.coef[0] - f.coef[1] * x
        chi2 = float(np.sum(w * r * r))
        if best is None or chi2 < best[3]:
            best = (i, f, chi2 / float(np.sum(w)), chi2)
    return best


def fit_growth(layers, J, se=None) -> GrowthFit:
    """Fit both growth laws (see :class:`GrowthFit`) to J^{0,l} at ``layers`` (≥ 1); ``se``:
    standard errors of J (the fits are then weighted by the SE of log J, se/J)."""
    l = np.asarray(layers, dtype=float)
    y = np.log(np.asarray(J, dtype=float))
    sig = None if se is None else np.maximum(np.asarray(se, float) / np.exp(y), 1e-12)
    dof = len(l) - 3
    l0s = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 200)])
    ip, fp, msp, chip = _best_line([np.log(l + a) for a in l0s], y, sig)
    betas = np.linspace(0.01, 1.5, 150)
    ib, fb, msb, chib = _best_line([l**b for b in betas], y, sig)
    nan = float("nan")
    return GrowthFit((int(l[0]), int(l[-1])), float(fp.coef[1]), float(l0s[ip]),
                     math.sqrt(msp), chip / dof if sig is not None and dof > 0 else nan,
                     float(betas[ib]), float(fb.coef[1]), math.sqrt(msb),
                     chib / dof if sig is not None and dof > 0 else nan)


# ---------------------------------------------------------------- the reproduction

def _settings(quick: bool) -> dict:
    if quick:
        return dict(varws=(0.1, 2.1, 4.1), mus=(0.5, 1.0), dim=32, n_nets=3, slice_nets=3,
                    slice_varws=(0.1, 4.1), slice_mus=(1.0,), depth=12, depth_dim=32,
                    depth_nets=3, depth_n=17, theory_depth=256)
    return dict(varws=tuple(np.round(np.arange(0.1, 4.11, 0.5), 2)),
                mus=tuple(np.round(np.arange(0.1, 1.01, 0.1), 2)), dim=64, n_nets=6, slice_nets=8,
                slice_varws=tuple(np.round(np.arange(0.1, 4.11, 0.5), 2)),
                slice_mus=(1.0, 0.7, 0.4), depth=128, depth_dim=64, depth_nets=8, depth_n=17,
                theory_depth=512)


def phase_diagrams(quick: bool = False, seed: int = 0) -> dict:
    """Theory and Monte Carlo J^{7→8} over the (varw, μ) grid for each norm placement, and the
    slices (softmax and uniform attention Monte Carlo) at a few μ."""
    s = _settings(quick)
    fine_v = np.round(np.arange(0.1, 4.11, 0.1), 2)
    fine_mu = np.round(np.arange(0.1, 1.001, 0.025), 3)
    res = {"varws": list(s["varws"]), "mus": list(s["mus"]), "dim": s["dim"],
           "n_nets": s["n_nets"], "slice_nets": s["slice_nets"], "theory_label": THEORY_LABEL}
    for norm in NORMS:
        th = theory_one_block(norm, fine_mu[:, None], fine_v[None, :])
        std = np.array([[standard_one_block(norm, mu, v) for v in s["varws"]]
                        for mu in s["mus"]])
        mc = np.empty((len(s["mus"]), len(s["varws"]), 2))
        for a, mu in enumerate(s["mus"]):
            for b, v in enumerate(s["varws"]):
                mc[a, b] = measure_one_block(norm, mu, v, dim=s["dim"], n_nets=s["n_nets"],
                                             seed=seed)
        slices = []
        for mu in s["slice_mus"]:
            row = {"mu": mu, "varw": list(s["slice_varws"]),
                   "theory": list(theory_one_block(norm, mu, np.asarray(s["slice_varws"]))),
                   "standard": [standard_one_block(norm, mu, v) for v in s["slice_varws"]]}
            for att in ("softmax", "uniform"):
                ms = [measure_one_block(norm, mu, v, dim=s["dim"], n_nets=s["slice_nets"],
                                        seed=seed + 1, attention=att)
                      for v in s["slice_varws"]]
                row[att] = [m for m, _ in ms]
                row[att + "_se"] = [e for _, e in ms]
            slices.append(row)
        res[norm] = {"theory_grid": th, "theory_varw": fine_v, "theory_mu": fine_mu,
                     "standard_grid": std, "mc": mc[..., 0], "mc_se": mc[..., 1], "slices": slices}
    return res


def depth_growth(quick: bool = False, seed: int = 0) -> dict:
    """J^{0,l} vs l for pre-LN and erf ("derf") ViT-base-like stacks: theory to a large depth,
    Monte Carlo to a modest one, both growth laws fitted to each."""
    s = _settings(quick)
    res = {"n": s["depth_n"], "dim": s["depth_dim"], "n_nets": s["depth_nets"]}
    for norm in ("pre", "derf"):
        th = vit_base_depth_theory(norm, s["theory_depth"], s["depth_n"])
        m, se = measure_depth(norm, s["depth"], dim=s["depth_dim"], n_nets=s["depth_nets"],
                              seed=seed, n=s["depth_n"])
        lo = max(2, s["depth"] // 8)
        layers = np.arange(lo, s["depth"] + 1)
        deep = np.arange(s["theory_depth"] // 16, s["theory_depth"] + 1)
        z = (m[1:] - th[1:len(m)]) / se[1:]
        res[norm] = {"theory": th, "mc": m, "mc_se": se,
                     "fit_theory": fit_growth(deep, th[deep]),
                     "fit_theory_mc_range": fit_growth(layers, th[layers]),
                     "fit_mc": fit_growth(layers, m[layers], se[layers]),
                     "z_max": float(np.max(np.abs(z))), "z_last": float(z[-1])}
    return res


def depth_path(out: str | Path) -> Path:
    """Where the depth figure goes: ``<out stem>_depth<suffix>`` beside ``out``."""
    p = Path(out)
    return p.with_name(p.stem + "_depth" + p.suffix)


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Both parts; ``out`` (checked with its ``_depth`` sibling before computing) gets the phase
    figure and the sibling the depth figure."""
    if out is not None:
        from ..cli.paths import check_output_file

        check_output_file(out)
        check_output_file(depth_path(out))
    phase = phase_diagrams(quick, seed)
    rows = []
    for norm in NORMS:
        d = phase[norm]
        for row in d["slices"]:
            for v, st, t, m, e, mu_, eu in zip(row["varw"], row["standard"], row["theory"],
                                               row["softmax"], row["softmax_se"], row["uniform"],
                                               row["uniform_se"], strict=True):
                rows.append((norm, f"mu={row['mu']}", f"varw={v}", f"standard={st:.4f}",
                             f"MC softmax={m:.4f}±{e:.4f}", f"uniform={t:.4f}",
                             f"MC uniform={mu_:.4f}±{eu:.4f}"))
    show("one-block APJN J^{7->8} of a 17-token 10-block ViT-like stack: theory (standard "
         "regime / uniform attention) and Monte Carlo", rows)
    depth = depth_growth(quick, seed)
    rows = []
    for norm in ("pre", "derf"):
        d = depth[norm]
        rows += [(norm, "theory", repr(d["fit_theory"])),
                 (norm, "theory", repr(d["fit_theory_mc_range"])),
                 (norm, "Monte Carlo", repr(d["fit_mc"])),
                 (norm, "Monte Carlo vs theory", f"max |z| = {d['z_max']:.2f}",
                  f"z at l = {len(d['mc']) - 1}: {d['z_last']:+.2f}")]
    show("J^{0,l} vs depth: growth-law fits", rows)
    if out is not None:
        save_figure(plot_phase(phase), out)
        save_figure(plot_depth(depth), str(depth_path(out)))
    return {"phase": phase, "depth": depth}


# ---------------------------------------------------------------- figures

def _cell_edges(centres) -> tuple[float, float]:
    """The outer edges of pcolormesh cells ("nearest" shading) centred on ``centres``."""
    c = np.asarray(centres, dtype=float)
    half = (c[1] - c[0]) / 2 if len(c) > 1 else 0.5
    return float(c[0] - half), float(c[-1] + half)


def plot_phase(res: dict, axes=None):
    """Rows: theory log₁₀ J^{7→8} (standard softmax regime, with the uniform-attention J = 1
    line), Monte Carlo (softmax attention), and slices with error bars (theory lines: standard
    solid, uniform dashed); columns: pre-LN, post-LN, no LN.  Returns the figure."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    if axes is None:
        fig, axes = plt.subplots(3, 3, figsize=(12, 10.5))
    else:
        fig = np.asarray(axes).flat[0].figure
    axes = np.asarray(axes)
    cnorm = TwoSlopeNorm(vcenter=0.0, vmin=-2.0, vmax=2.0)
    titles = {"pre": "pre-LN", "post": "post-LN", "none": "no LN"}
    for c, norm in enumerate(NORMS):
        d = res[norm]
        ax = axes[0, c]
        ax.set_facecolor("0.8")
        im = ax.pcolormesh(res["varws"], res["mus"], np.log10(d["standard_grid"]),
                           cmap="RdBu_r", norm=cnorm, shading="nearest")
        ax.contour(d["theory_varw"], d["theory_mu"], np.log10(d["theory_grid"]), levels=[0.0],
                   colors="k", linewidths=1, linestyles="--")
        ax.set_title(f"{titles[norm]}: theory, standard regime (dashed: uniform J = 1)",
                     fontsize=9)
        ax.set_xlim(*_cell_edges(res["varws"]))
        ax.set_ylim(*_cell_edges(res["mus"]))
        fig.colorbar(im, ax=ax, label="log10 J(7→8)")
        ax = axes[1, c]
        im = ax.pcolormesh(res["varws"], res["mus"], np.log10(np.maximum(d["mc"], 1e-12)),
                           cmap="RdBu_r", norm=cnorm, shading="nearest")
        fig.colorbar(im, ax=ax, label="log10 J(7→8)")
        ax.set_title(f"{titles[norm]}: Monte Carlo (softmax, σ_QK² = varw², d = {res['dim']})",
                     fontsize=9)
        for ax in axes[:2, c]:
            ax.set_xlabel("varw")
            ax.set_ylabel("μ")
        ax = axes[2, c]
        for i, row in enumerate(d["slices"]):
            col = f"C{i}"
            v = np.asarray(row["varw"])
            ax.plot(v, row["standard"], "-", color=col, lw=1.2,
                    label=f"μ={row['mu']}: theory, standard")
            ax.plot(v, row["theory"], "--", color=col, lw=1.0,
                    label="theory, uniform" if i == 0 else None)
            ax.errorbar(v, row["softmax"], row["softmax_se"], fmt="o", color=col, ms=4,
                        capsize=2, label="MC softmax" if i == 0 else None)
            ax.errorbar(v + 0.05, row["uniform"], row["uniform_se"], fmt="s", mfc="none",
                        color=col, ms=4, capsize=2, label="MC uniform" if i == 0 else None)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("varw")
        ax.set_ylabel("J(7→8)")
        ax.legend(fontsize=6)
    fig.suptitle("one-block APJN J(7→8) of a 17-token, 10-block ViT-like stack\n"
                 + res["theory_label"], fontsize=9)
    return fig


def plot_depth(res: dict, ax=None):
    """J^{0,l} vs l (log–log): theory lines and Monte Carlo points for pre-LN and erf."""
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.4))
    else:
        fig = ax.figure
    names = {"pre": "pre-LN", "derf": "erf (Derf, α = 1)"}
    for i, norm in enumerate(("pre", "derf")):
        d, col = res[norm], f"C{i}"
        th = d["theory"]
        l_th = np.arange(1, len(th))
        f = d["fit_theory"]
        ax.plot(l_th, th[1:], "-", color=col, lw=1.3,
                label=f"{names[norm]}: theory — best fit {f.form} (β = {f.beta:.2f})")
        l_mc = np.arange(1, len(d["mc"]))
        ax.errorbar(l_mc, d["mc"][1:], d["mc_se"][1:], fmt="o", color=col, ms=3, capsize=2,
                    label=f"{names[norm]}: Monte Carlo (d = {res['dim']}, n = {res['n']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth l (blocks)")
    ax.set_ylabel(r"$J^{0,l}$")
    ax.set_title("ViT-base-like init, uniform attention: LN → power law, erf → stretched "
                 "exponential", fontsize=8)
    ax.legend(fontsize=6)
    return fig
