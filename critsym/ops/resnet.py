r"""Residual blocks with a two-layer branch (MLP or convolutional ResNet blocks).

* :func:`two_layer_block` — a residual block with a two-layer branch, Linear–act–Linear or
  Conv–act–Conv, with LayerNorm before each activation ("pre"), after it ("post") or none;
* :func:`resnet_block` — the partial-Jacobian paper's ResNet block
  LN → relu → conv3×3 → LN → relu → conv3×3, output + μ·identity.
"""

from __future__ import annotations

from ..errors import ArchitectureError
from ..symbols import mu as _mu
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .activation import Act
from .base import Op
from .contract import builtin_block
from .conv import Conv
from .linear import Linear
from .norm import LayerNorm
from .residual import Residual


def _act(act) -> Act:
    return act if isinstance(act, Act) else Act(act)


@builtin_block(dict(sigma_w=1.5, sigma_b=0.1, mu=0.5), act="relu", layernorm="post")
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


@builtin_block(dict(sigma_w=1.4, sigma_b=0.1, mu=1), shape=(5, 5, 8))
def resnet_block(mu: object = _mu, sigma_w: object = _sw, sigma_b: object = _sb,
                 act: str | Act = "relu", kernel_size: int = 3,
                 padding: str = "circular") -> Op:
    """The paper's ResNet block: LN → relu → conv → LN → relu → conv, + μ·identity."""
    return two_layer_block("conv", act, "pre", mu, sigma_w, sigma_b, kernel_size, padding)
