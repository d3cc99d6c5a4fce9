r"""BatchNorm at initialization: normalisation of each neuron over the examples of a batch.

In critsym's multi-axis language (:mod:`critsym.ops.axes`) a batch is a *row* axis: the
activations of a batch form an examples × neurons array, and BatchNorm is LayerNorm along the
example axis, ``BatchNorm() == Transpose() >> LayerNorm() >> Transpose()`` on the state.

**Infinite batch** (``batch_size=None``; batch × spatial positions per channel → ∞).  Write a
Gaussian preactivation g = g_N + r, with g_N its per-neuron component (constant along the
examples, variance O_C, the state's per-neuron offset; for two different examples of an
exchangeable batch O_C is their covariance K_12) and r the rest.  The mean of neuron i over the
batch is g_N,i and its variance over the batch is K − O_C for every neuron, so

    BN(g) = (g − g_N) / √(K − O_C):   K' = 1,  O_C' = 0,  J' = J / (K − O_C),

with no batch-coupling terms in the Jacobian of one example (they are O(1/B)).  Through
``Act(φ) >> Linear()`` the offset comes back as O_C' = σ_w² E[φ(z)]² + σ_b², K' = σ_w² E[φ(z)²]
+ σ_b², so from the second block on χ_J = σ_w² E[φ'(z)²]/(K − O_C) = E[φ'(z)²]/Var φ(z)
whatever σ_w and σ_b: the fold derives this (see docs/batchnorm.md).

**Finite batch** (``batch_size=B``).  The state is then the law of a neuron's B-vector (uniform
on a sphere after normalisation), which the fold does not carry; :func:`critsym.derive` hands
``BatchNorm(B) >> Act(φ) >> Linear()`` to :mod:`critsym.batchnorm` instead.

Torch map: training-mode batch statistics (biased variance, γ = 1, β = 0, eps = the build's
``ln_eps``), pooled over the batch axis (the axis just before the per-example features) and,
for feature maps (*spatial, C), over the spatial axes.  Leading axes (independent networks,
Jacobian probes) are independent groups.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ArchitectureError, DerivationError
from .base import Op

#: the smallest batch with finite moments of 1/(batch variance): E[1/χ²_{B−1}] needs B ≥ 4
MIN_BATCH = 4


@dataclass(frozen=True, init=False)
class BatchNorm(Op):
    r"""x ↦ (x − mean over the batch) / std over the batch, per neuron (γ = 1, β = 0).

    ``batch_size=None``: the infinite-batch rule, LayerNorm with offset along the sample axis
    (see the module docstring); ``batch_size=B`` (an integer ≥ 4): the finite-batch theory of
    :mod:`critsym.batchnorm`.
    """

    batch_size: int | None
    multi_axis: ClassVar[bool] = True
    latex_name = r"\mathrm{BN}"
    torch_types = ("torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d",
                   "torch.nn.SyncBatchNorm", "critsym.batchnorm.stacked.ChannelBatchNorm")

    def __init__(self, batch_size: int | None = None):
        if batch_size is not None:
            if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                    or batch_size < MIN_BATCH):
                raise ArchitectureError(
                    f"BatchNorm batch_size must be None (infinite batch) or an integer >= "
                    f"{MIN_BATCH}, got {batch_size!r}: below {MIN_BATCH} examples the batch "
                    "variance's inverse has no finite mean, so the gradient statistics diverge"
                )
            batch_size = int(batch_size)
        object.__setattr__(self, "batch_size", batch_size)

    def __repr__(self) -> str:
        return "BatchNorm()" if self.batch_size is None else f"BatchNorm({self.batch_size})"

    def apply(self, s):
        if self.batch_size is not None:
            raise DerivationError(
                f"{self!r}: a finite batch couples the examples (the state is the law of each "
                "neuron's batch vector), which the fold does not carry; derive the block "
                "BatchNorm(B) >> Act(phi) >> Linear() with critsym.derive, which uses "
                "critsym.batchnorm for it, or use BatchNorm() for the infinite-batch rule"
            )
        from .axes import Transpose
        from .norm import LayerNorm

        if not s.axes:
            raise DerivationError(
                "BatchNorm needs the multi-axis (examples × neurons) state; derive the "
                "architecture with critsym.derive, which starts one for BatchNorm"
            )
        t = Transpose()
        return t.apply(LayerNorm().apply(t.apply(s)))

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """Training-mode BatchNorm over the batch axis and the spatial axes of ``shape``."""
        from ..batchnorm.stacked import StackedBatchNorm

        return StackedBatchNorm(len(shape) - 1, self.batch_size, ctx.ln_eps), shape

    def export(self, ctx, fan: int):
        """``nn.BatchNorm1d(fan)`` (eps 1e-12, training mode); next to convolutions a
        channels-first BatchNorm over (N, C, *spatial) of any dimension."""
        from torch import nn

        from ..batchnorm.stacked import ChannelBatchNorm

        if ctx.channels_first:
            return ChannelBatchNorm(fan, eps=1e-12, dtype=ctx.dtype), fan
        return nn.BatchNorm1d(fan, eps=1e-12, dtype=ctx.dtype), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> BatchNorm:
        """``nn.BatchNorm1d/2d/3d`` in training mode at initialization: :func:`import_batchnorm`."""
        return import_batchnorm(module, reader.label(path))


def import_batchnorm(m, name: str) -> BatchNorm:
    """``nn.BatchNorm1d/2d/3d`` → :class:`BatchNorm` (the infinite-batch rule).

    The theory is the *training-mode* one (statistics of the current batch).  An evaluation-mode
    module uses its running statistics instead, which at initialization (mean 0, variance 1)
    make it the identity up to 1/√(1 + eps): importing it as BatchNorm would be wrong, so it is
    refused.  The affine parameters must be at their initial values γ = 1, β = 0.  torch's eps
    (1e-5 by default) is not part of the theory: it shifts the normalised variance by a factor
    1/(1 + eps/v), a relative 1e-5 at unit batch variance.
    """
    import torch

    from ..errors import UnsupportedModuleError

    kind = type(m).__name__
    if not m.training:
        raise UnsupportedModuleError(
            f"submodule {name!r} ({kind}) is in evaluation mode: it then uses its running "
            "statistics (at initialization mean 0, variance 1, i.e. the identity), while critsym's "
            "BatchNorm is the training-mode (batch-statistics) theory; call model.train() "
            "before importing, or remove the module if you mean the identity")
    if m.affine:
        w, b = m.weight.detach(), m.bias.detach()
        if not (torch.all(w == 1) and torch.all(b == 0)):
            raise UnsupportedModuleError(
                f"submodule {name!r} ({kind}) has trained affine parameters (gamma != 1 or "
                "beta != 0); critsym analyses initialization, where gamma = 1 and beta = 0")
    return BatchNorm()
