"""Balanced residual block (sign-balanced two-branch ReLU residual)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..symbols import as_hyper
from ..symbols import sigma_w as _sw
from .activation import Act
from .base import Op

_RELU = Act("relu")


@dataclass(frozen=True, init=False)
class BalancedResidual(Op):
    r"""h ↦ h + W₊ φ(h) + W₋ φ(−h), φ = relu, W± ~ N(0, σ_w²/(2n)) independent, no biases.

    Since φ(h)² + φ(−h)² = h², the branch variance is (σ_w²/2) K whatever the sign pattern:
    K' = (1 + σ_w²/2) K and χ_J = 1 + (σ_w²/2)(E[φ'(h)²] + E[φ'(−h)²]) = 1 + σ_w²/2 at every K.
    At finite width the norm increments are i.i.d. (no hypoactivation, no interlayer correlation):
    ln(|h'|²/|h|²) ~ ln((g/n) χ'²_n(n/g)), g = σ_w²/2 (see :mod:`critsym.finite_width`).
    With c = σ_w² this is the balanced counterpart of ``Residual(Act("relu") >> Linear(σ_w),
    mu=1)``.
    """

    sigma_w: sp.Expr
    hyper_fields = ("sigma_w",)
    latex_name = r"\mathrm{Res}_\pm"
    torch_types = ("critsym.torch.modules.BalancedResidualModule",)

    def __init__(self, sigma_w: object = _sw):
        object.__setattr__(self, "sigma_w", as_hyper(sigma_w, what="sigma_w", nonnegative=True))

    def apply(self, s):
        half = self.sigma_w / sp.sqrt(2)
        plus = s.map(lambda e, side: _RELU.phi(e)).close(half, sp.S.Zero)
        minus = s.map(lambda e, side: _RELU.phi(-e)).close(half, sp.S.Zero)
        return s.combine(plus, 1, 1).combine(minus, 1, 1)

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """h + W₊ relu(h) + W₋ relu(−h), W± ~ N(0, σ_w²/(2 fan_in)), no biases."""
        from ..torch.modules import BalancedResidualModule, StackedLinear

        half = ctx.value(self.sigma_w, "BalancedResidual sigma_w") / 2**0.5
        n = shape[-1]
        plus = StackedLinear.init(ctx, n, n, half, 0.0)
        minus = StackedLinear.init(ctx, n, n, half, 0.0)
        return BalancedResidualModule(plus, minus), shape

    def export(self, ctx, fan: int):
        """:class:`BalancedResidualModule` with two bias-free ``nn.Linear(fan, fan)``."""
        from torch import nn

        from ..torch.modules import BalancedResidualModule

        half = ctx.value(self.sigma_w, "BalancedResidual sigma_w") / 2**0.5
        plus, minus = (ctx.init(nn.Linear(fan, fan, bias=False, dtype=ctx.dtype), half, 0.0,
                                fan) for _ in range(2))
        return BalancedResidualModule(plus, minus), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """σ̂_w = √2 · (the scale of W±), pooled over both halves."""
        import torch

        w = torch.cat([module.plus.weight, module.minus.weight], dim=-2)
        w = w.reshape(-1, w.shape[-1])  # stacked critsym weights pool over the networks
        sw, _ = reader.weights(path, "BalancedResidual", w * 2**0.5, None)
        return BalancedResidual(sw)

    def symbolic(self) -> Op:
        return BalancedResidual(_sw)

    @classmethod
    def examples(cls):
        from .contract import Example

        return (Example(BalancedResidual(), dict(sigma_w=1.2), name="BalancedResidual"),)
