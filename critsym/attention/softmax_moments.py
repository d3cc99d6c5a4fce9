r"""Moments of the softmax of Gaussian logits: the numbers behind standard attention.

Rows of logits z_c (c = 1..n) i.i.d. N(0, v); a second row y with (x_c, y_c) i.i.d. bivariate
normal, variance v, correlation ρ.  A = softmax(z) (one row), B = softmax(y).  This module
computes, for scalar (n, v, ρ) and vectorised over arrays of them,

* D  = E Σ_c A_c²,
* X  = E Σ_c A_c B_c,
* W_D = E tr(Λ_A²),  W_X = E tr(Λ_A Λ_B),  Λ_A = diag(A) − A Aᵀ (the softmax Jacobian),

  tr(Λ_A Λ_B) = Σ A_c B_c − Σ A_c B_c (A_c + B_c) + (Σ A_c B_c)².

**Method (exact up to quadrature).**  With S = Σ_c e^{z_c} and Γ(K) S^{−K} = ∫₀^∞ t^{K−1}
e^{−tS} dt, the substitution t = e^τ and independence over c turn every moment
E Π_c A_c^{k_c} (K = Σ k_c) into a 1-D integral of products of 1-D Gaussian expectations,

    E Π_c A_c^{k_c} = (1/Γ(K)) ∫ dτ Π_{c: k_c>0} F_{k_c}(τ) · F_0(τ)^{n − #{c: k_c>0}},
    F_k(τ) = E_z f_k(τ + z),  f_k(L) = exp(kL − e^L),

and every two-row moment into a 2-D integral over (τ, σ) of the bivariate expectations
G_{k,l}(τ, σ) = E f_k(τ + x) f_l(σ + y), raised to the powers in the same way.  The bivariate
expectations are reduced to 1-D ones by splitting the pair into a shared and a private part,
x = m + ε, y = sign(ρ) m + ε', m ~ N(0, v|ρ|), ε, ε' ~ N(0, v(1 − |ρ|)):
G_{k,l}(τ, σ) = E_m F^ε_k(τ + m) F^ε_l(σ + sign(ρ) m), a matrix product over the m nodes.

**Quadrature and accuracy.**  All integrands are entire and bounded in the strip |Im| < π/2 of
every variable (|exp(−e^{L+iy})| = exp(−e^L cos y) ≤ 1), so the trapezoid rule on the real line
converges geometrically: ε and m use spacing min(0.25, 0.5·sd) over ±12 sd (Gaussian tail
2Φ(−12) ≈ 4e-33), τ and σ use spacing ``H_TAU`` on a range trimmed where a Cauchy–Schwarz
envelope of every integrand falls below 1e-17 of its peak.  Halving every spacing changes D, W_D
by < 3e-13 and X, W_X by < 1e-13 at points spanning n ≤ 64, v ≤ 64, ρ ∈ (−1, 1)
(:func:`refinement_error` measures it at any point; tests check the moments against
brute-force Monte Carlo and against independent quadrature of the closed cases n = 2 and
v → 0).

Cost per point (one core): ~5–50 ms for the single-row moments and ~20–300 ms for the two-row
moments (τ-grid N², N ≈ 200…700) at v ≤ 64; the results are cached per (n, v, ρ).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..errors import HyperparameterError

#: trapezoid spacing of the τ (log t) integrals
H_TAU = 0.2
#: Gaussian nodes span ±TAIL standard deviations
TAIL = 12.0
#: an integrand is cut where its envelope falls below this fraction of its peak
CUT = 1e-17


def _gauss_nodes(var: float, h_max: float = 0.25, refine: int = 1) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Trapezoid nodes and weights of N(0, var) on ±TAIL sd (a single node at 0 for var = 0)."""
    if var <= 0:
        return np.zeros(1), np.ones(1)
    sd = math.sqrt(var)
    h = min(h_max, 0.5 * sd) / refine
    m = int(math.ceil(TAIL * sd / h))
    x = h * np.arange(-m, m + 1)
    w = np.exp(-0.5 * x * x / var)
    return x, w / w.sum()


def _smooth(k: int, L: np.ndarray, var: float, refine: int) -> np.ndarray:
    """E_ε f_k(L + ε), ε ~ N(0, var), at the points L (any shape)."""
    return _smooth_many((k,), L, var, refine)[k]


