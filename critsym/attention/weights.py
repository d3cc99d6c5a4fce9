r"""Mixing moments of an exchangeable attention matrix, the quantities the fold needs.

Attention mixes the value vectors of n tokens, y_a = Σ_c A_ac v_c, with rows of A summing to 1.
For values whose tokens are exchangeable (variance q, covariance p between two different tokens,
at one channel) and whose tangents have j (per token) and κ (per pair of different tokens),

* D = Σ_c A_ac² and X = Σ_c A_ac A_bc (a ≠ b) give
  Var y = p + (q − p) D,  Cov(y_a, y_b) = p + (q − p) X,
  j' = D j + (1 − D) κ,  κ' = X j + (1 − X) κ

(expand Σ_{c,c'} A_ac A_bc' ⟨·_c, ·_c'⟩ into c = c' and c ≠ c' and use Σ_c A_ac = 1).

An exchangeable matrix is fixed by its diagonal weight a = A_aa, with A_ab = (1 − a)/(n − 1):

* D(a) = a² + (1 − a)²/(n − 1),
* X(a) = 2a(1 − a)/(n − 1) + (n − 2)(1 − a)²/(n − 1)².

Two inputs α, β with their own matrices (weights a_α, a_β) mix the cross covariance with
D_12 = Σ_c A^α_ac A^β_ac and X_12 = Σ_c A^α_ac A^β_bc, the same sums with one factor from each.

Regimes (each returns the diagonal weight a):

* uniform: A = 11ᵀ/n, a = 1/n (then D = X = 1/n);
* deterministic: A = softmax(β·Gram) over the tokens with the Gram q̃ on the diagonal and p̃ off
  it, a = 1/(1 + (n − 1) e^{−β(q̃ − p̃)}).
"""

from __future__ import annotations

import sympy as sp


def mixing_D(a: sp.Expr, n: sp.Expr) -> sp.Expr:
    """D = Σ_c A_ac² of an exchangeable row with diagonal weight ``a`` over ``n`` tokens."""
    return cross_D(a, a, n)


def mixing_X(a: sp.Expr, n: sp.Expr) -> sp.Expr:
    """X = Σ_c A_ac A_bc (a ≠ b) of an exchangeable matrix with diagonal weight ``a``."""
    return cross_X(a, a, n)


def cross_D(a1: sp.Expr, a2: sp.Expr, n: sp.Expr) -> sp.Expr:
    """D_12 = Σ_c A^1_ac A^2_ac for two exchangeable matrices with diagonal weights a1, a2."""
    n = sp.sympify(n)
    return a1 * a2 + (1 - a1) * (1 - a2) / (n - 1)


def cross_X(a1: sp.Expr, a2: sp.Expr, n: sp.Expr) -> sp.Expr:
    """X_12 = Σ_c A^1_ac A^2_bc (a ≠ b) for two exchangeable matrices with diagonal weights
    a1, a2: the terms c = a, c = b and the n − 2 others."""
    n = sp.sympify(n)
    return ((a1 * (1 - a2) + a2 * (1 - a1)) / (n - 1)
            + (n - 2) * (1 - a1) * (1 - a2) / (n - 1) ** 2)


def uniform_weight(n: sp.Expr) -> sp.Expr:
    """The diagonal weight of A = 11ᵀ/n: 1/n."""
    return 1 / sp.sympify(n)


def deterministic_weight(n: sp.Expr, q: sp.Expr, p: sp.Expr, beta: sp.Expr) -> sp.Expr:
    """A_aa of softmax(β·Gram) with Gram q on the diagonal and p off it:
    e^{βq}/(e^{βq} + (n − 1)e^{βp}) = 1/(1 + (n − 1)e^{−β(q − p)})."""
    return 1 / (1 + (sp.sympify(n) - 1) * sp.exp(-beta * (q - p)))


__all__ = ["cross_D", "cross_X", "deterministic_weight", "mixing_D", "mixing_X",
           "uniform_weight"]
