r"""Torch modules for *stacks* of independent networks, and the build context.

Every module here acts on tensors of shape ``(n_nets, *batch, *features)``: axis 0 indexes
independent networks, each with its own weights, so one batched matmul runs all of them.
Operators (:mod:`critsym.ops`) create these modules in their ``to_torch(ctx, shape)`` method;
new operators only need to implement that method (and may define their own modules).

The plain (unstacked) modules at the end are what operators export to
(``Op.export(ctx, fan)`` with an :class:`ExportContext`, see :func:`critsym.to_torch_model`) for
maps ``torch.nn`` has no module for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy as sp
import torch
from torch import nn

from ..errors import SimulationError


def numeric_value(expr: object, values: dict[str, float], what: str = "hyperparameter"
                  ) -> float:
    """The numeric value of a hyperparameter expression, its symbols taken from ``values``."""
    e = sp.sympify(expr)
    missing = sorted(s.name for s in e.free_symbols if s.name not in values)
    if missing:
        raise SimulationError(
            f"no numeric value for {missing} (needed by {what}); pass them as keyword "
            f"arguments, e.g. {', '.join(f'{m}=1.0' for m in missing)}"
        )
    v = e.subs({s: values[s.name] for s in e.free_symbols})
    try:
        out = float(v)
    except TypeError:
        raise SimulationError(f"{what} = {e} does not evaluate to a real number") from None
    return out


WEIGHT_LAWS = ("gaussian", "orthogonal")


@dataclass
class BuildContext:
    """What an operator needs to build its forward map.

    ``n_nets`` independent networks, numeric hyperparameter ``values`` (name → float), the
    hidden ``width``, one ``torch.Generator`` per network (so a network's weights do not depend on
    how the networks are chunked), ``dtype``, ``device``, the LayerNorm ``ln_eps`` and the
    ``weights`` law of square Linear maps: ``"gaussian"`` (W_ij ~ N(0, σ_w²/fan_in)) or
    ``"orthogonal"`` (W = σ_w·O, O Haar-orthogonal; kernel shaping's convention).
    """

    n_nets: int
    width: int
    values: dict[str, float]
    generators: Sequence[torch.Generator]
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    ln_eps: float = 1e-12
    weights: str = "gaussian"

    def __post_init__(self):
        if self.weights not in WEIGHT_LAWS:
            raise SimulationError(f"weights must be one of {WEIGHT_LAWS}, got {self.weights!r}")

    def value(self, expr: object, what: str = "hyperparameter") -> float:
        """The numeric value of a hyperparameter expression (its symbols from ``values``)."""
        return numeric_value(expr, self.values, what)

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        """``scale`` × standard normal numbers of shape ``(n_nets, *shape)``, network i from
        generator i; drawn and scaled in place in one preallocated tensor (no stacked copy)."""
        out = torch.empty(len(self.generators), *shape, dtype=self.dtype, device=self.device)
        for row, g in zip(out, self.generators, strict=True):
            row.normal_(generator=g)
        return out if scale == 1.0 else out.mul_(scale)


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
        if ctx.weights == "orthogonal":
            if fan_in != fan_out:
                raise SimulationError(f"orthogonal weights need a square layer, got "
                                      f"{fan_out}×{fan_in}; use weights='gaussian'")
            q, r = torch.linalg.qr(ctx.randn(fan_out, fan_in))
            w = sigma_w * q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        else:
            w = ctx.randn(fan_out, fan_in, scale=sigma_w / fan_in**0.5)
        b = ctx.randn(fan_out, scale=sigma_b)
        return cls(w, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, fan_in = x.shape[0], x.shape[-1]
        x3 = x.reshape(n, -1, fan_in)
        if self.weight.requires_grad:  # trained weights: torch's own rule, gradients in W too
            y = torch.baddbmm(self.bias.unsqueeze(1), x3, self.weight.transpose(1, 2))
        else:
            y = _StackedLinearFn.apply(x3, self)
        return y.reshape(*x.shape[:-1], self.weight.shape[1])


class Elementwise(nn.Module):
    """x ↦ φ(x) elementwise; ``op``: the critsym operator it computes (numeric), if any."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str = "phi",
                 op: object = None):
        super().__init__()
        self.fn = fn
        self.name = name
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class OpModule(nn.Module):
    """A stacked forward map ``fn`` computing the critsym operator ``op``, for operators that
    need no module class of their own; :func:`critsym.from_torch` maps it back to ``op``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], op: object):
        super().__init__()
        self.fn = fn
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.op)


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


class Gain(nn.Module):
    """x ↦ g·x with a fixed number g (stacked or plain: the same map)."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x

    def extra_repr(self) -> str:
        return f"gain={self.gain:g}"


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


class ParallelSum(nn.Module):
    """x ↦ Σ_k branch_k(x)."""

    def __init__(self, branches: Sequence[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out


# ----------------------------------------------------------------------------- export
@dataclass
class ExportContext:
    """What an operator needs to export a plain torch module (``Op.export(ctx, fan)``).

    Numeric hyperparameter ``values``, the ``width`` every Linear / Conv outputs, one
    ``generator`` for all weights, ``dtype``, ``channels_first`` (the model holds convolutions,
    so maps are (N, C, *spatial)) and ``channels_first_norm`` ("groupnorm" or "channel").
    """

    width: int
    values: dict[str, float]
    generator: torch.Generator
    dtype: torch.dtype = torch.float64
    channels_first: bool = False
    channels_first_norm: str = "groupnorm"

    def value(self, expr: object, what: str = "hyperparameter") -> float:
        return numeric_value(expr, self.values, what)

    def init(self, module: nn.Module, sigma_w: float, sigma_b: float, fan_in: int) -> nn.Module:
        """Draw ``module.weight`` ~ N(0, σ_w²/fan_in) and ``module.bias`` ~ N(0, σ_b²)."""
        with torch.no_grad():
            module.weight.copy_(torch.randn(module.weight.shape, generator=self.generator,
                                            dtype=torch.float64) * (sigma_w / math.sqrt(fan_in)))
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=self.generator,
                                              dtype=torch.float64) * sigma_b)
        return module


class ActModule(nn.Module):
    """An elementwise activation given by a critsym :class:`~critsym.Act` (numeric parameters),
    for activations without a torch module (erf, sin, custom and kernel-shaped φ)."""

    def __init__(self, act):
        super().__init__()
        self.act = act
        self.fn = act.torch_function({})

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.act)


class ResidualModule(nn.Module):
    """x ↦ μ·x + branch(x)."""

    def __init__(self, branch: nn.Module, mu: float):
        super().__init__()
        self.branch, self.mu = branch, float(mu)

    def forward(self, x):
        return self.mu * x + self.branch(x)

    def extra_repr(self) -> str:
        return f"mu={self.mu:g}"


class SwapLastAxes(nn.Module):
    """(…, A, B) ↦ (…, B, A)."""

    def forward(self, x):
        return x.transpose(-1, -2)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis 1 of an (N, C, *spatial) map (γ = 1, β = 0)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        m = x.mean(1, keepdim=True)
        c = x - m
        return c / torch.sqrt((c * c).mean(1, keepdim=True) + self.eps)


class BalancedResidualModule(nn.Module):
    """h ↦ h + W₊ relu(h) + W₋ relu(−h) with bias-free ``nn.Linear`` maps W±."""

    def __init__(self, plus: nn.Module, minus: nn.Module):
        super().__init__()
        self.plus, self.minus = plus, minus

    def forward(self, h):
        return h + self.plus(h.clamp(min=0)) + self.minus((-h).clamp(min=0))
