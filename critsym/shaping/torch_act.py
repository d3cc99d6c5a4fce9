"""Torch implementations of shaped activations."""

from __future__ import annotations

import math

import sympy as sp
import torch
import torch.nn.functional as F

from ..activations import x


def _either(tf, mf):
    """Apply the torch function to tensors and the math function to plain numbers."""
    return lambda v: tf(v) if isinstance(v, torch.Tensor) else mf(v)


#: torch counterparts of the functions the activation registry's sympy expressions use
_TORCH = {
    "ReLU": torch.relu, "ELU": F.elu, "Sigmoid": torch.sigmoid, "Softplus": F.softplus,
    "Heaviside": lambda t, h0=0.5: torch.heaviside(t, torch.full_like(t, h0)),
    **{n: _either(getattr(torch, n), getattr(math, n))
       for n in ("tanh", "erf", "exp", "log", "sqrt", "sin", "cos", "sinh", "cosh", "atan")},
    "Abs": torch.abs, "sign": torch.sign,
}


def torch_function(expr: sp.Expr):
    """A torch callable for a sympy expression in ``x`` (the activation vocabulary)."""
    fn = sp.lambdify(x, expr, modules=[_TORCH, "math"])

    def call(t: torch.Tensor) -> torch.Tensor:
        out = fn(t)
        return out if isinstance(out, torch.Tensor) else torch.full_like(t, float(out))

    return call


class Shaped(torch.nn.Module):
    """φ̂(x) = γ (φ(α x + β) + δ) as a module (float64-safe: follows the input dtype)."""

    def __init__(self, shaped):
        super().__init__()
        self.fn = torch_function(shaped.expr)
        self.shaped_repr = (f"{shaped.method} {shaped.activation}, depth {shaped.depth}")

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fn(t)

    def extra_repr(self) -> str:
        return self.shaped_repr


def shaped_module(shaped) -> Shaped:
    return Shaped(shaped)
