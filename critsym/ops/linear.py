"""Fully connected layer."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..symbols import as_hyper
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .base import Op


@dataclass(frozen=True, init=False)
class Linear(Op):
    r"""h_i = Σ_j W_ij x_j + b_i with W_ij ~ N(0, σ_w²/fan_in), b_i ~ N(0, σ_b²).

    Variance rule: K' = σ_w² E[x²] + σ_b²; Jacobian rule: J' = σ_w² E[(∂x)²] J;
    correlation: K'_12 = σ_w² E[x_a x_b] + σ_b².  Closes the signal into a new Gaussian variable.
    """

    sigma_w: sp.Expr
    sigma_b: sp.Expr
    hyper_fields = ("sigma_w", "sigma_b")

    def __init__(self, sigma_w: object = _sw, sigma_b: object = _sb):
        object.__setattr__(self, "sigma_w", as_hyper(sigma_w, what="sigma_w", nonnegative=True))
        object.__setattr__(self, "sigma_b", as_hyper(sigma_b, what="sigma_b", nonnegative=True))

    def apply(self, s):
        return s.close(self.sigma_w, self.sigma_b)

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """A stacked linear map on the last axis, fan_in = shape[-1], fan_out = ``ctx.width``."""
        from ..torch.modules import StackedLinear

        sw = ctx.value(self.sigma_w, "Linear sigma_w")
        sb = ctx.value(self.sigma_b, "Linear sigma_b")
        out = (*shape[:-1], ctx.width)
        return StackedLinear.init(ctx, shape[-1], ctx.width, sw, sb), out
