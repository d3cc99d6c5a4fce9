r"""Numeric evaluation of Gaussian expectations inside ``sympy.lambdify``.

A :class:`~critsym.gaussian.expectation.GaussE` or ``GaussE2`` node prints, under the Python,
NumPy and SciPy printers that ``sympy.lambdify`` uses, as a call

    gauss_expectation("<srepr of (node, (s_1, ..., s_n))>", s_1, ..., s_n)

of :func:`gauss_expectation`, with the node's free symbols s_i (state, hyperparameters) as
arguments, and under the mpmath printer as a call of :func:`gauss_expectation_mp`.  The node is
rebuilt once per distinct string and evaluated by the engine's own kink-aware quadrature
(:mod:`critsym.gaussian.numeric`, vectorised over numpy arrays) or by mpmath at the current
``mpmath.mp.dps``.  So ``sympy.lambdify((K, sigma_w, sigma_b), theory.F)`` works for every
derived map, closed form or not.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .expectation import GaussE, GaussE2
from .numeric import compile_expr, evaluate_mp


@lru_cache(maxsize=512)
def _node(code: str):
    node, syms = sp.sympify(code, locals={"GaussE": GaussE, "GaussE2": GaussE2})
    return node, tuple(syms)


@lru_cache(maxsize=512)
def _compiled(code: str):
    node, syms = _node(code)
    return compile_expr(node, syms)


def gauss_expectation(code: str, *vals):
    """The expectation encoded by ``code`` at the values ``vals`` of its free symbols
    (numpy arrays broadcast together)."""
    return _compiled(code)(*vals)


def gauss_expectation_mp(code: str, *vals):
    """As :func:`gauss_expectation`, with mpmath at the current ``mpmath.mp.dps`` (scalars)."""
    import mpmath

    node, syms = _node(code)
    dps = mpmath.mp.dps
    return evaluate_mp(node, {s: sp.Float(v, dps) for s, v in zip(syms, vals, strict=True)},
                       dps)