def _smooth_many(ks, L: np.ndarray, var: float, refine: int) -> dict[int, np.ndarray]:
    """{k: E_ε f_k(L + ε)} for several k at once (f_k = f_0 e^{kL}: one exp pair per node)."""
    e, w = _gauss_nodes(var, refine=refine)
    L = np.asarray(L, dtype=float)
    out = {k: np.zeros(L.shape) for k in ks}
    with np.errstate(over="ignore", under="ignore"):
        for ei, wi in zip(e, w, strict=True):
            x = L + ei
            E = np.exp(np.minimum(x, 50.0))  # f_k(x) = 0 in float64 beyond x = 50
            f0 = np.exp(-E)
            for k in ks:
                out[k] += wi * (f0 if k == 0 else f0 * E**k)
    return out


def _tau_grid(n: int, var: float, kmax: int, refine: int) -> np.ndarray:
    """τ nodes (spacing H_TAU/refine) where the envelope sqrt(E f_k²)·F_0^{(n−2)/2} of every
    integrand with k ≤ kmax is above CUT of its peak."""
    sd = math.sqrt(var)
    h = H_TAU / refine
    lo, hi = -(kmax * var + TAIL * sd + 45.0), TAIL * sd + 6.0
    tau = np.arange(lo, hi + h, h)
    # E f_k² = E exp(2kL − 2e^L) = E f_{2k}(L + log 2)·2^{−2k}… bounded here by the direct sum
    F0 = _smooth(0, tau, var, 1)
    env = np.zeros_like(tau)
    F2 = _smooth_many(range(2, 2 * kmax + 1, 2), tau + math.log(2.0), var, 1)
    for k in range(1, kmax + 1):
        env = np.maximum(env, np.sqrt(F2[2 * k]) / 2.0**k)
    with np.errstate(divide="ignore"):
        env = env * F0 ** (0.5 * max(n - 2, 0))
    keep = np.nonzero(env > CUT * env.max())[0]
    i0, i1 = max(keep[0] - 2, 0), min(keep[-1] + 3, len(tau))
    return tau[i0:i1], h


@lru_cache(maxsize=4096)
def _row_moments(n: int, v: float, refine: int = 1) -> tuple[float, float]:
    """(D, W_D) for one row of n i.i.d. N(0, v) logits."""
    if n == 1:
        return 1.0, 0.0
    if v == 0.0:
        return 1.0 / n, (n - 1) / n**2
    tau, h = _tau_grid(n, v, 2, refine)
    F = _smooth_many(range(5), tau, v, refine)
    F0n = F[0] ** (n - 1)
    a2 = h * np.sum(F[2] * F0n)  # E A_1^2 · Γ(2)
    a3 = h * np.sum(F[3] * F0n) / 2.0  # E A_1^3
    a4 = h * np.sum(F[4] * F0n) / 6.0  # E A_1^4
    a22 = h * np.sum(F[2] ** 2 * F[0] ** (n - 2)) / 6.0  # E A_1^2 A_2^2
    D = n * a2
    WD = D - 2 * n * a3 + n * a4 + n * (n - 1) * a22
    return float(D), float(WD)


