r"""Constructors for real-architecture blocks, written from the ordinary operators.

* :func:`two_layer_block` — a residual block with a two-layer branch, Linear–act–Linear or
  Conv–act–Conv, with LayerNorm before each activation ("pre"), after it ("post") or none;
* :func:`resnet_block` — the partial-Jacobian paper's ResNet block
  LN → relu → conv3×3 → LN → relu → conv3×3, output + μ·identity;
* :func:`mixer_block` — an MLP-Mixer block: x ← μx + TokenMLP(LN(x)), x ← μx + ChannelMLP(LN(x)),
  the token MLP acting across patches through :class:`~critsym.ops.axes.Transpose`.
"""

from __future__ import annotations

from ..errors import ArchitectureError
from ..symbols import mu as _mu
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .activation import Act
from .axes import Transpose
from .base import Op
from .conv import Conv
from .linear import Linear
from .norm import LayerNorm
from .residual import Residual


def _act(act) -> Act:
    return act if isinstance(act, Act) else Act(act)


def two_layer_block(kind: str = "linear", act: str | Act = "relu", layernorm: str | None = "pre",
                    mu: object = _mu, sigma_w: object = _sw, sigma_b: object = _sb,
                    kernel_size: int = 3, padding: str = "circular", dim: int = 2) -> Op:
    """Residual(μ) around [LN] → φ → [LN] → W → [LN] → φ → [LN] → W (W = Linear or Conv).

    ``layernorm="pre"`` puts LayerNorm before each activation, ``"post"`` after it, ``None``
    omits it; ``mu=None`` returns the bare branch.
    """
    if kind not in ("linear", "conv"):
        raise ArchitectureError(f"kind must be 'linear' or 'conv', got {kind!r}")
    if layernorm not in (None, "pre", "post"):
        raise ArchitectureError(f"layernorm must be None, 'pre' or 'post', got {layernorm!r}")

    def W():
        if kind == "linear":
            return Linear(sigma_w, sigma_b)
        return Conv(kernel_size, sigma_w, sigma_b, padding=padding, dim=dim)

    def layer():
        a = _act(act)
        if layernorm == "pre":
            return LayerNorm() >> a >> W()
        if layernorm == "post":
            return a >> LayerNorm() >> W()
        return a >> W()

    branch = layer() >> layer()
    return branch if mu is None else Residual(branch, mu)


def resnet_block(mu: object = _mu, sigma_w: object = _sw, sigma_b: object = _sb,
                 act: str | Act = "relu", kernel_size: int = 3,
                 padding: str = "circular") -> Op:
    """The paper's ResNet block: LN → relu → conv → LN → relu → conv, + μ·identity."""
    return two_layer_block("conv", act, "pre", mu, sigma_w, sigma_b, kernel_size, padding)


def mixer_block(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                sigma_b: object = _sb) -> Op:
    """An MLP-Mixer block on a tokens × channels state (channels last)::

        Residual(LN >> Transpose >> Linear >> φ >> Linear >> Transpose, μ)   # token mixing
        >> Residual(LN >> Linear >> φ >> Linear, μ)                          # channel mixing
    """
    return token_mixing(act, mu, sigma_w, sigma_b) >> channel_mixing(act, mu, sigma_w, sigma_b)


def token_mixing(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                 sigma_b: object = _sb) -> Op:
    """x ← μx + W2 φ(W1 LN(x)ᵀ)ᵀ: the MLP acts across tokens, LN over channels."""
    a = _act(act)
    return Residual(LayerNorm() >> Transpose() >> Linear(sigma_w, sigma_b) >> a
                    >> Linear(sigma_w, sigma_b) >> Transpose(), mu)


def channel_mixing(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                   sigma_b: object = _sb) -> Op:
    """x ← μx + W2 φ(W1 LN(x)): the MLP acts across channels."""
    a = _act(act)
    return Residual(LayerNorm() >> Linear(sigma_w, sigma_b) >> a >> Linear(sigma_w, sigma_b), mu)
