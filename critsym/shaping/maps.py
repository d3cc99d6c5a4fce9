r"""Local Q and C maps of a (transformed) activation, at any q and c.

For φ̂(x) = γ (φ(α x + β) + δ) (dks's output_scale γ, input_scale α, input_shift β,
output_shift δ) and u, v ~ N(0, q [[1, c], [c, 1]]):

* Q(q)    = E[φ̂(√q z)²]                          (the variance map of one layer, σ_w = 1)
* Q'(q)   = E[φ̂(√q z) φ̂'(√q z) z] / √q            (so Q'(1) = E[φ̂ φ̂' z])
* C(c)    = E[φ̂(u) φ̂(v)] / Q(q)                   (the correlation map)
* C'(c)   = q E[φ̂'(u) φ̂'(v)] / Q(q)               (C'(1) = q E[φ̂'²]/Q, C'(0) = q E[φ̂']²/Q)
* C''(c)  = q² E[φ̂''(u) φ̂''(v)] / Q(q)            (C''(1) = q² E[φ̂''²]/Q)

(derivatives under the integral: ∂/∂Σ_12 E[f(u)g(v)] = E[f'(u)g'(v)]).  At q = 1 these are
dks's local quantities.  The end points c = 0 and c = ±1 are 1-D Gaussian means; an
intermediate c uses the nested 2-D rule of :mod:`critsym.gaussian.rules` (~1e-13).
Kinked activations use almost-everywhere derivatives; where φ' jumps (relu, leaky relu) φ'' has
a Dirac part, E[φ̂''(u)φ̂''(v)] ∝ 1/√(1-c²), and ``invariants()`` reports C''(1) = ∞.
:func:`local_map_exprs` gives the same quantities symbolically through the core's closed forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..activations import x
from ..errors import DerivationError, HyperparameterError
from ..gaussian.expectation import expect, expect2
from ..gaussian.rules import mean1, mean2, rule
from .activation import BaseActivation, base_activation

#: symbols of the transform, for symbolic maps
alpha, beta = sp.Symbol("alpha", positive=True), sp.Symbol("beta", real=True)
gamma, delta = sp.Symbol("gamma", positive=True), sp.Symbol("delta", real=True)
q_sym, c_sym = sp.Symbol("q", positive=True), sp.Symbol("c", real=True)


def base_moments(base: BaseActivation, a: float, b: float, q: float = 1.0) -> tuple:
    """One pass of the 1-D rule over t = α√q x + β: (E φ, E φ², E φφ'x, E φ'x, E φ'², E φ',
    E φ''²) of the *untransformed* φ (the transform's γ, δ enter in :func:`invariants_from`)."""
    s = a * np.sqrt(q)
    ks = tuple((k - b) / s for k in base.kinks) if s != 0 else ()
    X, W = _cached_rule(ks)
    t = s * X + b
    f0, f1, f2 = base.f
    with np.errstate(all="ignore"):
        v0, v1, v2 = f0(t), f1(t), f2(t)
        w0, w1 = v0 * W, v1 * W
        return (w0.sum(), v0 @ w0, (v1 * X) @ w0, X @ w1, v1 @ w1, w1.sum(), (v2 * v2) @ W)


def invariants_from(mom: tuple, a: float, d: float, g: float, q: float = 1.0) -> dict:
    """Local invariants of φ̂ = γ(φ(αx+β)+δ) at q from :func:`base_moments` (see module doc)."""
    m0, m00, m01x, m1x, m11, m1, m22 = mom
    with np.errstate(all="ignore"):
        Q = g * g * (m00 + 2 * d * m0 + d * d)
        a2 = a * a * q
        return {"Q(1)": float(Q), "Q'(1)": float(g * g * a * (m01x + d * m1x) / np.sqrt(q)),
                "C(0)": float(g * g * (m0 + d) ** 2 / Q), "C'(1)": float(g * g * a2 * m11 / Q),
                "C'(0)": float(g * g * a2 * m1 * m1 / Q),
                "C''(1)": float(g * g * a2 * a2 * m22 / Q)}


_RULES: dict = {}


def _cached_rule(ks: tuple):
    if ks:
        return rule(ks, 16)
    if () not in _RULES:
        _RULES[()] = rule((), 16)
    return _RULES[()]


@dataclass(frozen=True)
class LocalMaps:
    """The local maps of φ̂(x) = output_scale·(φ(input_scale·x + input_shift) + output_shift)."""

    base: BaseActivation
    input_scale: float = 1.0
    input_shift: float = 0.0
    output_shift: float = 0.0
    output_scale: float = 1.0

    # ------------------------------------------------------------ building blocks
    def _fns(self, q: float):
        """φ̂^{(k)}(√q x) as functions of the standardised x, and φ̂'s kinks in x."""
        if not (np.isfinite(q) and q > 0):
            raise HyperparameterError(f"q must be a finite positive variance, got {q}")
        a, b, g, d = self.input_scale, self.input_shift, self.output_scale, self.output_shift
        s = np.sqrt(q)
        f0, f1, f2 = self.base.f
        fns = (lambda t: g * (f0(a * s * t + b) + d),
               lambda t: g * a * f1(a * s * t + b),
               lambda t: g * a * a * f2(a * s * t + b))
        kinks = tuple((k - b) / (a * s) for k in self.base.kinks) if a != 0 else ()
        return fns, kinks

    def moments(self, q: float = 1.0) -> dict[str, float]:
        """The 1-D Gaussian means at variance q, from one node set:
        m = E[φ̂], m2 = E[φ̂²], qs = E[φ̂ φ̂' z], d1 = E[φ̂'], d2 = E[φ̂'²], dd2 = E[φ̂''²]."""
        (h0, h1, h2), ks = self._fns(q)
        X, W = rule(ks, 16)
        with np.errstate(all="ignore"):
            v0, v1, v2 = h0(X), h1(X), h2(X)
        return {"m": float(v0 @ W), "m2": float(v0**2 @ W), "qs": float((v0 * v1 * X) @ W),
                "d1": float(v1 @ W), "d2": float(v1**2 @ W), "dd2": float(v2**2 @ W)}

    # ------------------------------------------------------------ maps
    def Q(self, q: float = 1.0) -> float:
        """Q(q) = E[φ̂(√q z)²]."""
        (h0, _, _), ks = self._fns(q)
        return mean1(lambda t: h0(t) ** 2, ks)

    def Q_slope(self, q: float = 1.0) -> float:
        """Q'(q) = E[φ̂(√q z) φ̂'(√q z) z] / √q."""
        (h0, h1, _), ks = self._fns(q)
        return mean1(lambda t: h0(t) * h1(t) * t, ks) / np.sqrt(q)

    def _corr(self, k: int, c: float, q: float) -> float:
        fns, ks = self._fns(q)
        h = fns[k]
        c = float(c)
        if not -1.0 <= c <= 1.0:
            raise HyperparameterError(f"c must lie in [-1, 1], got {c}")
        if c == 0.0:
            return mean1(h, ks) ** 2
        return mean2(h, h, c, ks, ks)

    def C(self, c: float, q: float = 1.0) -> float:
        """C(c) = E[φ̂(u)φ̂(v)] / Q(q) (Hermite series when it has converged, else 2-D rule)."""
        a2 = self.hermite(q)
        if a2 is not None:
            return float(np.polynomial.polynomial.polyval(float(c), a2) / np.sum(a2))
        return self._corr(0, c, q) / self.Q(q)

    def hermite(self, q: float = 1.0, n_max: int = 80, tol: float = 1e-14):
        r"""Mehler/Hermite coefficients a_n² (n = 0..N) of φ̂(√q z), with
        E[φ̂(u)φ̂(v)] = Σ_n a_n² c^n, a_n = E[φ̂(√q z) He_n(z)]/√n!; None unless the Parseval tail
        Q(q) - Σ a_n² (which bounds the truncation error of C on [-1, 1]) is below ``tol``·Q."""
        key = (float(q), n_max, tol)
        cache = self.__dict__.setdefault("_hermite_cache", {})
        if key in cache:
            return cache[key]
        (h0, _, _), ks = self._fns(q)
        X, W = rule(ks, 24)
        with np.errstate(all="ignore"):
            fw = h0(X) * W
        Q = float(np.sum(h0(X) * fw))
        coef = np.empty(n_max + 1)
        hp, hc = np.zeros_like(X), np.ones_like(X)
        out = None
        for n in range(n_max + 1):
            coef[n] = float(hc @ fw) ** 2
            if n >= 2 and Q - coef[: n + 1].sum() <= tol * Q:
                out = coef[: n + 1].copy()
                break
            hp, hc = hc, (X * hc - np.sqrt(n) * hp) / np.sqrt(n + 1)
        cache[key] = out
        return out

    def C_slope(self, c: float, q: float = 1.0) -> float:
        """C'(c) = q E[φ̂'(u)φ̂'(v)] / Q(q)."""
        return q * self._corr(1, c, q) / self.Q(q)

    def C_curv(self, c: float, q: float = 1.0) -> float:
        """C''(c) = q² E[φ̂''(u)φ̂''(v)] / Q(q) (almost-everywhere φ̂'': without the Dirac part
        of a slope jump, so not for relu / leaky relu)."""
        if self.base.slope_jump:
            raise DerivationError(
                f"{self.base.name}: φ' jumps, so C''(c) has a Dirac part that the a.e. second "
                "derivative misses; differentiate C_slope numerically instead"
            )
        return q * q * self._corr(2, c, q) / self.Q(q)

    def invariants(self, q: float = 1.0) -> dict[str, float]:
        """dks's local quantities at q: Q, Q', C(0), C'(1), C'(0), C''(1)."""
        mom = base_moments(self.base, self.input_scale, self.input_shift, q)
        inv = invariants_from(mom, self.input_scale, self.output_shift, self.output_scale, q)
        if self.base.slope_jump and self.input_scale != 0:
            inv["C''(1)"] = math.inf  # E[δ(u)δ(v)] = 1/(2π√(1-c²)) diverges at c = 1
        return inv

    def expr(self) -> sp.Expr:
        """φ̂(x) as a sympy expression with the numeric parameters."""
        return transformed_expr(self.base, self.input_scale, self.input_shift,
                                self.output_shift, self.output_scale)


def local_maps(activation: object, input_scale: float = 1.0, input_shift: float = 0.0,
               output_shift: float = 0.0, output_scale: float = 1.0) -> LocalMaps:
    """:class:`LocalMaps` of an activation name / Act / sympy expression under the transform."""
    return LocalMaps(base_activation(activation), float(input_scale), float(input_shift),
                     float(output_shift), float(output_scale))


def transformed_expr(base, a=alpha, b=beta, d=delta, g=gamma) -> sp.Expr:
    """γ (φ(α x + β) + δ) (symbols by default)."""
    base = base_activation(base)
    return _num(g) * (base.expr.subs(x, _num(a) * x + _num(b)) + _num(d))


def _num(v):
    return sp.Float(v) if isinstance(v, (float, np.floating)) else sp.sympify(v)


def local_map_exprs(activation: object, **params) -> dict[str, sp.Expr]:
    r"""The local maps symbolically (sympy), through the core's closed forms where the rules
    find one (e.g. arc-cosine for relu, arc-sine for erf) and unevaluated ``GaussE``/``GaussE2``
    nodes otherwise.  Free symbols: ``q``, ``c`` and the transform's α, β, γ, δ unless given as
    ``input_scale``, ``input_shift``, ``output_shift``, ``output_scale``.

    Keys: ``Q`` (Q(q)), ``Q'`` (dQ/dq), ``C`` (C(c) at q), ``C'`` and ``C''`` (at c = 1), ``C'(0)``.
    ``C''`` uses the almost-everywhere φ̂'' (Dirac parts dropped; see :class:`LocalMaps`).
    """
    base = base_activation(activation)
    a = params.get("input_scale", alpha)
    b = params.get("input_shift", beta)
    d = params.get("output_shift", delta)
    g = params.get("output_scale", gamma)
    ph = transformed_expr(base, a, b, d, g)
    z = sp.Symbol("z", real=True)
    u, v = sp.Symbol("u", real=True), sp.Symbol("v", real=True)
    f = ph.subs(x, z)
    f1 = sp.diff(f, z)
    f2 = sp.diff(f1, z).replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    Q = expect(f**2, z, q_sym)
    Qs = expect(f * f1 * z, z, q_sym) / q_sym
    cov = c_sym * q_sym
    C = expect2(ph.subs(x, u) * ph.subs(x, v), u, v, q_sym, q_sym, cov) / Q
    return {
        "Q": Q,
        "Q'": Qs,
        "C": C,
        "C'": q_sym * expect(f1**2, z, q_sym) / Q,
        "C'(0)": q_sym * expect(f1, z, q_sym) ** 2 / Q,
        "C''": sp.oo if base.slope_jump else q_sym**2 * expect(f2**2, z, q_sym) / Q,
    }
