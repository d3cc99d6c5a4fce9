"""Normalization operators."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import UnsupportedModuleError
from .base import Op

#: fewest channels per group for which a GroupNorm is read as its mean field (GroupNorm(1, C))
MIN_GROUP_CHANNELS = 4


@dataclass(frozen=True)
class LayerNorm(Op):
    r"""x ↦ (x - mean_i x_i) / std_i(x_i) over the neurons (γ = 1, β = 0 at initialization).

    At infinite width the neuron average is the expectation over the layer's Gaussian variables,
    so LN(e) = (e - E[e]) / sqrt(E[e²] - E[e]²) with constants m, s: its Jacobian
    (1/s)(I - 11ᵀ/N - x̂x̂ᵀ/N) contributes the factor 1/s² to the APJN (the rank-one
    projections are O(1/N)).  Before an activation this is LN on preactivations, after it LN on
    activations (the mean of φ is then subtracted).
    """

    latex_name = r"\mathrm{LN}"
    torch_types = ("torch.nn.LayerNorm", "torch.nn.GroupNorm",
                   "critsym.torch.modules.NeuronLayerNorm",
                   "critsym.torch.modules.ChannelsFirstLayerNorm")
    graph_targets = ("torch.nn.functional.layer_norm", "torch.ops.aten.layer_norm.default")

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

    def export(self, ctx, fan: int):
        """``nn.LayerNorm(fan)`` (eps 1e-12); next to convolutions (channels-first maps)
        ``nn.GroupNorm(1, C)`` or a per-position channel LayerNorm."""
        from torch import nn

        from ..torch.modules import ChannelsFirstLayerNorm

        if not ctx.channels_first:
            return nn.LayerNorm(fan, eps=1e-12, dtype=ctx.dtype), fan
        if ctx.channels_first_norm == "groupnorm":
            return nn.GroupNorm(1, fan, eps=1e-12, dtype=ctx.dtype), fan
        return ChannelsFirstLayerNorm(1e-12), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """LayerNorm / GroupNorm(1, C) at initialization (γ = 1, β = 0)."""
        import torch
        from torch import nn

        name = reader.label(path)
        if isinstance(module, nn.GroupNorm) and module.num_groups != 1:
            per = module.num_channels // module.num_groups
            if per < MIN_GROUP_CHANNELS:
                raise UnsupportedModuleError(
                    f"submodule {name!r}: GroupNorm with {module.num_groups} groups of {per} "
                    f"channels; its mean field needs groups of at least {MIN_GROUP_CHANNELS} "
                    "channels (use fewer groups, or GroupNorm(1, C))")
            from .contract import approximate

            approximate(reader, path, (
                f"GroupNorm({module.num_groups}, {module.num_channels}): read as its mean "
                f"field, GroupNorm(1, C) (each group's statistics over {per} channels equal "
                "the layer's as the channels per group grow; corrections O(groups/C))"))
        w = getattr(module, "weight", None)
        b = getattr(module, "bias", None)
        if (w is not None and not torch.all(w == 1)) or (b is not None and not torch.all(b == 0)):
            raise UnsupportedModuleError(
                f"submodule {name!r}: {type(module).__name__} with γ != 1 or β != 0 (not at its "
                "initialization); the theory assumes γ = 1, β = 0")
        return LayerNorm()

    @classmethod
    def read_graph(cls, call, reader, path: str) -> Op:
        """``F.layer_norm(x, shape, γ, β)`` over the last axis, γ = 1, β = 0 (or none)."""
        import torch

        name = reader.label(path)
        shape = call.argument(1, "normalized_shape")
        if shape is not None and len(tuple(shape)) != 1:
            raise UnsupportedModuleError(
                f"{name!r}: layer_norm over {len(tuple(shape))} axes; the theory normalises "
                "over the last axis (the neurons)")
        w, b = call.parameter(2, "weight"), call.parameter(3, "bias")
        if (w is not None and not torch.all(w == 1)) or (b is not None and not torch.all(b == 0)):
            raise UnsupportedModuleError(
                f"{name!r}: layer_norm with γ != 1 or β != 0 (not at its initialization); the "
                "theory assumes γ = 1, β = 0")
        return LayerNorm()

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .linear import Linear

        hp = dict(sigma_w=1.3, sigma_b=0.2)
        return (Example(LayerNorm() >> Act("tanh") >> Linear(), hp, name="LN-pre tanh"),
                Example(Act("relu") >> LayerNorm() >> Linear(), hp, name="LN-post relu"))
