"""The derivation: a fold of an architecture's operators over the Gaussian-variable state."""

from __future__ import annotations

import warnings
from functools import lru_cache

import sympy as sp

from .budget import BudgetExceeded, time_budget
from .errors import CritsymWarning
from .fold import input_signal, output_variable
from .ops.base import Op, as_op
from .symbols import K11, K12, K22, K


@lru_cache(maxsize=256)
def _fold(arch: Op, closed_forms: bool) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    s = input_signal(K11, K22, K12, closed_forms=closed_forms)
    out = output_variable(arch.apply(s))
    F = out.var_a.subs(K11, K)
    chi = out.jac.subs(K11, K)
    return F, chi, out.cov


#: Seconds of symbolic work (closed forms of the Gaussian expectations) before :func:`derive`
#: falls back to numeric quadrature for them.
SYMBOLIC_BUDGET_S = 30.0


def _fold_within_budget(arch: Op) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """The closed-form fold, or, when it outlasts :data:`SYMBOLIC_BUDGET_S`, the fold with every
    expectation left to quadrature (same recursions, evaluated numerically), with a warning."""
    try:
        with time_budget(SYMBOLIC_BUDGET_S):
            return _fold(arch, True)
    except BudgetExceeded:
        warnings.warn(
            f"closed forms for {arch!r} took longer than {SYMBOLIC_BUDGET_S:g} s; its Gaussian "
            "expectations are evaluated by numeric quadrature instead (same recursions, "
            "slower to evaluate)", CritsymWarning, stacklevel=3)
        return _fold(arch, False)


def derive(arch: Op):
    """Derive the mean-field recursions of one repeating block.

    Returns a :class:`~critsym.theory.Theory` holding, as sympy expressions,

    * the variance map K^{l+1} = F(K^l),
    * the APJN multiplier χ_J^l (J^{l0,l+1} = χ_J^l J^{l0,l}),
    * the covariance map K_12^{l+1} = G(K_11^l, K_22^l, K_12^l),

    with Gaussian expectations in closed form where the rules of
    :mod:`critsym.gaussian.closed_form` find one.
    """
    from .ops.axes import uses_axes
    from .theory import Theory

    arch = as_op(arch)
    if uses_axes(arch):  # rows × neurons state (MLP-Mixer): critsym.axis_theory
        from .axis_theory import derive_axes

        return derive_axes(arch)
    F, chi, G = _fold_within_budget(arch)
    return Theory(arch=arch, F=F, chi=chi, G=G)


def derive_general(arch: Op) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(F, χ_J, G) with every Gaussian expectation left unevaluated (for display)."""
    return _fold(as_op(arch), False)
