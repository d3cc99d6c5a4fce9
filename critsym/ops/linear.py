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
    latex_name = r"W"
    torch_types = ("torch.nn.Linear", "critsym.torch.modules.StackedLinear",
                   "transformers.pytorch_utils.Conv1D")
    graph_targets = ("torch.nn.functional.linear", "torch.ops.aten.linear.default")

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

    def export(self, ctx, fan: int):
        """``nn.Linear(fan, width)``, W ~ N(0, σ_w²/fan), b ~ N(0, σ_b²)."""
        from torch import nn

        m = nn.Linear(fan, ctx.width, dtype=ctx.dtype)
        ctx.init(m, ctx.value(self.sigma_w, "Linear sigma_w"),
                 ctx.value(self.sigma_b, "Linear sigma_b"), fan)
        return m, ctx.width

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """σ̂_w, σ̂_b from the weights (stacked critsym weights pool over the networks;
        Hugging Face's ``Conv1D``, GPT-2's linear layer, stores W transposed: (in, out))."""
        w = module.weight
        if w.dim() == 3:  # StackedLinear: (n_nets, out, in)
            w = w.reshape(-1, w.shape[-1])
        elif type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
            w = w.t()
        sw, sb = reader.weights(path, "Linear", w, module.bias)
        return Linear(sw, sb)

    @classmethod
    def read_graph(cls, call, reader, path: str) -> Op:
        """``F.linear(x, W, b)`` with W, b parameters of the model."""
        from ..errors import UnsupportedModuleError

        w, b = call.parameter(1, "weight"), call.parameter(2, "bias")
        if w is None:
            raise UnsupportedModuleError(
                f"{reader.label(path)!r}: {call.name} with a weight that is not a parameter "
                "of the model (computed in forward); critsym reads weights it can estimate")
        sw, sb = reader.weights(path, "Linear", w, b)
        return Linear(sw, sb)

    def symbolic(self) -> Op:
        """Linear(σ_w, σ_b) with the symbols (σ_b = 0 kept for a layer without bias)."""
        return Linear(_sw, _sb if self.sigma_b != 0 else 0)

    @classmethod
    def examples(cls):
        from .base import operators
        from .contract import Example

        # Act through the registry (every ops module is loaded by critsym.ops): no import cycle
        # with ops.activation, whose examples use Linear
        Act = operators()["Act"]
        return (Example(Linear(), dict(sigma_w=0.9, sigma_b=0.3), name="Linear"),
                Example(Act("tanh") >> Linear(), dict(sigma_w=1.3, sigma_b=0.2),
                        name="Act(tanh) >> Linear"))
