"""Independent numpy/scipy references for the tests (no critsym code is used here)."""

from __future__ import annotations

import numpy as np
from scipy import integrate, special

SQ2 = np.sqrt(2.0)


def _sig(x):
    return special.expit(x)


PHI = {
    "identity": (lambda x: x, lambda x: np.ones_like(x)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "erf": (special.erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)),
    "gelu": (
        lambda x: x * 0.5 * (1 + special.erf(x / SQ2)),
        lambda x: 0.5 * (1 + special.erf(x / SQ2)) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi),
    ),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "softplus": (lambda x: np.logaddexp(0, x), _sig),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))),
    "sin": (np.sin, np.cos),
}


def leaky(alpha):
    return (lambda x: np.where(x > 0, x, alpha * x), lambda x: np.where(x > 0, 1.0, alpha))


def gauss(f, K: float) -> float:
    """E_{z~N(0,K)}[f(z)] by adaptive quadrature split at 0 (tolerance 1e-13)."""
    if K == 0:
        return float(f(np.array(0.0)))
    s = np.sqrt(K)

    def g(t):
        return f(np.array(s * t)) * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)

    a = integrate.quad(g, -np.inf, 0, epsabs=1e-14, epsrel=1e-13, limit=400)[0]
    b = integrate.quad(g, 0, np.inf, epsabs=1e-14, epsrel=1e-13, limit=400)[0]
    return a + b


def gauss2(f, g, K11: float, K22: float, K12: float) -> float:
    """E[f(u) g(v)] for (u, v) ~ N(0, [[K11, K12], [K12, K22]]) by nested adaptive quadrature:
    v | u ~ N(K12/K11 u, K22 - K12²/K11)."""
    s1 = np.sqrt(K11)
    r = K12 / np.sqrt(K11 * K22)
    sc = np.sqrt(K22 * (1 - r * r))

    def inner(t):
        u = s1 * t
        m = K12 / K11 * u
        if sc == 0:
            return g(np.array(m))

        def h(y):
            return g(np.array(m + sc * y)) * np.exp(-y * y / 2) / np.sqrt(2 * np.pi)

        y0 = -m / sc
        pts = sorted({0.0, float(np.clip(y0, -30, 30))})
        val = 0.0
        edges = [-np.inf, *pts, np.inf]
        for a, b in zip(edges[:-1], edges[1:]):
            if a == b:
                continue
            val += integrate.quad(h, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
        return val

    def outer(t):
        return f(np.array(s1 * t)) * inner(t) * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)

    return (integrate.quad(outer, -np.inf, 0, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
            + integrate.quad(outer, 0, np.inf, epsabs=1e-13, epsrel=1e-11, limit=200)[0])
