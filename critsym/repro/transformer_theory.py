r"""Theory of the ViT-like transformer stacks of ``critsym repro transformer``: critsym's fold of
the hand-built block (uniform attention) and the standard softmax regime from the softmax
moments of :mod:`critsym.attention.standard`."""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np

from ..errors import HyperparameterError

NORMS = ("pre", "post", "none")
N_TOKENS = 17
N_BLOCKS = 10
#: J^{7→8}: from the output of block 7 to the output of block 8 (blocks counted from 1)
MEASURED = ("blocks.6", "blocks.7")
#: ViT-base-like σ of labofdoubt/transformers-apjn: 0.64·√(768/1024)
VIT_SIGMA = 0.64 * math.sqrt(768 / 1024)


def vit_block(norm: str, n: int = N_TOKENS, mu: object = "mu", alpha: float = 1.0):
    """One block as :func:`critsym.transformer_block`: uniform ``Attention`` (σ_V, σ_O:
    ``sigma_v``, ``sigma_o``) and a ReLU MLP (``sigma_1``, ``sigma_2``), zero biases, residuals
    x ↦ μx + branch, with LayerNorm before each branch ("pre"), after each residual sum ("post"),
    nowhere ("none"), or Derf erf(αx) in place of LayerNorm before each branch ("derf";
    ``alpha`` = 1: ``Act("erf")``, else ``Act("derf", alpha=alpha)``)."""
    from ..ops import Act, Attention
    from ..ops.transformer import transformer_block

    if norm not in NORMS + ("derf",):
        raise HyperparameterError(f"norm must be one of {NORMS + ('derf',)}, got {norm!r}")
    att = Attention(n, "uniform", sigma_v="sigma_v", sigma_o="sigma_o")
    placement = {"pre": "pre", "derf": "pre", "post": "post", "none": None}[norm]
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise HyperparameterError(f"alpha must be a finite number > 0, got {alpha!r}")
    norm_op = None
    if norm == "derf":
        norm_op = Act("erf") if alpha == 1.0 else Act("derf", alpha=alpha)
    return transformer_block(att, "relu", placement, mu, sigma_1="sigma_1", sigma_2="sigma_2",
                             norm_op=norm_op)


@cache
def block_theory(norm: str, n: int = N_TOKENS, alpha: float = 1.0):
    """The critsym Theory of :func:`vit_block` (derived once per (norm, n, alpha))."""
    from ..derive import derive

    return derive(vit_block(norm, n, alpha=alpha))


def _hyper(mu, sigma_o, sigma_v, sigma_1, sigma_2) -> dict:
    return dict(mu=mu, sigma_o=sigma_o, sigma_v=sigma_v, sigma_1=sigma_1, sigma_2=sigma_2)


def theory_run(depth: int, *, norm: str = "pre", mu=1.0, n: int = N_TOKENS, sigma_o=1.0,
               sigma_v=1.0, sigma_1=1.0, sigma_2=1.0, q0: float = 1.0, p0: float = 0.0,
               alpha: float = 1.0):
    r"""critsym's token theory of ``depth`` blocks from (q⁰, p⁰), j⁰ = 1, k⁰ = 0: the
    RunResult with ``K`` = q, ``O_C`` = p, ``J`` = j, ``k`` per block (hyperparameters may be
    arrays: one run per entry).  For uniform attention A = 11ᵀ/n behind a per-token map e = N(h)
    (Jacobian moments q̂ = E N'², p̂ = E N'_a N'_b; LayerNorm: q̂ = p̂ = 1/q) the block is

        q, p ← μ²(q, p) + σ_OV² ν,  ν = E e²/n + (1 − 1/n) E e_a e_b,
        j ← μ² j + σ_OV²(q̂ j/n + p̂ k),  k ← μ² k + ((n−1)/n) σ_OV²(q̂ j/n + p̂ k),

    then the MLP multiplies j by μ² + σ₁²σ₂² q̂ E relu'² and k by μ² + σ₁²σ₂² p̂ κ'(ρ),
    κ'(ρ) = ¼ + asin(ρ)/(2π); "post" divides q, p, j, k by q at each LayerNorm.  ``alpha``:
    the Derf scale of "derf"."""
    th = block_theory(norm, n, alpha)
    return th.run(depth, K0=q0, O_C0=p0, J0=1.0, k0=0.0,
                  **_hyper(mu, sigma_o, sigma_v, sigma_1, sigma_2))


