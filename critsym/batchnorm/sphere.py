r"""Expectations over a batch normalised by BatchNorm: y uniform on the sphere |y|² = B in 1⊥.

After centring and scaling over a batch of B examples, a neuron's batch vector y lies on the
sphere of radius √B in the (B − 1)-dimensional subspace orthogonal to (1, …, 1).  At infinite
width the preactivation batch vector is Gaussian and exchangeable, so y is uniform there.

Write p_a = e_a − 1/B for the projection of the a-th unit vector onto 1⊥ (|p_a|² = 1 − 1/B,
p_1·p_2 = −1/B) and y = √B·u with u uniform on the unit sphere S^{d−1}, d = B − 1.

* One coordinate: y_1 = √B p_1·u = √(B − 1)·t, and the projection t of a uniform point of
  S^{d−1} on a unit vector has density  (1 − t²)^{(d−3)/2} / Beta(1/2, (d−1)/2)  on [−1, 1]
  (a scaled Beta: t² ~ Beta(1/2, (d−1)/2)).
* Two coordinates: with an orthonormal basis (e, f) of span(p_1, p_2), p_1 = a e,
  p_2 = b e + c f (a = √(1 − 1/B), b = −1/(aB), c = √(1 − 1/B − b²)), the projection
  s = (e·u, f·u) has density  (1 − |s|²)^{(d−4)/2}·(d − 2)/(2π)  on the unit disc, and
  (y_1, y_2) = √B (a s_1, b s_1 + c s_2).

Quadrature.  1-D: Gauss–Jacobi in t on [−1, 0] and [0, 1] (the weight (1 ∓ t)^{(d−3)/2} exact,
split at the kinks of the integrand).  2-D: polar coordinates s = r(cos θ, sin θ); Gauss–Jacobi in
r with the weight (1 − r)^{(d−4)/2}, Gauss–Legendre in θ on the arcs between the angles where
y_1 = 0 or y_2 = 0 (so a kink of φ at 0, e.g. relu, falls on a node boundary).  Every value is
computed at n and 2n nodes; the difference is returned as its error estimate and must be below
``tol`` (default 1e-10 absolute), otherwise :class:`NumericalError` is raised.  Needs B ≥ 4
(d ≥ 3); at B = 4 the 2-D weight (1 − r)^{−1/2} is integrable and handled by the Jacobi rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from scipy.special import betaln, roots_jacobi, roots_legendre

from ..errors import HyperparameterError, NumericalError

TOL = 1e-10
#: above this batch the weights are concentrated at |y| = O(1) and evaluated in logs with
#: Gauss–Legendre on |y| <= Y_CUT (the weight beyond is below e^{-Y_CUT²/2} ≈ 1e-31)
LARGE_B = 200
Y_CUT = 12.0


def check_batch(B: object) -> int:
    """``B`` as an int ≥ 4 (the smallest batch with finite gradient moments)."""
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 4:
        raise HyperparameterError(
            f"the batch size must be an integer >= 4, got {B!r}: below 4 examples the inverse "
            "batch variance has no finite mean, so the gradient statistics diverge"
        )
    return int(B)


@lru_cache(maxsize=64)
def _jacobi01(n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes/weights for ∫_0^1 g(r)(1 − r)^alpha dr."""
    x, w = roots_jacobi(n, alpha, 0.0)
    return (x + 1) / 2, w / 2 ** (alpha + 1)


@lru_cache(maxsize=16)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return roots_legendre(n)


