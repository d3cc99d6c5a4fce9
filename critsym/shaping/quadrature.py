r"""Gaussian quadrature rules for the shaping maps (1-D and the 2-D C map), kink-aware.

Standardised variables x, y ~ N(0, 1).  The real line is cut at |x| = 12 (neglected mass
2Φ(-12) ≈ 3.6e-33) and split into panels graded towards the centre, with every kink point of
the integrand inserted as an extra edge; each panel carries ``n`` Gauss–Legendre nodes.  On
panels where the integrand is analytic the rule converges exponentially: 1-D Gaussian means of
the activations used here are exact to ~1e-15 with 16 nodes per panel (~450 nodes).

The bivariate mean E[f(u) g(v)], u = x, v = c x + √(1-c²) y, is evaluated as the nested rule
E_x[f(x) E_y[g(c x + √(1-c²) y)]], the inner rule per outer node split at the kinks of g
(y = (k - c x)/√(1-c²)): ~1e-13 for smooth and kinked activations alike, with ~2·10⁵ nodes.
"""

from __future__ import annotations

from functools import cache

import numpy as np

L_CUT = 12.0
_HALF = np.array([0.25, 0.6, 1.0, 1.5, 2.1, 2.8, 3.6, 4.5, 5.6, 7.0, 9.0, 12.0])
EDGES = np.concatenate([-_HALF[::-1], [0.0], _HALF])


@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def rule(kinks=(), n: int = 16, shape: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Nodes X and weights W (shape ``shape + (N,)``) with Σ W f(X) ≈ E_{x~N(0,1)} f(x).

    ``kinks``: points (scalars or arrays broadcastable to ``shape``) where the integrand is not
    smooth; each becomes a panel edge.
    """
    edges = np.broadcast_to(EDGES, shape + EDGES.shape)
    ks = []
    for k in kinks:
        k = np.broadcast_to(np.asarray(k, dtype=float), shape)
        k = np.where(np.isfinite(k), np.clip(k, -L_CUT, L_CUT), L_CUT)
        ks.append(k[..., None])
    if ks:
        edges = np.sort(np.concatenate([edges, *ks], axis=-1), axis=-1)
    a, b = edges[..., :-1], edges[..., 1:]
    t, w = _legendre(n)
    half = (b - a)[..., None] / 2
    X = ((b + a)[..., None] / 2 + half * t).reshape(*shape, -1)
    W = (half * w).reshape(*shape, -1) * np.exp(-0.5 * X**2) / np.sqrt(2 * np.pi)
    return X, W


def mean1(f, kinks=(), n: int = 16) -> float:
    """E_{x~N(0,1)}[f(x)] for a vectorised scalar function f."""
    X, W = rule(kinks, n)
    return float(np.sum(f(X) * W))


def mean2(f, g, c: float, kinks_f=(), kinks_g=(), n: int = 12) -> float:
    """E[f(u) g(v)] for standard (u, v) with correlation ``c`` ∈ [-1, 1].

    ``kinks_f``/``kinks_g``: the non-smooth points of f and g (in their own argument).
    """
    c = float(c)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"correlation must lie in [-1, 1], got {c}")
    if abs(c) == 1.0:
        ks = list(kinks_f) + [k * c for k in kinks_g]
        return mean1(lambda x: f(x) * g(c * x), ks, max(n, 16))
    s = np.sqrt(1.0 - c * c)
    X, WX = rule(kinks_f, n)
    yk = [(k - c * X) / s for k in kinks_g] + [-c * X / s]
    Y, WY = rule(yk, n, X.shape)
    inner = np.sum(g(c * X[:, None] + s * Y) * WY, axis=-1)
    return float(np.sum(f(X) * inner * WX))
