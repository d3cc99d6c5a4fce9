"""The torch module of :class:`critsym.ops.gated.GatedMLP` (stacked and exported alike)."""

from __future__ import annotations

import torch
from torch import nn


class GatedMLPModule(nn.Module):
    """x ↦ down_proj(act_fn(gate_proj(x)) * up_proj(x)): the attribute names of Hugging Face's
    ``LlamaMLP``, so one import reader serves both."""

    def __init__(self, gate_proj: nn.Module, up_proj: nn.Module, down_proj: nn.Module,
                 act_fn: nn.Module):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = gate_proj, up_proj, down_proj
        self.act_fn = act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