def _expect1(f, B: int, n: int, kinks: Sequence[float]) -> float:
    d = B - 1
    m = (d - 3) / 2
    R = np.sqrt(B - 1.0)
    tk = sorted({0.0, *(k / R for k in kinks if abs(k) < R)})
    if B > LARGE_B:
        T = min(1.0, Y_CUT / R)
        edges = sorted({-T, *(t for t in tk if abs(t) < T), T})
        x, wl = _legendre(n)
        total = norm = 0.0
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            t = (lo + hi) / 2 + (hi - lo) / 2 * x
            w = wl * (hi - lo) / 2 * np.exp(m * np.log1p(-t * t))
            total += float(np.sum(w * f(R * t)))
            norm += float(np.sum(w))
        return total / norm  # the normalisation by the same rule (no Beta-function roundoff)
    edges = [-1.0, *tk, 1.0]
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        # weight (1 - t)^m (1 + t)^m: the singular factor at an end of [-1, 1] by Jacobi
        if hi == 1.0:
            r, w = _jacobi01(n, m)
            t = lo + (1 - lo) * r  # 1 - t = (1 - lo)(1 - r)
            val = w * (1 + t) ** m * (1 - lo) ** (m + 1)
        elif lo == -1.0:
            r, w = _jacobi01(n, m)
            t = hi - (hi + 1) * r  # 1 + t = (hi + 1)(1 - r)
            val = w * (1 - t) ** m * (hi + 1) ** (m + 1)
        else:
            x, wl = _legendre(n)
            t = (lo + hi) / 2 + (hi - lo) / 2 * x
            val = wl * (hi - lo) / 2 * (1 - t * t) ** m
        total += float(np.sum(val * f(R * t)))
    return total / np.exp(betaln(0.5, (d - 1) / 2))


def _expect2(f, B: int, n: int) -> float:
    d = B - 1
    m = (d - 4) / 2
    a = np.sqrt(1 - 1 / B)
    b = -1 / (a * B)
    c = np.sqrt(1 - 1 / B - b * b)
    # angles where y1 = 0 (cos θ = 0) or y2 = 0 (b cos θ + c sin θ = 0)
    th0 = np.arctan2(-b, c)
    cuts = np.sort(np.mod([np.pi / 2, 3 * np.pi / 2, th0, th0 + np.pi], 2 * np.pi))
    edges = np.concatenate([cuts, [cuts[0] + 2 * np.pi]])
    x, wl = _legendre(n)
    if B > LARGE_B:  # r <= Y_CUT/√B carries all but e^{-Y_CUT²/2} of the weight
        rmax = min(1.0, Y_CUT / np.sqrt(B * a * a * 0.5))
        r = rmax * (x + 1) / 2
        wr = wl * rmax / 2 * np.exp(m * np.log1p(-r * r)) * r
    else:
        r, wr = _jacobi01(n, m)
        wr = wr * (1 + r) ** m * r  # (1 - r²)^m r dr = (1 - r)^m (1 + r)^m r dr
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        th = (lo + hi) / 2 + (hi - lo) / 2 * x
        wt = wl * (hi - lo) / 2
        s1 = r[:, None] * np.cos(th)[None, :]
        s2 = r[:, None] * np.sin(th)[None, :]
        y1 = np.sqrt(B) * a * s1
        y2 = np.sqrt(B) * (b * s1 + c * s2)
        total += float(np.sum(wr[:, None] * wt[None, :] * f(y1, y2)))
    return total * (d - 2) / (2 * np.pi)


def _checked(compute: Callable[[int], float], what: str, n: int, tol: float
             ) -> tuple[float, float]:
    lo, hi = compute(n), compute(2 * n)
    err = abs(hi - lo)
    if not np.isfinite(hi) or err > tol * max(1.0, abs(hi)):
        raise NumericalError(
            f"sphere quadrature for {what} did not converge: {lo!r} at {n} nodes vs {hi!r} at "
            f"{2 * n} (tolerance {tol:g}); the integrand may have kinks away from 0 or be "
            "too steep"
        )
    return hi, err


def sphere_expect1(f: Callable[[np.ndarray], np.ndarray], B: int, *, n: int = 48,
                   kinks: Sequence[float] = (), tol: float = TOL) -> tuple[float, float]:
    """(E[f(y_1)], error estimate) for y uniform on the batch sphere (see the module doc);
    ``kinks``: points where f is not smooth besides 0."""
    B = check_batch(B)
    return _checked(lambda k: _expect1(f, B, k, kinks), "E f(y1)", n, tol)


def sphere_expect2(f: Callable[[np.ndarray, np.ndarray], np.ndarray], B: int, *, n: int = 48,
                   tol: float = TOL) -> tuple[float, float]:
    """(E[f(y_1, y_2)], error estimate) for y uniform on the batch sphere."""
    B = check_batch(B)
    return _checked(lambda k: _expect2(f, B, k), "E f(y1, y2)", n, tol)
