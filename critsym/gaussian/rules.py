r"""The one kink-aware Gaussian quadrature rule (1-D and nested 2-D), and kink detection.

Standardised variables x, y ~ N(0, 1).  The real line is cut at |x| = L = 12 (neglected mass
2Φ(-12) ≈ 3.6e-33) and split into panels graded geometrically towards a centre (0 by default),
with every kink point of the integrand inserted as an extra edge; each panel carries ``n``
Gauss–Legendre nodes, weighted by the normal density:

    E_{x~N(0,1)}[f(x)] ≈ Σ_i W_i f(X_i),   W_i = w_i φ(X_i) (b - a)/2.

On panels where the integrand is analytic the rule converges exponentially: with ``n`` = 12
(338 nodes) 1-D means of the activations used here are exact to ~1e-14, with 16 to ~1e-15.

The bivariate mean E[h(u, v)], u = x, v = c x + √(1-c²) y, is the nested rule
E_x[E_y[h(x, c x + √(1-c²) y)]], the inner mesh graded towards the line v = 0 and split at the
kinks of h in v (y = (k - c x)/√(1-c²)).  It is evaluated in chunks of points so that memory stays
bounded (:data:`CHUNK_NODES` float64 nodes per array) for any number of points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import sympy as sp

from ..activations import KINKED_FUNCTIONS

L_CUT = 12.0
#: panel edges on [0, L] (mirrored), graded towards the centre
HALF_EDGES = np.array([1e-3, 1e-2, 0.06, 0.2, 0.45, 0.8, 1.3, 2.0, 3.0, 4.3, 6.0, 8.5, 12.0])
EDGES = np.concatenate([-HALF_EDGES[::-1], [0.0], HALF_EDGES])
#: float64 entries per node array of one chunk of the 2-D rule (~32 MB)
CHUNK_NODES = 1 << 22
#: sympy functions whose argument has a kink (or jump) where it crosses a point (the activation
#: table's)
KINKED = KINKED_FUNCTIONS


@cache
def legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [-1, 1]."""
    return np.polynomial.legendre.leggauss(n)


def rule(kinks: Sequence = (), n: int = 12, shape: tuple[int, ...] = ()
         ) -> tuple[np.ndarray, np.ndarray]:
    """Nodes X and weights W (shape ``shape + (N,)``) with Σ W f(X) ≈ E_{x~N(0,1)} f(x).

    ``kinks``: points (scalars or arrays broadcastable to ``shape``) where the integrand is not
    smooth; each becomes a panel edge (non-finite points are ignored).
    """
    edges = np.broadcast_to(EDGES, shape + EDGES.shape)
    if len(kinks):
        ks = []
        for k in kinks:
            k = np.broadcast_to(np.asarray(k, dtype=float), shape)
            ks.append(np.where(np.isfinite(k), np.clip(k, -L_CUT, L_CUT), L_CUT)[..., None])
        edges = np.sort(np.concatenate([edges, *ks], axis=-1), axis=-1)
    a, b = edges[..., :-1], edges[..., 1:]
    t, w = legendre(n)
    half = (b - a)[..., None] / 2
    X = ((b + a)[..., None] / 2 + half * t).reshape(*shape, -1)
    W = (half * w).reshape(*shape, -1) * np.exp(-0.5 * X**2) / np.sqrt(2 * np.pi)
    return X, W


def kink_points(expr: sp.Expr, x: sp.Symbol, *, include_zero: bool = False) -> list[sp.Expr]:
    """Points where an argument of a :data:`KINKED` atom of ``expr``, linear in ``x``, crosses
    zero (nonlinear arguments give no point; 0 itself, a mesh edge, only with ``include_zero``).
    A kink inside a nested expectation whose location moves with that expectation's own
    variable is no kink of ``expr`` (the inner integral smooths it) and gives no point."""
    pts: list[sp.Expr] = []
    free = expr.free_symbols
    for atom in expr.atoms(*KINKED):
        for arg in atom.args:
            if not arg.has(x):
                continue
            a = sp.diff(arg, x)
            if a.has(x) or a == 0:
                continue
            pt = sp.simplify(-sp.expand(arg - a * x) / a)
            if not pt.free_symbols <= free:
                continue
            if (include_zero or pt != 0) and pt not in pts:
                pts.append(pt)
    return pts


def mean1(f: Callable[[np.ndarray], np.ndarray], kinks: Sequence = (), n: int = 16) -> float:
    """E_{x~N(0,1)}[f(x)] for a vectorised scalar function f."""
    X, W = rule(kinks, n)
    return float(np.sum(f(X) * W))


def mean2_grid(h: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], c: np.ndarray,
               kinks_x: Callable[[np.ndarray], Sequence] | None = None,
               kinks_y: Callable[[np.ndarray, np.ndarray], Sequence] | None = None,
               n: int = 8, extra_panels: int = 4) -> np.ndarray:
    r"""E[h(i, x, y)] over x, y ~ N(0, 1) iid for each point i with correlation parameter c_i.

    ``h(idx, X, Y)`` receives the (flat) point indices of the chunk, shaped (m, 1, 1), and the
    standardised nodes X (m, Nx, 1), Y (m, Nx, Ny); ``c`` (flat, |c| <= 1) sets the centre of the
    inner mesh at y = -c x/√(1-c²) (the line v = 0).  ``kinks_x(idx)`` gives the outer kink
    points (arrays of shape (m,)), ``kinks_y(idx, X)`` the inner ones (shape (m, Nx));
    ``extra_panels`` bounds their number.  Points are processed in chunks of at most
    :data:`CHUNK_NODES` nodes.
    """
    c = np.asarray(c, dtype=float).ravel()
    out = np.empty(c.shape)
    per_point = (len(EDGES) + extra_panels) ** 2 * n * n
    step = max(1, CHUNK_NODES // per_point)
    for lo in range(0, c.size, step):
        idx = np.arange(lo, min(lo + step, c.size))
        cc = c[idx]
        X, WX = rule(kinks_x(idx) if kinks_x else (), n, (idx.size,))
        rc = np.sqrt(np.maximum(1 - cc * cc, 0.0))[:, None]
        with np.errstate(all="ignore"):
            yc = np.where(rc > 0, -cc[:, None] * X / np.where(rc > 0, rc, 1.0), 0.0)
        yk = list(kinks_y(idx, X)) if kinks_y else []
        Y, WY = rule([yc, *yk], n, X.shape)
        with np.errstate(all="ignore"):
            f = h(idx[:, None, None], X[..., None], Y)
        inner = np.einsum("mxy,mxy->mx", np.broadcast_to(f, WY.shape), WY)
        out[idx] = np.einsum("mx,mx->m", inner, WX)
    return out


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
    return float(mean2_grid(
        lambda i, X, Y: f(X) * g(c * X + s * Y), np.array([c]),
        lambda i: [np.full(i.shape, k, dtype=float) for k in kinks_f],
        lambda i, X: [(k - c * X) / s for k in kinks_g], n)[0])
