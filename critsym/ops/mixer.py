r"""MLP-Mixer blocks, written from the ordinary operators and
:class:`~critsym.ops.axes.Transpose`.

* :func:`mixer_block` — x ← μx + TokenMLP(LN(x)), x ← μx + ChannelMLP(LN(x)), the token MLP
  acting across patches through a transpose;
* :func:`token_mixing`, :func:`channel_mixing` — its two halves.
"""

from __future__ import annotations

from ..symbols import mu as _mu
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .activation import Act
from .axes import Transpose
from .base import Op
from .blocks import derivation_documents  # noqa: F401 - provider named in critsym.derivations
from .contract import builtin_block
from .linear import Linear
from .norm import LayerNorm
from .residual import Residual


def _act(act) -> Act:
    return act if isinstance(act, Act) else Act(act)


@builtin_block(dict(sigma_w=1.4, sigma_b=0.3, mu=0.5), shape=(8, 8), monte_carlo=False)
def mixer_block(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                sigma_b: object = _sb) -> Op:
    """An MLP-Mixer block on a tokens × channels state (channels last)::

        Residual(LN >> Transpose >> Linear >> φ >> Linear >> Transpose, μ)   # token mixing
        >> Residual(LN >> Linear >> φ >> Linear, μ)                          # channel mixing
    """
    return token_mixing(act, mu, sigma_w, sigma_b) >> channel_mixing(act, mu, sigma_w, sigma_b)


@builtin_block(dict(sigma_w=1.4, sigma_b=0.3, mu=0.5), shape=(8, 8), monte_carlo=False)
def token_mixing(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                 sigma_b: object = _sb) -> Op:
    """x ← μx + W2 φ(W1 LN(x)ᵀ)ᵀ: the MLP acts across tokens, LN over channels."""
    a = _act(act)
    return Residual(LayerNorm() >> Transpose() >> Linear(sigma_w, sigma_b) >> a
                    >> Linear(sigma_w, sigma_b) >> Transpose(), mu)


@builtin_block(dict(sigma_w=1.4, sigma_b=0.3, mu=0.5), shape=(8, 8), monte_carlo=False)
def channel_mixing(act: str | Act = "gelu", mu: object = _mu, sigma_w: object = _sw,
                   sigma_b: object = _sb) -> Op:
    """x ← μx + W2 φ(W1 LN(x)): the MLP acts across channels."""
    a = _act(act)
    return Residual(LayerNorm() >> Linear(sigma_w, sigma_b) >> a >> Linear(sigma_w, sigma_b), mu)
