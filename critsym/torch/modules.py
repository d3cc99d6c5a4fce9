r"""Torch modules for *stacks* of independent networks, and the build context.

Every module here acts on tensors of shape ``(n_nets, *batch, *features)``: axis 0 indexes
independent networks, each with its own weights, so one batched matmul runs all of them.
Operators (:mod:`critsym.ops`) create these modules in their ``to_torch(ctx, shape)`` method;
new operators only need to implement that method (and may define their own modules).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy as sp
import torch
from torch import nn

from ..errors import SimulationError


@dataclass
class BuildContext:
    """What an operator needs to build its forward map.

    ``n_nets`` independent networks, numeric hyperparameter ``values`` (name → float), the
    hidden ``width``, one ``torch.Generator`` per network (so a network's weights do not depend on
    how the networks are chunked), ``dtype``, ``device`` and the LayerNorm ``ln_eps``.
    """

    n_nets: int
    width: int
    values: dict[str, float]
    generators: Sequence[torch.Generator]
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    ln_eps: float = 1e-12

    def value(self, expr: object, what: str = "hyperparameter") -> float:
        """The numeric value of a hyperparameter expression (its symbols from ``values``)."""
        e = sp.sympify(expr)
        missing = sorted(s.name for s in e.free_symbols if s.name not in self.values)
        if missing:
            raise SimulationError(
                f"no numeric value for {missing} (needed by {what}); pass them as keyword "
                f"arguments, e.g. {', '.join(f'{m}=1.0' for m in missing)}"
            )
        v = e.subs({s: self.values[s.name] for s in e.free_symbols})
        try:
            out = float(v)
        except TypeError:
            raise SimulationError(f"{what} = {e} does not evaluate to a real number") from None
        return out

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal numbers of shape ``(n_nets, *shape)``, network i from generator i."""
        return torch.stack([
            torch.randn(*shape, generator=g, dtype=self.dtype, device=self.device)
            for g in self.generators
        ])


class _StackedLinearFn(torch.autograd.Function):
    r"""y = x Wᵀ + b per network, differentiable in x only (the weights are constants of the
    ensemble).  Forward mode: ẏ = ẋ Wᵀ; reverse mode: x̄ = ȳ W.  (Torch's generic forward-mode
    rule for ``bmm`` also materializes a zero tangent for W, which made a JVP ~10× a forward pass
    at width 4096; this rule keeps it at ~2×.)"""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, lin):  # x: (n, M, fan_in)
        return torch.baddbmm(lin.bias.unsqueeze(1), x, lin.weight.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.lin = inputs[1]

    @staticmethod
    def jvp(ctx, x_t, _):
        return torch.bmm(x_t, ctx.lin.weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        return torch.bmm(grad, ctx.lin.weight), None


class StackedLinear(nn.Module):
    r"""h_i = Σ_j W_ij x_j + b_i per network, W_ij ~ N(0, σ_w²/fan_in), b_i ~ N(0, σ_b²)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # (n, out, in)
        self.bias = nn.Parameter(bias, requires_grad=False)  # (n, out)

    @classmethod
    def init(cls, ctx: BuildContext, fan_in: int, fan_out: int, sigma_w: float,
             sigma_b: float) -> StackedLinear:
        w = ctx.randn(fan_out, fan_in) * (sigma_w / fan_in**0.5)
        b = ctx.randn(fan_out) * sigma_b
        return cls(w, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, fan_in = x.shape[0], x.shape[-1]
        y = _StackedLinearFn.apply(x.reshape(n, -1, fan_in), self)
        return y.reshape(*x.shape[:-1], self.weight.shape[1])


class Elementwise(nn.Module):
    """x ↦ φ(x) elementwise."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str = "phi"):
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class NeuronLayerNorm(nn.Module):
    r"""x ↦ (x − mean(x)) / sqrt(var(x) + eps) over the last axis (γ = 1, β = 0; biased var)."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(-1, keepdim=True)
        c = x - m
        return c / torch.sqrt((c * c).mean(-1, keepdim=True) + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


class ResidualSum(nn.Module):
    """x ↦ μ·x + branch(x)."""

    def __init__(self, branch: nn.Module, mu: float):
        super().__init__()
        self.branch = branch
        self.mu = mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu * x + self.branch(x)

    def extra_repr(self) -> str:
        return f"mu={self.mu:g}"


class Chain(nn.Sequential):
    """Operators applied left to right."""
