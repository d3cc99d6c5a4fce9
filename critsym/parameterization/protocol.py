"""What the exponent calculus and the classification read from a parameterization.

:func:`~critsym.parameterization.calculus.exponent_calculus` and
:func:`~critsym.parameterization.classify.classify` take any object with this interface (in
practice an :class:`~critsym.parameterization.abc_parameterization.ABCParameterization`), so
neither module imports the class module, which calls both of them: no import cycle.
"""

from __future__ import annotations

from typing import Any, Protocol

import sympy as sp

#: a tuple of rational width exponents, one per layer
Exps = tuple[sp.Rational, ...]


class Parameterization(Protocol):
    """Interface of :class:`~critsym.parameterization.abc_parameterization.ABCParameterization`
    used by the exponent calculus and the classification."""

    @property
    def a(self) -> Exps: ...

    @property
    def b(self) -> Exps: ...

    @property
    def n_layers(self) -> int: ...

    @property
    def L(self) -> int: ...

    @property
    def step_c(self) -> Exps: ...

    def is_integrable(self) -> bool: ...

    def exponents(self, nonlinear: bool = False) -> Any: ...
