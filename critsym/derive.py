"""The derivation: a fold of an architecture's operators over the Gaussian-variable state."""

from __future__ import annotations

import warnings

import sympy as sp

from .budget import BudgetExceeded, time_budget
from .errors import CritsymWarning, DerivationError
from .fold import fold_maps
from .ops.attention import token_count, uses_tokens
from .ops.axes import Transpose, uses_axes
from .ops.base import Op, as_op
from .ops.contract import contains
from .theory import Theory

#: Seconds of symbolic work (closed forms of the Gaussian expectations) before :func:`derive`
#: falls back to numeric quadrature for them.
SYMBOLIC_BUDGET_S = 30.0


def _maps_within_budget(arch: Op, axes: bool, tokens: bool = False) -> dict[str, sp.Expr]:
    """The closed-form maps, or, when the fold outlasts :data:`SYMBOLIC_BUDGET_S`, the maps with
    every expectation left to quadrature (same recursions, evaluated numerically), with a
    warning."""
    try:
        with time_budget(SYMBOLIC_BUDGET_S):
            return fold_maps(arch, closed_forms=True, axes=axes, tokens=tokens)
    except BudgetExceeded:
        warnings.warn(
            f"closed forms for {arch!r} took longer than {SYMBOLIC_BUDGET_S:g} s; its Gaussian "
            "expectations are evaluated by numeric quadrature instead (same recursions, "
            "slower to evaluate)", CritsymWarning, stacklevel=3)
        return fold_maps(arch, closed_forms=False, axes=axes, tokens=tokens)


def _token_theory(arch: Op) -> Theory:
    """A token-state theory: the multi-axis maps and the two-part tangent map converted from
    the fold's (j, κ) to the public (j, k) coordinates, k = κ (n − 1)/n."""
    if contains(arch, lambda o: isinstance(o, Transpose)):
        raise DerivationError(
            f"{arch!r} holds a Transpose and Attention: the transposed rows would stop being "
            "the tokens whose cross-token overlap a token state carries; derive the two parts "
            "as separate architectures")
    n = token_count(arch)
    maps = dict(_maps_within_budget(arch, True, True))  # fold_maps is cached: copy
    M_jk, M_kj = maps.pop("T_jkap"), maps.pop("T_kapj")
    if n is None:
        if M_jk != 0 or M_kj != 0:  # pragma: no cover - only token mixing couples them
            raise DerivationError(f"{arch!r} couples j and k without a token count")
    else:
        M_jk, M_kj = M_jk * sp.Integer(n) / (n - 1), M_kj * sp.Integer(n - 1) / n
    M_jj, M_kk = maps.pop("T_jj"), maps.pop("T_kapkap")
    maps["chi"] = perron_root(M_jj, M_jk, M_kj, M_kk)
    return Theory(arch=arch, **maps, M_jj=M_jj, M_jk=M_jk, M_kj=M_kj, M_kk=M_kk, n_tokens=n)


def perron_root(a: sp.Expr, b: sp.Expr, c: sp.Expr, d: sp.Expr) -> sp.Expr:
    """The asymptotic per-block growth of j under (j, k)' = [[a, b], [c, d]] (j, k): the larger
    eigenvalue (a + d)/2 + sqrt(((a − d)/2)² + b c), the spectral radius (Perron root) when the
    entries are >= 0.  Without a k → j entry (b = 0, no token mixing) j grows by a alone."""
    if b == 0:
        return a
    return (a + d) / 2 + sp.sqrt(((a - d) / 2) ** 2 + b * c)


def derive(arch: Op, *, tokens: bool | None = None) -> Theory:
    """Derive the mean-field recursions of one repeating block.

    Returns a :class:`~critsym.theory.Theory` holding, as sympy expressions,

    * the variance map K^{l+1} = F(K^l),
    * the APJN multiplier χ_J^l (J^{l0,l+1} = χ_J^l J^{l0,l}),
    * the covariance map K_12^{l+1} = G(K_11^l, K_22^l, K_12^l),

    with Gaussian expectations in closed form where the rules of
    :mod:`critsym.gaussian.closed_form` find one.  A block with a rows × neurons state (an
    operator that needs one, e.g. a Transpose in an MLP-Mixer) gets the multi-axis state
    (K, O_T, O_C) and its offset and cross maps (see :class:`~critsym.theory.Theory`).

    An architecture containing :class:`~critsym.ops.attention.Attention` gets a token state
    (rows = n tokens): the same state (K = q, O_T, O_C = p, the cross-token covariance) and a
    two-part tangent (j, k) whose 2 × 2 map is ``theory.tangent_map``; ``chi`` is then its Perron
    root (the asymptotic per-block growth of J).  ``tokens=True`` starts a token state for a
    position-wise block without Attention (its tangent map is diagonal).
    """
    arch = as_op(arch)
    if tokens is None:
        tokens = uses_tokens(arch)
    if tokens:
        return _token_theory(arch)
    from .batchnorm.theory import FiniteBatchTheory, split_block

    if split_block(arch) is not None:  # BatchNorm(B) >> Act >> Linear: critsym.batchnorm
        return FiniteBatchTheory.from_arch(arch)
    return Theory(arch=arch, **_maps_within_budget(arch, uses_axes(arch)))


def derive_general(arch: Op) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(F, χ_J, G) with every Gaussian expectation left unevaluated (for display)."""
    arch = as_op(arch)
    m = fold_maps(arch, closed_forms=False, axes=uses_axes(arch))
    return m["F"], m["chi"], m["G"]
