"""The derivation: a fold of an architecture's operators over the Gaussian-variable state."""

from __future__ import annotations

import warnings

import sympy as sp

from .budget import BudgetExceeded, time_budget
from .errors import CritsymWarning
from .fold import fold_maps
from .ops.axes import uses_axes
from .ops.base import Op, as_op
from .theory import Theory

#: Seconds of symbolic work (closed forms of the Gaussian expectations) before :func:`derive`
#: falls back to numeric quadrature for them.
SYMBOLIC_BUDGET_S = 30.0


def _maps_within_budget(arch: Op, axes: bool) -> dict[str, sp.Expr]:
    """The closed-form maps, or, when the fold outlasts :data:`SYMBOLIC_BUDGET_S`, the maps with
    every expectation left to quadrature (same recursions, evaluated numerically), with a
    warning."""
    try:
        with time_budget(SYMBOLIC_BUDGET_S):
            return fold_maps(arch, closed_forms=True, axes=axes)
    except BudgetExceeded:
        warnings.warn(
            f"closed forms for {arch!r} took longer than {SYMBOLIC_BUDGET_S:g} s; its Gaussian "
            "expectations are evaluated by numeric quadrature instead (same recursions, "
            "slower to evaluate)", CritsymWarning, stacklevel=3)
        return fold_maps(arch, closed_forms=False, axes=axes)


def derive(arch: Op) -> Theory:
    """Derive the mean-field recursions of one repeating block.

    Returns a :class:`~critsym.theory.Theory` holding, as sympy expressions,

    * the variance map K^{l+1} = F(K^l),
    * the APJN multiplier χ_J^l (J^{l0,l+1} = χ_J^l J^{l0,l}),
    * the covariance map K_12^{l+1} = G(K_11^l, K_22^l, K_12^l),

    with Gaussian expectations in closed form where the rules of
    :mod:`critsym.gaussian.closed_form` find one.  A block with a rows × neurons state (an
    operator that needs one, e.g. a Transpose in an MLP-Mixer) gets the multi-axis state
    (K, O_T, O_C) and its offset and cross maps (see :class:`~critsym.theory.Theory`).
    """
    arch = as_op(arch)
    from .batchnorm.theory import FiniteBatchTheory, split_block

    if split_block(arch) is not None:  # BatchNorm(B) >> Act >> Linear: critsym.batchnorm
        return FiniteBatchTheory.from_arch(arch)
    return Theory(arch=arch, **_maps_within_budget(arch, uses_axes(arch)))


def derive_general(arch: Op) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(F, χ_J, G) with every Gaussian expectation left unevaluated (for display)."""
    arch = as_op(arch)
    m = fold_maps(arch, closed_forms=False, axes=uses_axes(arch))
    return m["F"], m["chi"], m["G"]
