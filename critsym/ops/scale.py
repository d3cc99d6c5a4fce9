r"""A constant multiplier: h ↦ g·h (the width multipliers m^{-a_l} of abc-parameterizations)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..symbols import as_hyper
from .base import Op


@dataclass(frozen=True, init=False)
class Scale(Op):
    r"""h ↦ g·h, a fixed (not trained) multiplier.

    Fold rule: the expression is multiplied by g; an affine expression merges into one
    Gaussian variable with K' = g²K, K'_12 = g²K_12, J' = g²J and offsets scaled by g².
    After a Linear layer, ``Linear(σ_w, σ_b) >> Scale(g)`` has the statistics of
    ``Linear(gσ_w, gσ_b)`` at initialization; the two differ in training, where the multiplier
    is not a weight (abc-parameterizations, :mod:`critsym.parameterization`).
    """

    gain: sp.Expr
    hyper_fields = ("gain",)
    latex_name = r"g"
    torch_types = ("critsym.torch.modules.Gain",)

    def __init__(self, gain: object = 1):
        object.__setattr__(self, "gain", as_hyper(gain, what="Scale gain"))

    def apply(self, s):
        return s.map(lambda e, side: self.gain * e).canonical()

    def latex(self) -> str:
        return rf"{sp.latex(self.gain)}\,h"

    def to_torch(self, ctx, shape: tuple[int, ...]):
        from ..torch.modules import Gain

        return Gain(ctx.value(self.gain, "Scale gain")), shape

    def export(self, ctx, fan: int):
        from ..torch.modules import Gain

        return Gain(ctx.value(self.gain, "Scale gain")), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        return Scale(float(module.gain))

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .linear import Linear

        return (Example(Act("tanh") >> Linear() >> Scale(0.75), dict(sigma_w=1.6, sigma_b=0.3),
                        name="Act(tanh) >> Linear >> Scale"),)
