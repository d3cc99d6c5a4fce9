"""Normalization operators."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .base import Op


@dataclass(frozen=True)
class LayerNorm(Op):
    r"""x ↦ (x - mean_i x_i) / std_i(x_i) over the neurons (γ = 1, β = 0 at initialization).

    At infinite width the neuron average is the expectation over the layer's Gaussian variables,
    so LN(e) = (e - E[e]) / sqrt(E[e²] - E[e]²) with constants m, s: its Jacobian
    (1/s)(I - 11ᵀ/N - x̂x̂ᵀ/N) contributes the factor 1/s² to the APJN (the rank-one
    projections are O(1/N)).  Before an activation this is LN on preactivations, after it LN on
    activations (the mean of φ is then subtracted).
    """

    def apply(self, s):
        if s.axes:  # rows × neurons state: normalise over the neurons (critsym.ops.axes)
            from .axes import layernorm_axes

            return layernorm_axes(s, self._apply_single_axis)
        return self._apply_single_axis(s)

    def _apply_single_axis(self, s):
        stats = {}
        for side, e in (("a", s.expr_a), ("b", s.expr_b)):
            m_val = s.E(e, side)
            s, m = s.statistic(f"m{side}", m_val, real=True)
            s, sd = s.statistic(f"s{side}", sp.sqrt(s.E(e**2, side) - m**2), positive=True)
            stats[side] = (m, sd)
        return s.map(lambda e, side: (e - stats[side][0]) / stats[side][1]).canonical()

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """LayerNorm over the last axis (the neurons), γ = 1, β = 0, eps = ``ctx.ln_eps``."""
        from ..torch.modules import NeuronLayerNorm

        return NeuronLayerNorm(ctx.ln_eps), shape
