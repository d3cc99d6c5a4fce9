"""Convenience constructors for common blocks, and the generated derivation documents of the
real-architecture blocks (:mod:`critsym.ops.resnet`, :mod:`critsym.ops.mixer`)."""

from __future__ import annotations

from ..errors import ArchitectureError
from ..symbols import mu as _mu
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .activation import Act
from .base import Op
from .contract import builtin_block
from .linear import Linear
from .norm import LayerNorm
from .residual import Residual


@builtin_block(dict(sigma_w=1.3, sigma_b=0.2, mu=0.9), act="tanh", layernorm="pre",
               residual_mu=True)
def mlp_block(
    act: str | Act = "relu",
    layernorm: str | None = None,
    residual_mu: object = None,
    sigma_w: object = _sw,
    sigma_b: object = _sb,
) -> Op:
    """One repeating MLP block, h^l ↦ h^{l+1}.

    * ``layernorm=None``:   Act >> Linear              (vanilla, h' = W φ(h) + b)
    * ``layernorm="pre"``:  LayerNorm >> Act >> Linear (LN on preactivations)
    * ``layernorm="post"``: Act >> LayerNorm >> Linear (LN on activations)
    * ``residual_mu``: wrap in ``Residual(..., mu)``; ``True`` uses the symbol μ.
    """
    a = act if isinstance(act, Act) else Act(act)
    lin = Linear(sigma_w, sigma_b)
    if layernorm is None:
        block: Op = a >> lin
    elif layernorm == "pre":
        block = LayerNorm() >> a >> lin
    elif layernorm == "post":
        block = a >> LayerNorm() >> lin
    else:
        raise ArchitectureError(f"layernorm must be None, 'pre' or 'post', got {layernorm!r}")
    if residual_mu is None or residual_mu is False:
        return block
    return Residual(block, _mu if residual_mu is True else residual_mu)


def derivation_documents() -> dict[str, str]:
    """Generated derivation documents for a ResNet block and a Mixer block: see
    :func:`critsym.ops.mixer.derivation_documents` (defined there, so that this module, which
    the Mixer block builds on, imports neither the Mixer nor the derivation)."""
    from .mixer import derivation_documents as documents

    return documents()
