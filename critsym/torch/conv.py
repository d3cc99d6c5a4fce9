r"""Torch modules for convolutional and multi-axis operators, stacked over independent networks.

Feature maps are channels-last, ``(n_nets, *batch, *spatial, C)``; axis 0 indexes independent
networks, each with its own weights (one grouped convolution runs all of them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class StackedConv(nn.Module):
    r"""Per-network convolution, W ~ N(0, σ_w²/(k^d C_in)), b ~ N(0, σ_b²), 'same' padding,
    ``stride`` s (every s-th position of the stride-1 output)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: str, stride: int = 1):
        super().__init__()
        self.stride = int(stride)
        self.weight = nn.Parameter(weight, requires_grad=False)  # (n, C_out, C_in, *k)
        self.bias = nn.Parameter(bias, requires_grad=False)  # (n, C_out)
        self.padding = padding

    @classmethod
    def init(cls, ctx, c_in: int, c_out: int, k: int, dim: int, sigma_w: float,
             sigma_b: float, padding: str, stride: int = 1) -> StackedConv:
        fan_in = c_in * k**dim
        w = ctx.randn(c_out, c_in, *([k] * dim), scale=sigma_w / fan_in**0.5)
        return cls(w, ctx.randn(c_out, scale=sigma_b), padding, stride)

    @property
    def dim(self) -> int:
        return self.weight.dim() - 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, d = self.weight.shape[0], self.dim
        spatial, c_in = x.shape[-d - 1:-1], x.shape[-1]
        batch = x.shape[1:-d - 1]
        xb = x.reshape(n, -1, *spatial, c_in)  # (n, B, *S, C)
        B = xb.shape[1]
        perm = (1, 0, d + 2, *range(2, d + 2))  # (B, n, C, *S)
        xb = xb.permute(*perm).reshape(B, n * c_in, *spatial)
        p = (self.weight.shape[-1] - 1) // 2
        if self.padding == "circular" and p > 0:
            xb = F.pad(xb, [p] * (2 * d), mode="circular")
            pad = 0
        else:
            pad = p
        w = self.weight.reshape(n * self.weight.shape[1], c_in, *self.weight.shape[3:])
        y = _CONV[d](xb, w, self.bias.reshape(-1), padding=pad, groups=n, stride=self.stride)
        c_out = self.weight.shape[1]
        spatial = y.shape[2:]
        y = y.reshape(B, n, c_out, *spatial)
        y = y.permute(1, 0, *range(3, d + 3), 2)  # (n, B, *S, C_out)
        return y.reshape(n, *batch, *spatial, c_out)

    def extra_repr(self) -> str:
        text = f"weight={tuple(self.weight.shape)}, padding={self.padding}"
        return text + (f", stride={self.stride}" if self.stride != 1 else "")


class ChannelsLastPool(nn.Module):
    """Average pooling over non-overlapping windows (``kernel=None``: all positions)."""

    def __init__(self, kernel: int | None, dim: int):
        super().__init__()
        self.kernel, self.dim = kernel, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dim
        if self.kernel is None:
            return x.mean(dim=tuple(range(x.dim() - d - 1, x.dim() - 1)))
        k = self.kernel
        shp = list(x.shape[:-d - 1])
        for n in x.shape[-d - 1:-1]:
            shp += [n // k, k]
        y = x.reshape(*shp, x.shape[-1])
        axes = tuple(x.dim() - d - 1 + 2 * i + 1 for i in range(d))
        return y.mean(dim=axes)


class SwapAxes(nn.Module):
    """Exchange the last two feature axes (tokens ↔ channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-1, -2)
