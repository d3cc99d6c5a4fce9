"""Torch versions of shaped activations: the activation table's torch functions
(:func:`critsym.activations.torch_lambdify`) and the operator's own plain module."""

from __future__ import annotations

import sympy as sp

from ..activations import torch_lambdify, x


def torch_function(expr: sp.Expr):
    """A torch callable for a sympy expression in ``x`` (the activation vocabulary)."""
    return torch_lambdify(expr, x)


def shaped_module(shaped):
    """φ̂ of a :class:`~critsym.shaping.ShapedActivation` as the plain module its operator
    exports to (an ``ActModule``; float64-safe: follows the input dtype)."""
    from ..torch.modules import ActModule

    return ActModule(shaped.act)
