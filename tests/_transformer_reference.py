r"""Independent reference for transformer recursions (plain numpy, no critsym code).

A stack of transformer blocks on n exchangeable tokens of width d → ∞, with uniform attention
(A = 11ᵀ/n), a ReLU MLP and residual x ↦ μx + branch.  Per block the state is

* q: the per-token variance, p: the covariance of two different tokens (at one channel);
* j = (1/(n d)) Σ_a ‖∂h_a/∂h⁰‖_F²  (the APJN over all tokens) and
  k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a/∂h⁰, ∂h_b/∂h⁰⟩_F  (the cross-token overlap); j⁰ = 1, k⁰ = 0.

Attention sub-block behind a per-token map e = N(h) (LayerNorm, erf(αh) or the identity) with
Jacobian moments q̂ = E N'(h_a)², p̂ = E N'(h_a) N'(h_b) (a ≠ b), and σ_OV² = σ_O² σ_V²:

    q ← μ² q + σ_OV² ν,   p ← μ² p + σ_OV² ν,   ν = ũ/n + (1 − 1/n) ṽ   (ũ = E e², ṽ = E e_a e_b)
    j ← μ² j + σ_OV² (q̂ j/n + p̂ k),   k ← μ² k + ((n−1)/n) σ_OV² (q̂ j/n + p̂ k).

ReLU MLP sub-block (N → W₁ → relu → W₂, mlp = σ₁² σ₂², z = W₁ e with correlation ρ = ṽ/ũ):

    q ← μ² q + mlp ũ/2,   p ← μ² p + mlp ũ κ(ρ),   κ(ρ) = (√(1−ρ²) + ρ(π − arccos ρ))/(2π)
    j ← (μ² + mlp q̂/2) j,   k ← (μ² + mlp p̂ κ'(ρ)) k,   κ'(ρ) = ¼ + asin(ρ)/(2π).

LayerNorm: ũ = 1, ṽ = p/q, q̂ = p̂ = 1/q.  erf(αh) ("Derf"): ũ = (2/π) asin(2α²q/(1+2α²q)),
ṽ = (2/π) asin(2α²p/(1+2α²q)), q̂ = (4α²/π)/√(1+4α²q), p̂ = (4α²/π)/√((1+2α²q)² − 4α⁴p²).
Identity (no normalisation): ũ = q, ṽ = p, q̂ = p̂ = 1.

Block layouts: "pre" / "derf" (N before each branch), "none" (no N), "post" (x ↦ LN(μx + branch)
after each sub-block; the LN divides q, p, j, k by the pre-LN variance).

``finite_n=False`` is the published n → ∞ form (labofdoubt/transformers-apjn, apjn/theory.py):
(n − 1)/n → 1 in k and ν → ṽ in the forward map, while the 1/n of the j-coupling terms is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMS = ("pre", "post", "none", "derf")


@dataclass(frozen=True)
class TokenRun:
    """Per-layer arrays, index l = 0..depth (l = 0 the input)."""

    q: np.ndarray
    p: np.ndarray
    j: np.ndarray
    k: np.ndarray


def kappa_relu(rho: float) -> float:
    """E relu(u) relu(v) for unit-variance (u, v) with correlation ρ."""
    rho = min(max(rho, -1.0), 1.0)
    return (np.sqrt(max(0.0, 1 - rho * rho)) + rho * (np.pi - np.arccos(rho))) / (2 * np.pi)


def kappa_relu_prime(rho: float) -> float:
    """E relu'(u) relu'(v) = P(u > 0, v > 0) = ¼ + asin(ρ)/(2π)."""
    rho = min(max(rho, -1.0), 1.0)
    return 0.25 + np.arcsin(rho) / (2 * np.pi)


def token_map(kind: str, q: float, p: float, alpha: float = 1.0):
    """(ũ, ṽ, q̂, p̂) of the per-token map N: "ln", "erf" or "identity"."""
    if kind == "ln":
        return 1.0, p / q, 1.0 / q, 1.0 / q
    if kind == "identity":
        return q, p, 1.0, 1.0
    a2 = alpha * alpha
    u = 2 / np.pi * np.arcsin(2 * a2 * q / (1 + 2 * a2 * q))
    v = 2 / np.pi * np.arcsin(2 * a2 * p / (1 + 2 * a2 * q))
    qh = 4 * a2 / np.pi / np.sqrt(1 + 4 * a2 * q)
    ph = 4 * a2 / np.pi / np.sqrt((1 + 2 * a2 * q) ** 2 - 4 * a2 * a2 * p * p)
    return u, v, qh, ph


def _attention(state, n, att, mu, kind, alpha, finite_n):
    q, p, j, k = state
    u, v, qh, ph = token_map(kind, q, p, alpha)
    nu = u / n + (1 - 1 / n) * v if finite_n else v
    shared = qh * j / n + ph * k
    frac = (n - 1) / n if finite_n else 1.0
    return (mu**2 * q + att * nu, mu**2 * p + att * nu,
            mu**2 * j + att * shared, mu**2 * k + frac * att * shared)


def _mlp(state, mlp, mu, kind, alpha):
    q, p, j, k = state
    u, v, qh, ph = token_map(kind, q, p, alpha)
    rho = v / u
    return (mu**2 * q + mlp * u / 2, mu**2 * p + mlp * u * kappa_relu(rho),
            (mu**2 + mlp * qh / 2) * j, (mu**2 + mlp * ph * kappa_relu_prime(rho)) * k)


def _layernorm_after(state):
    q, p, j, k = state
    return 1.0, p / q, j / q, k / q


def run(depth: int, n: int, *, norm: str = "pre", mu: float = 1.0, sigma_o: float = 1.0,
        sigma_v: float = 1.0, sigma_1: float = 1.0, sigma_2: float = 1.0, q0: float = 1.0,
        p0: float = 0.0, alpha: float = 1.0, finite_n: bool = True) -> TokenRun:
    """The recursion of the module docstring over ``depth`` blocks."""
    if norm not in NORMS:
        raise ValueError(norm)
    att = sigma_o**2 * sigma_v**2
    mlp = sigma_1**2 * sigma_2**2
    kind = {"pre": "ln", "derf": "erf", "none": "identity", "post": "identity"}[norm]
    out = np.empty((depth + 1, 4))
    s = (float(q0), float(p0), 1.0, 0.0)
    out[0] = s
    for layer in range(depth):
        s = _attention(s, n, att, mu, kind, alpha, finite_n)
        if norm == "post":
            s = _layernorm_after(s)
        s = _mlp(s, mlp, mu, kind, alpha)
        if norm == "post":
            s = _layernorm_after(s)
        out[layer + 1] = s
    return TokenRun(*(out[:, i].copy() for i in range(4)))


def one_block_apjn(layer: int, n: int, **kw) -> float:
    """J^{l→l+1}: the APJN of block l + 1 alone, at the state after ``layer`` blocks
    (restart j = 1, k = 0 there)."""
    r = run(layer, n, **kw)
    kw = {**kw, "q0": r.q[-1], "p0": r.p[-1]}
    return float(run(1, n, **kw).j[1])


# ------------------------------------------------------------------------------------------
# Pre-LN blocks (μ = 1) with uniform or deterministic attention.
#
# An independent reference for pre-LN transformer blocks with uniform or deterministic
# attention and a ReLU MLP (μ = 1, no biases), in the exchangeable token state (q, p) with the
# two-part tangent (j, k); written from the closed forms, not from critsym's fold.
#
# Per block, attention sub-block h ↦ h + W_O A W_V LN(h), then MLP sub-block
# h ↦ h + W₂ relu(W₁ LN(h)), with σ_OV = σ_O σ_V and mlp = σ₁² σ₂²:
#
# * LN'd tokens: q̃ = 1, cross-token correlation ρ = p/q; tangent factors q̂ = p̂ = 1/q;
# * attention matrix: uniform A = 11ᵀ/n; deterministic A = softmax(β G) with
#   A_aa = 1/(1 + (n−1)e^{−β(1−ρ)}), A_ab = (1 − A_aa)/(n − 1);
#   D = Σ_c A_ac², X = Σ_c A_ac A_bc (a ≠ b);
# * attention: q += σ_OV²(ρ + (1−ρ)D), p += σ_OV²(ρ + (1−ρ)X); with κ = k n/(n−1) the per-pair
#   overlap, j += σ_OV²(D j + (1−D) κ)/q, k += σ_OV² (n−1)/n · (X j + (1−X) κ)/q
#   (uniform: j' = (1 + σ_OV²/(nq)) j + σ_OV² k/q, k' = (1 + σ_OV²(n−1)/(nq)) k
#   + σ_OV²(n−1)/(n² q) j);
# * MLP at ρ = p/q: q += mlp/2, p += mlp·κ₁(ρ), κ₁(ρ) = (√(1−ρ²) + ρ(π − arccos ρ))/(2π);
#   j ·= 1 + mlp/(2q), k ·= 1 + mlp·κ₀(ρ)/q, κ₀(ρ) = ¼ + arcsin(ρ)/(2π).

def mixing_moments(regime: str, n: int, rho: float, beta: float) -> tuple[float, float]:
    """(D, X) of the attention matrix at LN'd token correlation ρ."""
    if regime == "uniform":
        return 1.0 / n, 1.0 / n
    a = 1.0 / (1.0 + (n - 1) * math.exp(-beta * (1.0 - rho)))
    b = (1.0 - a) / (n - 1)
    return a * a + (n - 1) * b * b, 2 * a * b + (n - 2) * b * b


