r"""Multi-axis states: the Transpose operator and LayerNorm over the neuron axis.

An MLP-Mixer acts on a tokens × channels array.  critsym writes it with the ordinary operators
plus :class:`Transpose`, which swaps the two axes, so that Linear / LayerNorm always act along
the last ("neuron") axis::

    token = Residual(LayerNorm() >> Transpose() >> Linear() >> Act("gelu") >> Linear()
                     >> Transpose(), mu)
    channel = Residual(LayerNorm() >> Linear() >> Act("gelu") >> Linear(), mu)
    mixer_block = token >> channel

Mean-field state (rows × neurons at infinite size, see :mod:`critsym.fold`): besides K, every
Gaussian variable carries the variance ``off`` of its per-row component (constant along the
neurons: the per-token offset O_T) and ``noff`` of its per-neuron component (constant along the
rows).  Rules:

* Linear along neurons: off' = 0, noff' = σ_w² E_N[(E[e|N])²] + σ_b²;
* Transpose: off ↔ noff;
* LayerNorm over neurons of a Gaussian variable g = g_row + rest:
  LN(g) = rest / s with s² = Var g − off (the std over neurons at a fixed row), so
  Var' = 1, off' = 0, noff' = noff / s², J' = J / s² (its rank-one projections are O(1/N)),
  and in a token state the cross-token overlap κ' = κ / s² as well;
  for two inputs a, b: Cov' = (Cov − off_ab)/(s_a s_b), noff'_ab = noff_ab/(s_a s_b);
  of a non-Gaussian expression without per-row parts: the single-axis rule.

For a Mixer token sub-block this gives (docs/theory.md#mlp-mixer-block, q = σ_w² + σ_b²)
K' = μ²K + σ_w² E_q[φ²] + σ_b², χ = μ² + σ_w⁴ E_q[φ'²] / (K − O_T),
O_T' = μ² O_T + Δ_T, Δ_T = σ_w² E_{b~N(0,σ_b²)}[m(b)²] + σ_b², m(b) = E_{g~N(0,σ_w²)} φ(g + b).

Approximation (stated, leading order): a per-row offset a_r mixed by a Linear along the neurons
gives a_r·w_n, a product of a row and a neuron variable; the fold counts it in the variance but
treats it as a fluctuation (conditionally Gaussian).  The resulting row-to-row spread of the
variance over neurons is left out; simulations of deep Mixers show a few-% effect from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import sympy as sp

from ..errors import DerivationError
from .base import Op


@dataclass(frozen=True)
class Transpose(Op):
    r"""Swap the two axes of a rows × neurons state (tokens ↔ channels in a Mixer).

    Fold rule: every variable's per-row and per-neuron component variances are exchanged;
    K and the APJN (normalised by the total number of entries) are unchanged.
    """

    multi_axis: ClassVar[bool] = True
    latex_name = r"\top"
    torch_types = ("critsym.torch.modules.SwapLastAxes", "critsym.torch.conv.SwapAxes")
    graph_targets = ("torch.transpose", "Tensor.transpose", "torch.permute", "Tensor.permute",
                     "torch.swapaxes", "Tensor.swapaxes", "Tensor.mT",
                     "torch.ops.aten.transpose.int", "torch.ops.aten.permute.default")

    def apply(self, s):
        if s.tokens:
            raise DerivationError(
                "Transpose in a token state (an architecture with Attention): the rows would "
                "stop being the tokens whose cross-token overlap the state carries; derive the "
                "attention and the transposed (Mixer) parts as separate architectures")
        if not s.axes:
            raise DerivationError(
                "Transpose needs a multi-axis state; derive the architecture with critsym.derive, "
                "which starts one whenever the architecture contains a Transpose"
            )
        swapped = {g.a: replace(g, off=g.noff, noff=g.off) for g in s.gvars}
        return replace(s, gvars=tuple(swapped[g.a] for g in s.gvars))

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """Swap the last two feature axes: (…, R, N) ↦ (…, N, R)."""
        from ..errors import SimulationError
        from ..torch.conv import SwapAxes

        if len(shape) < 2:
            raise SimulationError(
                f"Transpose needs a feature shape with two axes (tokens, channels), got "
                f"{shape}; simulate Mixer blocks with critsym.simulate_maps(arch, "
                "shape=(T, C), ...)"
            )
        return SwapAxes(), (*shape[:-2], shape[-1], shape[-2])

    def export(self, ctx, fan: int):
        from ..torch.modules import SwapLastAxes

        return SwapLastAxes(), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        return Transpose()

    @classmethod
    def read_graph(cls, call, reader, path: str) -> Op:
        """A transpose or permute that swaps the last two axes of a tensor of rank >= 3 (the
        batch axis first); any other axis order is refused (it moves the batch or
        regroups features)."""
        from ..errors import UnsupportedModuleError

        rank = call.rank
        if call.name.endswith("permute") or call.name.endswith("permute.default"):
            perm = call.argument(1, "dims")
            if perm is not None and not isinstance(perm, (list, tuple)):
                perm = call.args[1:]
            perm = [int(p) for p in perm] if perm is not None else None
            rank = len(perm) if perm is not None else rank
        elif call.name == "Tensor.mT":
            perm = None if rank is None else [*range(rank - 2), rank - 1, rank - 2]
        else:
            d0, d1 = call.argument(1, "dim0"), call.argument(2, "dim1")
            if rank is None and (d0 is None or d1 is None or min(d0, d1) >= 0):
                perm = None
            else:
                rank = rank if rank is not None else 3
                order = list(range(rank))
                a, b = int(d0) % rank, int(d1) % rank
                order[a], order[b] = order[b], order[a]
                perm = order
        if perm is not None and rank is not None and rank >= 3 and \
                [p % rank for p in perm] == [*range(rank - 2), rank - 1, rank - 2]:
            return Transpose()
        what = "an unknown rank (pass example_input=...)" if perm is None else f"order {perm}"
        raise UnsupportedModuleError(
            f"{reader.label(path)!r}: {call.name} with {what}; critsym reads a swap of the "
            "last two axes (tokens ↔ channels) with the batch axis first")

    @classmethod
    def probe_torch(cls, module, reader, path: str):
        """A parameter-free leaf module that transposes the last two axes (e.g. einops'
        ``Rearrange``), tested on a probe tensor."""
        from .contract import probe_leaf

        pair = probe_leaf(module)
        if pair is not None and pair[1].shape == (2, 5, 3) and bool(
                (pair[1] == pair[0].transpose(-1, -2)).all()):
            return Transpose()
        return None

    @classmethod
    def examples(cls):
        from dataclasses import replace

        from .contract import builtin_blocks

        # the Mixer block's own example (registered by ops.mixer), with its measured gap
        return (replace(builtin_blocks()["mixer_block"], name="mixer (Transpose)"),)


def uses_axes(arch: Op) -> bool:
    """True when the architecture contains an operator that needs a multi-axis state."""
    if getattr(type(arch), "multi_axis", False):
        return True
    return any(uses_axes(c) for c in arch.children())


def layernorm_axes(s, single_axis_rule):
    """LayerNorm over the neuron axis in a multi-axis state (see the module docstring)."""
    from ..fold import ZERO, GVar, Offsets

    s = s.canonical()
    present = s.present(s.expr_a, "a")
    if len(present) == 1 and s.expr_a == present[0].a and s.expr_b == present[0].b:
        g = present[0]
        sa, sb = sp.sqrt(g.var_a - g.off.a), sp.sqrt(g.var_b - g.off.b)
        if s.tokens:  # token states: the scales stay symbols until the end (compact maps)
            s, sa = s.statistic("sa", sa, positive=True)
            s, sb = s.statistic("sb", sb, positive=True)
        n = GVar.new(sp.S.One, sp.S.One, (g.cov - g.off.ab) / (sa * sb), g.jac / sa**2, ZERO,
                     Offsets(g.noff.a / sa**2, g.noff.b / sb**2, g.noff.ab / (sa * sb)),
                     None if g.kap is None else g.kap / sa**2)
        return replace(s, expr_a=n.a, expr_b=n.b, gvars=(n,))
    if any(not g.off.is_zero() for g in s.gvars):
        raise DerivationError(
            f"LayerNorm of the non-Gaussian expression {s.expr_a} with per-row offsets: the "
            "std over neurons then differs between rows, which this state does not carry. "
            "Apply LayerNorm to a Gaussian variable (after a Linear or a residual sum)."
        )
    return single_axis_rule(s)
