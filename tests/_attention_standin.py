"""A stand-in for the Attention operator's fields (numbers only, not a registered operator)
and a pre-LN transformer block built from critsym's stacked torch modules, for tests of the
torch side on its own."""

import math
from dataclasses import dataclass

import torch

from critsym.torch.attention import stacked_attention
from critsym.torch.modules import (
    Chain,
    Elementwise,
    NeuronLayerNorm,
    ResidualSum,
    StackedLinear,
)


@dataclass(frozen=True)
class AttentionFields:
    n_tokens: int
    regime: str = "uniform"
    sigma_qk: float = 0.0
    sigma_v: float = 1.0
    sigma_o: float = 1.0
    heads: int = 1
    tau: float = 1.0
    sigma_b_v: float = 0.0
    sigma_b_o: float = 0.0


@dataclass(frozen=True)
class PreLNBlock:
    """h ↦ h + Attn(LN h), then h ↦ h + W₂ relu(W₁ LN h) with σ₁ = √mlp, σ₂ = 1."""

    attention: AttentionFields
    mlp: float = 2.0

    def to_torch(self, ctx, shape):
        attn, _ = stacked_attention(self.attention, ctx, shape)
        C = shape[-1]
        w1 = StackedLinear.init(ctx, C, C, math.sqrt(self.mlp), 0.0)
        w2 = StackedLinear.init(ctx, C, C, 1.0, 0.0)
        mlp = Chain(NeuronLayerNorm(), w1, Elementwise(torch.relu, "relu"), w2)
        return Chain(ResidualSum(Chain(NeuronLayerNorm(), attn), 1.0),
                     ResidualSum(mlp, 1.0)), shape