@lru_cache(maxsize=4096)
def _pair_moments(n: int, v: float, rho: float, refine: int = 1) -> tuple[float, float]:
    """(X, W_X) for two rows whose logit pairs have variance v and correlation rho."""
    if n == 1:
        return 1.0, 0.0
    if v == 0.0:
        return 1.0 / n, (n - 1) / n**2
    if rho >= 1.0:
        return _row_moments(n, v, refine)
    vm, ve = v * abs(rho), v * (1.0 - abs(rho))
    tau, h = _tau_grid(n, v, 2, refine)
    sgn = 1.0 if rho >= 0 else -1.0
    sdm = math.sqrt(vm)
    if sdm >= 0.4:
        # m on the τ lattice (spacing h <= 0.5 sd_m): F^ε_k(τ_i + m_l) = F^ε_k on one 1-D grid
        M = int(math.ceil(TAIL * sdm / h))
        ml = h * np.arange(-M, M + 1)
        wm = np.exp(-0.5 * ml * ml / vm)
        wm /= wm.sum()
        grid = tau[0] + h * np.arange(-M, len(tau) + M)
        Fg = _smooth_many((0, 1, 2), grid, ve, refine)
        idx = np.arange(len(tau))[:, None] + M + np.arange(-M, M + 1)[None, :]
        P = {k: Fg[k][idx] for k in Fg}
        Q = P if sgn > 0 else {k: Fg[k][idx[:, ::-1]] for k in Fg}
    else:
        # small shared variance: Gauss–Hermite in m (features of F^ε have scale >= 1)
        xg, wg = np.polynomial.hermite_e.hermegauss(40 * refine)
        ml, wm = sdm * xg, wg / wg.sum()
        P = _smooth_many((0, 1, 2), tau[:, None] + ml[None, :], ve, refine)
        Q = P if sgn > 0 else _smooth_many((0, 1, 2), tau[:, None] - ml[None, :], ve, refine)

    def G(k, l):
        return (P[k] * wm) @ Q[l].T

    G00, G11, G21, G22 = G(0, 0), G(1, 1), G(2, 1), G(2, 2)
    with np.errstate(under="ignore"):
        G00n1 = G00 ** (n - 1)
        G00n2 = G00 ** (n - 2)
    hh = h * h
    x11 = hh * np.sum(G11 * G00n1)  # E A_1 B_1
    x21 = hh * np.sum(G21 * G00n1)  # E A_1^2 B_1 (= E A_1 B_1^2)
    x22 = hh * np.sum(G22 * G00n1)  # E A_1^2 B_1^2
    x1111 = hh * np.sum(G11**2 * G00n2)  # E A_1 B_1 A_2 B_2
    X = n * x11
    WX = X - 2 * n * x21 + n * x22 + n * (n - 1) * x1111
    return float(X), float(WX)


@lru_cache(maxsize=4096)
def _cross_moment(n: int, v1: float, v2: float, c: float, refine: int = 1) -> float:
    """E Σ_e A_e B_e, A = softmax(x), B = softmax(y), (x_e, y_e) i.i.d. with variances v1, v2
    and covariance c (unequal variances: two inputs' rows).  x = a m + ε₁, y = b m + ε₂ with
    m ~ N(0, 1), ab = c, a² = |c|√(v1/v2), b² = |c|√(v2/v1); F^{ε}_k is evaluated on a 1-D
    grid of spacing 0.01/refine and interpolated by a cubic spline (relative error < 1e-8)."""
    from scipy.interpolate import CubicSpline

    if n == 1:
        return 1.0
    if v1 == v2:
        return _pair_moments(n, v1, c / v1 if v1 > 0 else 0.0, refine)[0]
    if v1 == 0.0 or v2 == 0.0 or c == 0.0:
        return 1.0 / n  # one row uniform, or independent rows: Σ_e E A_e E B_e = 1/n
    a = math.sqrt(abs(c) * math.sqrt(v1 / v2))
    b = math.copysign(math.sqrt(abs(c) * math.sqrt(v2 / v1)), c)
    e1, e2 = max(v1 - a * a, 0.0), max(v2 - b * b, 0.0)
    vmax = max(v1, v2)
    tau, h = _tau_grid(n, vmax, 1, refine)
    hm = min(0.5, 0.25 / max(a, abs(b))) / refine
    M = int(math.ceil(TAIL / hm))
    m = hm * np.arange(-M, M + 1)
    wm = np.exp(-0.5 * m * m)
    wm /= wm.sum()
    ext = TAIL * max(a, abs(b)) + 1.0
    grid = np.arange(tau[0] - ext, tau[-1] + ext + 0.01, 0.01 / refine)

    S1, S2 = _smooth_many((0, 1), grid, e1, refine), _smooth_many((0, 1), grid, e2, refine)
    P = {k: CubicSpline(grid, S1[k])(tau[:, None] + a * m[None, :]) for k in (0, 1)}
    Q = {k: CubicSpline(grid, S2[k])(tau[:, None] + b * m[None, :]) for k in (0, 1)}
    G00 = (P[0] * wm) @ Q[0].T
    G11 = (P[1] * wm) @ Q[1].T
    with np.errstate(under="ignore"):
        return float(n * h * h * np.sum(G11 * np.clip(G00, 0.0, 1.0) ** (n - 1)))


