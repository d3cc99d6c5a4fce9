"""Residual connection."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..symbols import as_hyper
from ..symbols import mu as _mu
from .base import Op, as_op


@dataclass(frozen=True, init=False)
class Residual(Op):
    r"""h ↦ μ·h + branch(h).

    At initialization the branch's last weights are independent of h, so when the branch ends in
    a Linear layer K' = μ²K + K_branch and χ_J = μ² + χ_branch (cross terms vanish); a branch
    that does not end in a Linear is summed as an expression and the expectation is taken of
    the whole (the fold merges the sum only where it is affine in Gaussian variables).
    """

    branch: Op
    mu: sp.Expr
    hyper_fields = ("mu",)

    def __init__(self, branch: Op, mu: object = _mu):
        object.__setattr__(self, "branch", as_op(branch, "Residual branch"))
        object.__setattr__(self, "mu", as_hyper(mu, what="mu"))

    def children(self):
        return (self.branch,)

    def apply(self, s):
        return s.combine(self.branch.apply(s), self.mu, 1)

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """μ·x + branch(x); the branch must keep the shape."""
        from ..errors import SimulationError
        from ..torch.modules import ResidualSum

        branch, out = self.branch.to_torch(ctx, shape)
        if tuple(out) != tuple(shape):
            raise SimulationError(
                f"residual branch maps shape {shape} to {out}; a residual sum needs equal "
                f"shapes (set the width equal to the input width)"
            )
        return ResidualSum(branch, ctx.value(self.mu, "Residual mu")), shape
