"""The base activation of a shaping problem: φ(x) as sympy, its numpy derivatives and kinks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp

from ..activations import NUMPY_FUNCTIONS, check_differentiable, x
from ..errors import UnknownActivationError
from ..gaussian.rules import kink_points
from ..ops.activation import Act

_MODULES = [NUMPY_FUNCTIONS, "scipy", "numpy"]


@dataclass(frozen=True, eq=False)
class BaseActivation:
    """φ(x) with vectorised φ, φ', φ'' (almost-everywhere derivatives) and its kink points."""

    name: str
    expr: sp.Expr
    kinks: tuple[float, ...]
    f: tuple = field(repr=False)

    @property
    def is_odd(self) -> bool:
        """φ(-x) = -φ(x) (then (α, β, δ) and (α, -β, -δ) give the same invariants); checked
        numerically on a grid of |x| <= 8 at build time."""
        return self.odd

    odd: bool = False
    #: φ' jumps at a kink (relu, leaky relu): φ'' has a Dirac part and C''(1) = ∞
    slope_jump: bool = False

    @property
    def is_kinked(self) -> bool:
        return bool(self.kinks)


def _kinks(exprs) -> tuple[float, ...]:
    """The kink points of φ, φ', φ'' (the core's kink table, Dirac deltas included)."""
    return tuple(sorted({float(p) for e in exprs for p in kink_points(e, x, include_zero=True)}))


def _lambdify(e: sp.Expr):
    e = e.replace(lambda t: isinstance(t, sp.DiracDelta), lambda t: sp.S.Zero)
    fn = sp.lambdify(x, e, modules=_MODULES)

    def call(t, fn=fn):
        with np.errstate(all="ignore"):
            out = fn(t)
        return np.broadcast_to(np.asarray(out, dtype=float), np.shape(t))

    return call


@lru_cache(maxsize=128)
def _build(name: str, expr: sp.Expr) -> BaseActivation:
    d1 = check_differentiable(expr, x)
    d2 = sp.diff(d1, x)
    f0 = _lambdify(expr)
    t = np.linspace(0.0, 8.0, 161)
    odd = bool(np.all(np.abs(f0(t) + f0(-t)) <= 1e-13 * (1 + np.abs(f0(t)))))
    f1 = _lambdify(d1)
    ks = _kinks((expr, d1, d2))
    jump = any(abs(float(f1(np.array(k + 1e-9))) - float(f1(np.array(k - 1e-9)))) > 1e-6
               for k in ks)
    return BaseActivation(name, expr, ks, (f0, f1, _lambdify(d2)), odd, jump)


def base_activation(activation: object) -> BaseActivation:
    """Resolve an activation name (``"tanh"``), an :class:`~critsym.Act`, or a sympy expression in
    one variable into a :class:`BaseActivation`."""
    if isinstance(activation, BaseActivation):
        return activation
    if isinstance(activation, str):
        act = Act(activation)
    elif isinstance(activation, Act):
        act = activation
    elif isinstance(activation, sp.Basic):
        act = Act(activation)
    else:
        raise UnknownActivationError(
            f"an activation must be a name such as 'tanh', a critsym Act, or a sympy expression "
            f"in one variable, got {activation!r}"
        )
    name = act.name if act.name != "custom" else str(act.phi())
    if act.params:
        name += "(" + ", ".join(f"{k}={v}" for k, v in act.params) + ")"
    return _build(name, act.phi(x))