def kappa1(rho: float) -> float:
    return (math.sqrt(1 - rho * rho) + rho * (math.pi - math.acos(rho))) / (2 * math.pi)


def kappa0(rho: float) -> float:
    return 0.25 + math.asin(rho) / (2 * math.pi)


@dataclass
class Trajectory:
    K: np.ndarray
    O_C: np.ndarray
    J: np.ndarray
    k: np.ndarray
    naive_J: np.ndarray  # product of the per-block χ = M[0, 0] (the j → j factor)


def pre_ln_run(depth: int, n: int, sigma_ov: float, mlp: float, regime: str = "uniform",
               beta: float = 0.0, q0: float = 1.0, p0: float = 0.0) -> Trajectory:
    q, p, j, k, naive = q0, p0, 1.0, 0.0, 1.0
    out = [(q, p, j, k, naive)]
    s2 = sigma_ov**2
    for _ in range(depth):
        rho = p / q
        D, X = mixing_moments(regime, n, rho, beta)
        kap = k * n / (n - 1)
        chi_att = 1 + s2 * D / q
        j, k = (j + s2 * (D * j + (1 - D) * kap) / q,
                k + s2 * (n - 1) / n * (X * j + (1 - X) * kap) / q)
        q, p = q + s2 * (rho + (1 - rho) * D), p + s2 * (rho + (1 - rho) * X)
        rho = p / q
        chi_mlp = 1 + mlp / (2 * q)
        j, k = j * chi_mlp, k * (1 + mlp * kappa0(rho) / q)
        q, p = q + mlp / 2, p + mlp * kappa1(rho)
        naive *= chi_att * chi_mlp
        out.append((q, p, j, k, naive))
    a = np.array(out)
    return Trajectory(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])
