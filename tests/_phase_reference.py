"""Brute-force reference for phase structure (numpy/scipy only, no critsym).

Gaussian expectations by composite Gauss–Legendre quadrature on [−12, 12] (panels graded
geometrically towards the kink at 0 from 1e-8, at most 0.25 wide, 12 nodes each), the one-block
maps of docs/theory.md for the built-in activations, the attractor reached from K0 by a walk on
a fine log grid (60 points per decade) in the direction of F(K0) − K0 with brentq refinement,
and a dense scan of χ_J* along σ_w with bisection of every sign change.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

SELU_L = 1.0507009873554804934193349852946
SELU_A = 1.6732632423543772848170429916717


def _sig(x):
    return special.expit(x)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _delu(x):
    return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))


ACTS = {
    "identity": (lambda x: x, lambda x: np.ones_like(x)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "erf": (special.erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)),
    "gelu": (lambda x: x * special.ndtr(x),
             lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    "swish": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "softplus": (lambda x: np.logaddexp(0.0, x), _sig),
    "sin": (np.sin, np.cos),
    "elu": (_elu, _delu),
    "selu": (lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0.0))),
             lambda x: SELU_L * np.where(x > 0, 1.0, SELU_A * np.exp(np.minimum(x, 0.0)))),
}


def _nodes():
    inner = np.geomspace(1e-8, 0.25, 26)
    edges = np.concatenate([[0.0], inner, np.arange(0.5, 12.01, 0.25)])
    t, w = np.polynomial.legendre.leggauss(12)
    a, b = edges[:-1, None], edges[1:, None]
    x = ((b - a) / 2 * t + (a + b) / 2).ravel()
    wx = ((b - a) / 2 * w).ravel()
    x = np.concatenate([-x[::-1], x])
    wx = np.concatenate([wx[::-1], wx])
    return x, wx * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


X, W = _nodes()


def E(f, K):
    """E_{z~N(0,K)} f(z), vectorised over K."""
    K = np.asarray(K, dtype=float)
    z = np.sqrt(K)[..., None] * X
    return f(z) @ W


class Block:
    """One-block maps of docs/theory.md: vanilla, residual μ, LN-pre (+μ), LN-post (+μ)."""

    def __init__(self, act, form, sw, sb, mu=0.0):
        self.phi, self.dphi = ACTS[act]
        self.form, self.sw2, self.sb2, self.mu2 = form, sw * sw, sb * sb, mu * mu
        if form == "pre":
            self.E1 = E(lambda z: self.phi(z) ** 2, 1.0)
            self.D1 = E(lambda z: self.dphi(z) ** 2, 1.0)

    def F(self, K):
        K = np.asarray(K, dtype=float)
        if self.form in ("vanilla", "residual"):
            return self.mu2 * K + self.sw2 * E(lambda z: self.phi(z) ** 2, K) + self.sb2
        if self.form == "pre":
            return self.mu2 * K + self.sw2 * self.E1 + self.sb2
        return self.mu2 * K + self.sw2 + self.sb2 + 0 * K  # post

    def chi_inf(self):
        """χ_J as K → ∞ of an unbounded (vanilla or residual) orbit."""
        d = self.dphi(np.array([-60.0, 60.0]))
        return float(self.mu2 + self.sw2 * (d[0] ** 2 + d[1] ** 2) / 2)

    def chi(self, K):
        K = np.asarray(K, dtype=float)
        if self.form in ("vanilla", "residual"):
            return self.mu2 + self.sw2 * E(lambda z: self.dphi(z) ** 2, K)
        if self.form == "pre":
            return self.mu2 + self.sw2 * self.D1 / K
        var = E(lambda z: self.phi(z) ** 2, K) - E(self.phi, K) ** 2
        return self.mu2 + self.sw2 * E(lambda z: self.dphi(z) ** 2, K) / var


def attractor(blk: Block, K0: float = 1.0, decades: float = 12.0):
    """(K*, χ_J*) of the attractor reached from K0: the first root of F(K) − K on a walk of
    60 points per decade in the direction of F(K0) − K0 (brentq), else 0 or unbounded (χ_J at
    K = 1e10, the large-K value)."""
    d0 = float(blk.F(K0)) - K0
    if d0 == 0:
        return K0, float(blk.chi(K0))
    step = 1 if d0 > 0 else -1
    a = K0
    for dec in range(int(decades)):  # one decade at a time
        Ks = K0 * 10.0 ** (step * (dec + np.arange(1, 61) / 60))
        d = blk.F(Ks) - Ks
        flip = np.nonzero(np.sign(d) != np.sign(d0))[0]
        if flip.size:
            i = flip[0]
            a = a if i == 0 else Ks[i - 1]
            K = optimize.brentq(lambda k: float(blk.F(k)) - k, min(a, Ks[i]), max(a, Ks[i]),
                                xtol=1e-14, rtol=1e-14)
            return K, float(blk.chi(K))
        a = Ks[-1]
    if step > 0:  # φ' tends to constants d± at ±∞: E_K φ'² → (d+² + d−²)/2
        return np.inf, blk.chi_inf()
    return 0.0, float(blk.chi(1e-16))


def all_roots(blk: Block, lo=1e-5, hi=1e3):
    """Every root of F(K) − K in [lo, hi] on a 200-per-decade grid, with stability."""
    Ks = np.geomspace(lo, hi, int(200 * np.log10(hi / lo)) + 1)
    d = blk.F(Ks) - Ks
    out = []
    for i in np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]:
        K = optimize.brentq(lambda k: float(blk.F(k)) - k, Ks[i], Ks[i + 1], xtol=1e-14,
                            rtol=1e-14)
        out.append((K, bool(d[i] > 0)))
    return out


def log_chi(act, form, sw, sb, mu, K0=1.0):
    return float(np.log(attractor(Block(act, form, sw, sb, mu), K0)[1]))


def transitions(act, form, sb, mu, lo, hi, n=60, K0=1.0, tol=1e-5):
    """Sign changes of log χ_J* along σ_w on n points in [lo, hi], bisected to 1e-11:
    ("continuous", x) where |log χ_J*| ≤ tol on both sides, else ("jump", x, χ below,
    χ above)."""
    xs = np.linspace(lo, hi, n)
    g = np.array([log_chi(act, form, x, sb, mu, K0) for x in xs])
    out = []
    for i in np.nonzero(np.sign(g[:-1]) * np.sign(g[1:]) < 0)[0]:
        a, b, ga = xs[i], xs[i + 1], g[i]
        while b - a > 1e-11:
            c = 0.5 * (a + b)
            gc = log_chi(act, form, c, sb, mu, K0)
            if np.sign(gc) == np.sign(ga):
                a, ga = c, gc
            else:
                b = c
        # continuous: |log χ_J*| small at ±1e-8, or shrinking from ±1e-6 to ±1e-8
        sides = []
        for x1, x2 in ((a - 1e-6, a - 1e-8), (b + 1e-6, b + 1e-8)):
            v1, v2 = log_chi(act, form, x1, sb, mu, K0), log_chi(act, form, x2, sb, mu, K0)
            sides.append((v1, v2, abs(v2) <= tol or abs(v2) <= 0.3 * abs(v1)))
        if sides[0][2] and sides[1][2]:
            out.append(("continuous", 0.5 * (a + b)))
        else:
            out.append(("jump", 0.5 * (a + b), float(np.exp(sides[0][1])),
                        float(np.exp(sides[1][1]))))
    return out