def _check(n, v, rho=None) -> None:
    if not (float(n) == int(n) and int(n) >= 1):
        raise HyperparameterError(f"the number of tokens n must be an integer >= 1, got {n}")
    if not (math.isfinite(v) and v >= 0):
        raise HyperparameterError(
            f"the logit variance v = σ_QK² q̃ (q̃ − p̃) must be finite and >= 0, got {v}; "
            "check that the token covariance p̃ does not exceed the variance q̃")
    if v > 400:
        raise HyperparameterError(
            f"the logit variance v = σ_QK² q̃(q̃ − p̃) = {v:g} is beyond the supported range "
            "v <= 400 (logit standard deviation 20); lower σ_QK or normalise the attention "
            "input (LayerNorm) so that its token variance q̃ stays O(1)")
    if rho is not None and not (math.isfinite(rho) and -1.0 <= rho <= 1.0):
        raise HyperparameterError(
            f"the token correlation ρ = p̃/q̃ must lie in [-1, 1], got {rho}")


def _vectorise(fn, index: int, *arrays):
    arrays = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in arrays])
    out = np.empty(arrays[0].shape)
    flat = [a.ravel() for a in arrays]
    res = out.reshape(-1)
    for i in range(res.size):
        args = [float(a[i]) for a in flat]
        if any(math.isnan(a) for a in args):
            res[i] = np.nan
            continue
        _check(*args)
        args[0] = int(args[0])
        if len(args) == 3:  # clip rounding of ρ = p/q at ±1
            args[2] = min(max(args[2], -1.0), 1.0)
        res[i] = fn(*args)[index]
    return out if out.ndim else float(out)


def softmax_D(n, v):
    """D = E Σ_c A_c² for rows of n i.i.d. N(0, v) logits (vectorised)."""
    return _vectorise(_row_moments, 0, n, v)


def softmax_WD(n, v):
    """W_D = E tr(Λ²), Λ = diag(A) − AAᵀ, for rows of n i.i.d. N(0, v) logits."""
    return _vectorise(_row_moments, 1, n, v)


def softmax_X(n, v, rho):
    """X = E Σ_c A_c B_c for two rows with logit pairs of variance v, correlation rho."""
    return _vectorise(_pair_moments, 0, n, v, rho)


def softmax_WX(n, v, rho):
    """W_X = E tr(Λ_A Λ_B) for two rows with logit pairs of variance v, correlation rho."""
    return _vectorise(_pair_moments, 1, n, v, rho)


def softmax_cross(n, v1, v2, c):
    """E Σ_e A_e B_e for rows of two inputs: logit pairs with variances v1, v2, covariance c."""
    a = np.broadcast_arrays(*[np.asarray(t, dtype=float) for t in (n, v1, v2, c)])
    out = np.empty(a[0].shape)
    for idx in np.ndindex(out.shape):
        nn, x1, x2, cc = (float(t[idx]) for t in a)
        if any(math.isnan(t) for t in (nn, x1, x2, cc)):
            out[idx] = np.nan
            continue
        _check(nn, x1)
        _check(nn, x2)
        if x1 * x2 > 0 and abs(cc) > math.sqrt(x1 * x2) * (1 + 1e-12):
            raise HyperparameterError(
                f"the logit covariance c = {cc} exceeds sqrt(v1 v2) = {math.sqrt(x1 * x2)}")
        cc = float(np.clip(cc, -math.sqrt(x1 * x2), math.sqrt(x1 * x2)))
        out[idx] = _cross_moment(int(nn), x1, x2, cc)
    return out if out.ndim else float(out)


def refinement_error(n: int, v: float, rho: float) -> dict[str, float]:
    """|value − value with every spacing halved| for D, W_D, X, W_X at one point: the
    quadrature's error estimate."""
    d1, wd1 = _row_moments(int(n), float(v), 1)
    d2, wd2 = _row_moments(int(n), float(v), 2)
    x1, wx1 = _pair_moments(int(n), float(v), float(rho), 1)
    x2, wx2 = _pair_moments(int(n), float(v), float(rho), 2)
    return dict(D=abs(d1 - d2), WD=abs(wd1 - wd2), X=abs(x1 - x2), WX=abs(wx1 - wx2))


__all__ = ["H_TAU", "refinement_error", "softmax_D", "softmax_WD", "softmax_WX", "softmax_X",
           "softmax_cross"]
