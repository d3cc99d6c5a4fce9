r"""The stacked torch map of :class:`critsym.ops.batchnorm.BatchNorm` (training mode)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SimulationError


class StackedBatchNorm(nn.Module):
    r"""Training-mode BatchNorm, γ = 1, β = 0: x ↦ (x − m)/√(v + eps) with m, v the mean and the
    biased variance of each channel over the batch axis and the ``n_spatial`` spatial axes.

    Input ``(*groups, batch, *spatial, C)``: the batch axis is the one just before the
    per-example features; leading axes (networks, Jacobian probes) are independent groups.
    ``batch_size``: the batch the theory assumes (checked), None for the infinite-batch rule.
    """

    def __init__(self, n_spatial: int, batch_size: int | None = None, eps: float = 1e-12):
        super().__init__()
        self.n_spatial = n_spatial
        self.batch_size = batch_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = x.dim() - self.n_spatial - 2
        if axis < 1:
            raise SimulationError(
                f"BatchNorm needs input (n_nets, batch, *features), got shape {tuple(x.shape)}")
        b = x.shape[axis]
        if self.batch_size is not None and b != self.batch_size:
            raise SimulationError(
                f"BatchNorm({self.batch_size}) got a batch of {b} examples on axis {axis}; "
                f"simulate it with batch_size={self.batch_size} "
                "(critsym.batchnorm.simulate_batch)")
        if b < 4:
            raise SimulationError(
                f"BatchNorm got a batch of {b} examples on axis {axis}: batch statistics need "
                "at least 4; simulate BatchNorm networks with critsym.batchnorm."
                "simulate_batch(arch, width, depth, batch_size=...)")
        dims = tuple(range(axis, x.dim() - 1))
        m = x.mean(dims, keepdim=True)
        c = x - m
        return c / torch.sqrt((c * c).mean(dims, keepdim=True) + self.eps)

    def extra_repr(self) -> str:
        return f"batch={self.batch_size}, spatial={self.n_spatial}, eps={self.eps:g}"


class ChannelBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``torch.nn`` BatchNorm of a channels-first map (N, C, *spatial) with any number of spatial
    axes (what :func:`critsym.to_torch_model` exports next to convolutions)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected input (N, C, *spatial), got shape {tuple(input.shape)}")