@lru_cache(maxsize=8)
def vit_base_depth_theory(norm: str, depth: int, n: int = N_TOKENS,
                          alpha: float = 1.0) -> np.ndarray:
    """J^{0,l}, l = 0..depth, of the ViT-base-like init (σ_O = σ_V = σ₁ = :data:`VIT_SIGMA`,
    σ₂ = 2σ₁, μ = 1, q⁰ = 1, p⁰ = 0) from critsym's theory (cached: the erf block takes
    ~45 ms per block); ``alpha``: the Derf scale of "derf"."""
    r = theory_run(depth, norm=norm, n=n, sigma_o=VIT_SIGMA, sigma_v=VIT_SIGMA,
                   sigma_1=VIT_SIGMA, sigma_2=2 * VIT_SIGMA, alpha=alpha)
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
    th = block_theory(norm, n)
    K = np.full(mu.shape, float(q0))
    O_C = np.full(mu.shape, float(p0))
    for _ in range(layer):
        # one block at a time: collapsing tokens (ρ → 1, μ small) leave p a rounding error
        # above q, where the ReLU kernel's asin(ρ) would turn into NaN in the next block
        r = th.run(1, K0=K, O_C0=O_C, **hyper)
        K = np.asarray(r.K, float)[-1]
        O_C = np.minimum(np.asarray(r.O_C, float)[-1], K)
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


@cache
def standard_block_theory(norm: str, n: int = N_TOKENS):
    """critsym's Theory of :func:`vit_block` with ``Attention(n, "standard", sigma_qk=…)``
    (the paper's softmax attention: independent W_Q, W_K), derived once per (norm, n)."""
    from ..derive import derive
    from ..ops import Attention
    from ..ops.transformer import transformer_block

    if norm not in NORMS:
        raise HyperparameterError(f"norm must be one of {NORMS}, got {norm!r}")
    att = Attention(n, "standard", sigma_qk="sigma_qk", sigma_v="sigma_v", sigma_o="sigma_o")
    placement = {"pre": "pre", "post": "post", "none": None}[norm]
    return derive(transformer_block(att, "relu", placement, "mu", sigma_1="sigma_1",
                                    sigma_2="sigma_2"))


def standard_one_block(norm: str, mu: float, varw: float, layer: int = 7, n: int = N_TOKENS,
                       sigma_qk: float | None = None, q0: float = 1.0,
                       p0: float = 0.0) -> float:
    """J^{l→l+1} of the ViT-like stack with the paper's softmax attention in the standard regime
    (independent W_Q, W_K: σ_QK = σ_Q σ_K = varw unless ``sigma_qk`` is given), from critsym's
    fold (:func:`standard_block_theory`): the (j, j) entry of the block's tangent map at the
    state after ``layer`` blocks.  Across blocks the theory propagates the expected token Gram
    (the approximation of :mod:`critsym.attention.standard`).  NaN where the logit variance
    leaves the tabulated range v <= 400 of the softmax moments (no LN at large varw: the
    attention is one-hot there).  :func:`standard_one_block_by_hand` combines the same moments
    by hand; the two agree to rounding."""
    from ..errors import NumericalError

    s = math.sqrt(float(varw))
    hyper = dict(_hyper(float(mu), s, s, s, s), sigma_qk=float(varw if sigma_qk is None
                                                               else sigma_qk))
    th = standard_block_theory(norm, n)
    K, O_C = float(q0), float(p0)
    try:
        for _ in range(layer):
            r = th.run(1, K0=K, O_C0=O_C, **hyper)
            K = float(r.K[-1])
            O_C = min(float(r.O_C[-1]), K)  # collapsing tokens: p within rounding of q
        return float(th.tangent_map(K=K, O_C=O_C, **hyper)[0, 0])
    except (HyperparameterError, NumericalError):  # v beyond the softmax moments' range
        return float("nan")


def standard_one_block_by_hand(norm: str, mu: float, varw: float, layer: int = 7,
                               n: int = N_TOKENS, sigma_qk: float | None = None,
                               q0: float = 1.0, p0: float = 0.0) -> float:
    """:func:`standard_one_block` from :func:`_standard_block`, the softmax moments combined by
    hand (an independent check of the fold's standard regime)."""
    from ..errors import NumericalError

    sqk = float(varw if sigma_qk is None else sigma_qk)
    state = (float(q0), float(p0), 1.0, 0.0)
    try:
        for _ in range(layer):
            state = _standard_block(state, norm, mu, varw, sqk, n)
        return float(_standard_block((state[0], state[1], 1.0, 0.0), norm, mu, varw, sqk,
                                     n)[2])
    except (HyperparameterError, NumericalError):  # v beyond the softmax moments' range
        return float("nan")
