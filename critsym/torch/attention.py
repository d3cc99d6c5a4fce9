r"""Torch forward maps of the :class:`~critsym.Attention` operator.

Attention acts across the tokens of a (tokens, channels) state:

    y_a = W_O Σ_b A_ab W_V x_b       (plus biases b_V, b_O when σ_b_v, σ_b_o > 0),

with W_V, W_O ~ N(0, σ_v²/fan_in), N(0, σ_o²/width) Linear maps along the channels and an
n × n row-stochastic attention matrix A set by the regime:

* ``"uniform"``: A = 11ᵀ/n (W_Q = 0): every token receives the token mean of the values;
* ``"deterministic"``: A = softmax(β·G) row by row, G_ab = x_a·x_b/C the token Gram matrix of
  the attention input (C its channels), β = σ_QK²/τ (:func:`logit_scale`).  This is the
  infinite-width limit of 1/d_k-scaled logits; its diagonal is A_aa = 1/(1 + (n−1)e^{−β(q̃−p̃)})
  in an exchangeable state (q̃ = E x², p̃ = cross-token covariance).  The logits depend on x, so
  the softmax path is part of the Jacobian (an O(1/C) contribution to the APJN);
* ``"standard"``: logits (W_Q^h x_a)·(W_K^h x_b)/(τ√d_h) per head h (d_h = width/heads), with
  independent W_Q, W_K ~ N(0, σ_QK/fan_in) each (σ_Q = σ_K = √σ_QK, so σ_QK = σ_Q σ_K); the
  attention matrix is random, one per head, and the values are split over the heads.

:func:`stacked_attention` builds it for ``n_nets`` stacked networks (inputs
``(n_nets, *batch, tokens, channels)``), :func:`export_attention` as a plain module on
``(batch, tokens, channels)``: :class:`MultiheadSelfAttention` (``nn.MultiheadAttention``)
for the uniform (zero query/key weights) and standard regimes, :class:`GramSelfAttention`
(``F.scaled_dot_product_attention`` with q = k = x and scale β/C) for the deterministic one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SimulationError
from .modules import StackedLinear

REGIMES = ("uniform", "deterministic", "standard")


def _field(op, ctx, name: str, default: float = 0.0) -> float:
    v = getattr(op, name, None)
    return default if v is None else ctx.value(v, f"Attention {name}")


def _tau(op, ctx) -> float:
    tau = _field(op, ctx, "tau", 1.0)
    if not (math.isfinite(tau) and tau > 0):
        raise SimulationError(f"Attention tau must be a finite number > 0, got {tau!r}")
    return tau


def logit_scale(op, ctx) -> float:
    r"""β of the deterministic regime, logits = β·x_a·x_b/C: the operator's ``beta``
    expression when it has one, else σ_QK²/τ."""
    own = getattr(op, "beta", None)
    if own is not None:
        return ctx.value(own, "Attention beta = sigma_qk**2/tau")
    sqk = _field(op, ctx, "sigma_qk")
    return sqk * sqk / _tau(op, ctx)


def _regime(op) -> str:
    regime = getattr(op, "regime", None)
    if regime not in REGIMES:
        raise SimulationError(f"Attention regime must be one of {REGIMES}, got {regime!r}")
    return regime


def _heads(op, width: int) -> int:
    h = getattr(op, "heads", 1)
    h = 1 if h is None else int(h)
    if h < 1 or width % h:
        raise SimulationError(f"Attention heads={h} must divide the width {width} (each head "
                              "takes width/heads channels); pick a width that is a multiple")
    return h


def _tokens(op, shape: tuple[int, ...]) -> int:
    if len(shape) < 2:
        raise SimulationError(
            f"Attention needs a feature shape (tokens, channels), got {shape}; simulate it with "
            "in_shape=(tokens, channels) (critsym.simulate_maps(arch, (tokens, channels), ...))")
    n = getattr(op, "n_tokens", None)
    if n is not None and int(n) != shape[-2]:
        raise SimulationError(f"Attention(n_tokens={n}) got inputs with {shape[-2]} tokens; "
                              f"build it with shape ({n}, channels)")
    return shape[-2]


class StackedAttention(nn.Module):
    r"""y = W_O · A · W_V x for ``n_nets`` stacked networks on (n_nets, *batch, T, C).

    ``regime`` sets A (see the module docstring); ``op`` is the critsym operator it computes.
    ``softmax_path = False`` (an attribute) treats A as a constant of the input in derivatives
    (the logits are computed from a detached input): the Jacobian of the value path alone,
    which the infinite-width theory of the deterministic regime describes.
    """

    def __init__(self, regime: str, value: StackedLinear, output: StackedLinear, *,
                 query: StackedLinear | None = None, key: StackedLinear | None = None,
                 heads: int = 1, beta: float = 0.0, tau: float = 1.0, op: object = None):
        super().__init__()
        self.regime, self.heads, self.beta, self.op = regime, int(heads), float(beta), op
        self.tau = float(tau)
        self.softmax_path = True
        self.value, self.output = value, output
        self.query, self.key = query, key

    def attention_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """A: (n, *batch, T, T) (deterministic) or (n, *batch, heads, T, T) (standard)."""
        if not self.softmax_path:
            x = x.detach()
        if self.regime == "deterministic":
            gram = x @ x.transpose(-1, -2) / x.shape[-1]
            return torch.softmax(self.beta * gram, dim=-1)
        if self.regime == "standard":
            q, k = self._split(self.query(x)), self._split(self.key(x))
            scale = 1.0 / (self.tau * math.sqrt(q.shape[-1]))
            return torch.softmax(scale * (q @ k.transpose(-1, -2)), dim=-1)
        T = x.shape[-2]
        return torch.full((*x.shape[:-2], T, T), 1.0 / T, dtype=x.dtype, device=x.device)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """(..., T, H·d_h) ↦ (..., H, T, d_h)."""
        return t.reshape(*t.shape[:-1], self.heads, -1).transpose(-2, -3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value(x)
        if self.regime == "uniform":  # A = 11ᵀ/n: every token gets the token mean
            return self.output(v.mean(-2, keepdim=True)).expand(*v.shape[:-1], -1)
        A = self.attention_matrix(x)
        if self.regime == "deterministic":
            return self.output(A @ v)
        y = (A @ self._split(v)).transpose(-2, -3)
        return self.output(y.reshape(*y.shape[:-2], -1))

    def extra_repr(self) -> str:
        return f"regime={self.regime}, heads={self.heads}" + \
            (f", beta={self.beta:g}" if self.regime == "deterministic" else "")


def stacked_attention(op, ctx, shape: tuple[int, ...]):
    r"""The forward map of ``op`` (an Attention operator) for ``ctx.n_nets`` networks.

    Inputs (n_nets, *batch, T, C) with ``shape`` = (…, T, C); output (…, T, ``ctx.width``).
    Weights, drawn in this order from each network's generator: W_Q, W_K (standard regime:
    N(0, σ_QK/C), no bias), W_V ~ N(0, σ_v²/C), b_V ~ N(0, σ_b_v²), W_O ~ N(0, σ_o²/width),
    b_O ~ N(0, σ_b_o²).  Returns ``(StackedAttention, out_shape)``.
    """
    regime = _regime(op)
    shape = tuple(int(s) for s in shape)
    _tokens(op, shape)
    C, width = shape[-1], ctx.width
    heads = _heads(op, width)
    query = key = None
    beta, tau = 0.0, 1.0
    if regime == "standard":
        tau = _tau(op, ctx)
        s = math.sqrt(_field(op, ctx, "sigma_qk"))
        query = StackedLinear.init(ctx, C, width, s, 0.0)
        key = StackedLinear.init(ctx, C, width, s, 0.0)
    elif regime == "deterministic":
        beta = logit_scale(op, ctx)
    value = StackedLinear.init(ctx, C, width, _field(op, ctx, "sigma_v", 1.0),
                               _field(op, ctx, "sigma_b_v"))
    output = StackedLinear.init(ctx, width, width, _field(op, ctx, "sigma_o", 1.0),
                                _field(op, ctx, "sigma_b_o"))
    mod = StackedAttention(regime, value, output, query=query, key=key, heads=heads, beta=beta,
                           tau=tau, op=op)
    return mod, (*shape[:-1], width)


# ----------------------------------------------------------------------------- export
class MultiheadSelfAttention(nn.Module):
    r"""Self-attention x ↦ MHA(x, x, x) on (batch, T, E) with torch's ``nn.MultiheadAttention``
    (``batch_first=True``); ``regime`` records which critsym regime its weights realise
    ("uniform": zero query and key weights, so A = 11ᵀ/n exactly; "standard")."""

    def __init__(self, attn: nn.MultiheadAttention, regime: str):
        super().__init__()
        self.attn, self.regime = attn, regime

    @property
    def heads(self) -> int:
        return self.attn.num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]

    def parts(self) -> dict[str, torch.Tensor | None]:
        """The weights by role: query, key, value, output (rows = outputs) and their biases."""
        E = self.attn.embed_dim
        w = self.attn.in_proj_weight.detach()
        b = self.attn.in_proj_bias
        b = None if b is None else b.detach()
        ob = self.attn.out_proj.bias
        return dict(query=w[:E], key=w[E:2 * E], value=w[2 * E:],
                    output=self.attn.out_proj.weight.detach(),
                    query_bias=None if b is None else b[:E],
                    key_bias=None if b is None else b[E:2 * E],
                    value_bias=None if b is None else b[2 * E:],
                    output_bias=None if ob is None else ob.detach())

    def extra_repr(self) -> str:
        return f"regime={self.regime}"


class GramSelfAttention(nn.Module):
    r"""y = W_O · softmax(β·x xᵀ/C) · W_V x on (batch, T, C) (the deterministic regime), with
    ``F.scaled_dot_product_attention(x, x, W_V x, scale=β/C)``; ``heads`` is recorded only (all
    heads share the one deterministic attention matrix)."""

    def __init__(self, value: nn.Linear, output: nn.Linear, beta: float, heads: int = 1):
        super().__init__()
        self.value, self.output = value, output
        self.beta, self.heads, self.regime = float(beta), int(heads), "deterministic"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(x, x, self.value(x), scale=self.beta / x.shape[-1])
        return self.output(y)

    def parts(self) -> dict[str, torch.Tensor | None]:
        def det(t):
            return None if t is None else t.detach()

        return dict(query=None, key=None, value=det(self.value.weight),
                    output=det(self.output.weight), query_bias=None, key_bias=None,
                    value_bias=det(self.value.bias), output_bias=det(self.output.bias))

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, heads={self.heads}"


def _draw(ctx, t: torch.Tensor, scale: float) -> None:
    with torch.no_grad():
        t.copy_(torch.randn(t.shape, generator=ctx.generator, dtype=torch.float64) * scale)


def export_attention(op, ctx, fan: int):
    r"""A plain torch module computing ``op`` on (batch, T, fan) (see the module docstring),
    with weights from ``ctx.generator``: (module, ``ctx.width``).

    Uniform and standard: ``nn.MultiheadAttention(fan, heads, batch_first=True)`` (needs
    fan = width); in_proj rows [W_Q; W_K; W_V] with W_Q = W_K = 0 (uniform) or
    N(0, σ_QK/fan) each, W_Q divided by τ (standard), W_V ~ N(0, σ_v²/fan), out_proj
    W_O ~ N(0, σ_o²/width); biases (only when σ_b_v or σ_b_o > 0) zero for Q, K.  Deterministic:
    :class:`GramSelfAttention`.
    """
    regime = _regime(op)
    width = int(ctx.width)
    heads = _heads(op, width)
    sv, so = _field(op, ctx, "sigma_v", 1.0), _field(op, ctx, "sigma_o", 1.0)
    sbv, sbo = _field(op, ctx, "sigma_b_v"), _field(op, ctx, "sigma_b_o")
    bias = sbv > 0 or sbo > 0
    if regime == "deterministic":
        value = ctx.init(nn.Linear(fan, width, bias=bias, dtype=ctx.dtype), sv, sbv, fan)
        output = ctx.init(nn.Linear(width, width, bias=bias, dtype=ctx.dtype), so, sbo, width)
        return GramSelfAttention(value, output, logit_scale(op, ctx), heads), width
    if fan != width:
        raise SimulationError(
            f"Attention exports as nn.MultiheadAttention, which keeps the width: its input has "
            f"{fan} channels but the width is {width}; put a Linear before it to map {fan} -> "
            f"{width}")
    attn = nn.MultiheadAttention(width, heads, bias=bias, batch_first=True, dtype=ctx.dtype)
    E = width
    w = attn.in_proj_weight
    with torch.no_grad():
        w.zero_()
        if regime == "standard":
            s = math.sqrt(_field(op, ctx, "sigma_qk")) / math.sqrt(fan)
            _draw(ctx, w[:E], s / _tau(op, ctx))  # MHA's logits have no τ: W_Q carries 1/τ
            _draw(ctx, w[E:2 * E], s)
        _draw(ctx, w[2 * E:], sv / math.sqrt(fan))
        _draw(ctx, attn.out_proj.weight, so / math.sqrt(width))
        if bias:
            attn.in_proj_bias.zero_()
            _draw(ctx, attn.in_proj_bias[2 * E:], sbv)
            _draw(ctx, attn.out_proj.bias, sbo)
    return MultiheadSelfAttention(attn, regime).eval(), width
