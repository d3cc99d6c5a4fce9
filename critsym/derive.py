"""The derivation: a fold of an architecture's operators over the Gaussian-variable state."""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

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
    from .batchnorm.theory import FiniteBatchTheory, split_block

    if split_block(arch) is not None:  # BatchNorm(B) >> Act >> Linear: critsym.batchnorm
        return FiniteBatchTheory.from_arch(arch)
    if uses_axes(arch):  # rows × neurons state (MLP-Mixer): critsym.axis_theory
        from .axis_theory import derive_axes

        return derive_axes(arch)
    F, chi, G = _fold(arch, True)
    return Theory(arch=arch, F=F, chi=chi, G=G)


def derive_general(arch: Op) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(F, χ_J, G) with every Gaussian expectation left unevaluated (for display)."""
    return _fold(as_op(arch), False)
