r"""abc-parameterizations of an (L+1)-layer MLP of width m (Yang-Hu; Hajjar-Chizat-Giraud).

Layers l = 0..L:  h_0 = m^{-a_0} W^0 xi,  h_l = m^{-a_l} W^l phi(h_{l-1}),  f = h_L,
W^l = m^{-b_l} U^l with U^l ~ N(0, sigma^2), SGD learning rate of layer l = eta m^{-c_l}.

Symmetry (SGD): (a_l, b_l, c_l) -> (a_l + theta_l, b_l - theta_l, c_l - 2 theta_l) leaves the
function
and its SGD trajectory invariant, for each layer separately; the invariants are a_l + b_l (the
forward
scale) and 2 a_l + c_l (the effective learning rate in function space).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from critsym.errors import HyperparameterError
from critsym.parameterization.calculus import exponent_calculus
from critsym.parameterization.classify import classify
from critsym.parameterization.protocol import Exps


def _rat(v: object, what: str) -> sp.Rational:
    try:
        r = sp.nsimplify(v, rational=True) if isinstance(v, float) else sp.sympify(v)
    except (sp.SympifyError, TypeError, ValueError) as exc:
        raise HyperparameterError(f"{what}: cannot read {v!r} as a rational exponent") from exc
    if not r.is_Rational:
        raise HyperparameterError(f"{what}: exponent must be rational, got {v!r}")
    return sp.Rational(r)


def expand_exponents(value: object, n_layers: int, what: str) -> Exps:
    """A scalar (all layers), a triple (first; hidden; last) or a full list of n_layers values."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return tuple(_rat(value, what) for _ in range(n_layers))
    vals = list(value)
    if len(vals) == n_layers:
        return tuple(_rat(v, f"{what}[{i}]") for i, v in enumerate(vals))
    if len(vals) == 3 and n_layers >= 2:
        first, hidden, last = (_rat(v, what) for v in vals)
        return (first,) + (hidden,) * (n_layers - 2) + (last,)
    raise HyperparameterError(
        f"{what}: give a scalar, a (first, hidden, last) triple or {n_layers} values; "
        f"got {len(vals)}"
    )


@dataclass(frozen=True)
class ABCParameterization:
    """Exponents (a_l, b_l, c_l), l = 0..L, as sympy Rationals.

    ``c_first`` (optional) replaces c for the first SGD step only (IP-LLR's large initial rates).
    """

    a: Exps
    b: Exps
    c: Exps
    name: str = "abc"
    c_first: Exps | None = None

    def __post_init__(self) -> None:
        n = len(self.a)
        if n < 2:
            raise HyperparameterError("an abc-parameterization needs at least 2 weight matrices")
        if len(self.b) != n or len(self.c) != n or (self.c_first is not None
                                                    and len(self.c_first) != n):
            raise HyperparameterError("a, b, c (and c_first) must have one entry per weight matrix")

    @property
    def n_layers(self) -> int:
        """Number of weight matrices L + 1."""
        return len(self.a)

    @property
    def L(self) -> int:
        return len(self.a) - 1

    @property
    def step_c(self) -> Exps:
        """Learning-rate exponents used by the first SGD step."""
        return self.c_first if self.c_first is not None else self.c

    def shift(self, theta: object) -> ABCParameterization:
        """Apply the symmetry with a scalar theta or one theta_l per layer."""
        th = expand_exponents(theta, self.n_layers, "theta")
        a = tuple(x + t for x, t in zip(self.a, th, strict=True))
        b = tuple(x - t for x, t in zip(self.b, th, strict=True))
        c = tuple(x - 2 * t for x, t in zip(self.c, th, strict=True))
        cf = None
        if self.c_first is not None:
            cf = tuple(x - 2 * t for x, t in zip(self.c_first, th, strict=True))
        return ABCParameterization(a, b, c, name=f"{self.name} (shifted)", c_first=cf)

    def invariants(self) -> tuple[Exps, Exps]:
        """(a_l + b_l, 2 a_l + c_l): the symmetry-invariant content."""
        return (tuple(x + y for x, y in zip(self.a, self.b, strict=True)),
                tuple(2 * x + y for x, y in zip(self.a, self.c, strict=True)))

    def equivalent(self, other: ABCParameterization) -> bool:
        """True when the two are related by the symmetry (same SGD dynamics)."""
        if self.n_layers != other.n_layers:
            return False
        same = self.invariants() == other.invariants()
        if self.c_first is not None or other.c_first is not None:
            fs = tuple(2 * x + y for x, y in zip(self.a, self.step_c, strict=True))
            fo = tuple(2 * x + y for x, y in zip(other.a, other.step_c, strict=True))
            same = same and fs == fo
        return same

    def is_integrable(self) -> bool:
        """a_0 + b_0 = 0 and a_l + b_l = 1 for l >= 1 (mean-field 1/m sums)."""
        s = self.invariants()[0]
        return s[0] == 0 and all(x == 1 for x in s[1:])

    def exponents(self, nonlinear: bool = False):  # -> Exponents
        """Width exponents after one SGD step (see :mod:`critsym.parameterization.calculus`)."""
        return exponent_calculus(self, nonlinear=nonlinear)

    def classify(self, nonlinear: bool = True):  # -> Classification
        return classify(self, nonlinear=nonlinear)

    def table(self) -> str:
        return self.exponents().table()

    def latex(self) -> str:
        return self.exponents().latex()


def abc(a: object, b: object, c: object, n_layers: int | None = None, name: str = "abc",
        c_first: object | None = None) -> ABCParameterization:
    """Build a general abc-parameterization; scalars/triples need ``n_layers``."""
    if n_layers is None:
        seqs = [v for v in (a, b, c) if isinstance(v, Sequence) and not isinstance(v, str)]
        if not seqs:
            raise HyperparameterError("give n_layers or full per-layer lists for a, b, c")
        n_layers = max(len(v) for v in seqs)
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
        raise HyperparameterError(f"n_layers must be an integer >= 2, got {n_layers!r}")
    cf = None if c_first is None else expand_exponents(c_first, n_layers, "c_first")
    return ABCParameterization(
        expand_exponents(a, n_layers, "a"), expand_exponents(b, n_layers, "b"),
        expand_exponents(c, n_layers, "c"), name=name, c_first=cf,
    )
