"""Structural copies of torchvision's and timm's transformer and Mixer blocks (same attribute
names, same ``forward``, same initialization), for tests that run without either library.

:func:`as_library_classes` registers the copies under the libraries' own module names for the
duration of a test, so that critsym's import readers, keyed by class name, claim them exactly
as they claim the real classes (the real-library tests, marked ``torchvision``, check the real
ones).
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

TV_VIT = "torchvision.models.vision_transformer"
TIMM_ATTENTION = "timm.layers.attention"
TIMM_SCALE = "timm.layers.layer_scale"
TIMM_VIT = "timm.models.vision_transformer"
TIMM_MIXER = "timm.models.mlp_mixer"


# ----------------------------------------------------------------------------- torchvision
class MLP(nn.Sequential):
    """``torchvision.ops.MLP``: per hidden layer Linear, activation, Dropout; last Linear,
    Dropout."""

    def __init__(self, d_in: int, hidden: list[int], activation_layer=nn.ReLU,
                 dropout: float = 0.0):
        layers: list[nn.Module] = []
        d = d_in
        for h in hidden[:-1]:
            layers += [nn.Linear(d, h), activation_layer(), nn.Dropout(dropout)]
            d = h
        layers += [nn.Linear(d, hidden[-1]), nn.Dropout(dropout)]
        super().__init__(*layers)


class MLPBlock(MLP):
    """torchvision's ViT MLP: xavier-uniform weights, biases N(0, 1e-6²)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__(in_dim, [mlp_dim, in_dim], activation_layer=nn.GELU, dropout=dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """torchvision's ViT encoder block (pre-LN, ``nn.MultiheadAttention``)."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float = 0.0,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads,
                                                    dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: torch.Tensor):
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


# ----------------------------------------------------------------------------- timm
class Attention(nn.Module):
    """timm's ``Attention`` (fused qkv, scaled dot-product attention)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False,
                 qk_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dim = num_heads * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, self.attn_dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.gate = None
        self.proj = nn.Linear(self.attn_dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        x = self.proj(x)
        return self.proj_drop(x)


class LayerScale(nn.Module):
    """timm's ``LayerScale``: x ↦ γ ⊙ x, γ = ``init_values`` at initialization."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class DropPath(nn.Module):
    """timm's ``DropPath`` (stochastic depth; the identity in evaluation mode)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype) >= self.drop_prob
        return x * keep / (1 - self.drop_prob)


class Mlp(nn.Module):
    """timm's ``Mlp``: fc1, act, drop1, norm (identity), fc2, drop2."""

    def __init__(self, in_features: int, hidden_features: int, act_layer=nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class Block(nn.Module):
    """timm's ViT ``Block`` (pre-LN, optional LayerScale, DropPath)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0,
                 init_values: float | None = None, drop_path: float = 0.0,
                 qk_norm: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, attn_mask=None, is_causal: bool = False):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask,
                                                   is_causal=is_causal)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


def timm_vit_init(model: nn.Module) -> nn.Module:
    """timm's ViT initialization: Linear weights truncated N(0, 0.02²), biases zero."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return model


class MixerBlock(nn.Module):
    """timm's ``MixerBlock``: token MLP on the transposed LN output, then channel MLP."""

    def __init__(self, dim: int, seq_len: int, mlp_ratio=(0.5, 4.0), act_layer=nn.GELU):
        super().__init__()
        tokens_dim, channels_dim = (int(r * dim) for r in mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(seq_len, tokens_dim, act_layer=act_layer)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channels_dim, act_layer=act_layer)

    def forward(self, x):
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        x = x + self.drop_path(self.mlp_channels(self.norm2(x)))
        return x


class ClassTokenStem(nn.Module):
    """A ViT stem's token handling: prepend a learned class token, add a position embedding
    (timm's ``_pos_embed``), then the blocks."""

    def __init__(self, blocks: nn.Module, dim: int, tokens: int):
        super().__init__()
        self.cls_token = nn.Parameter(1e-6 * torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        self.norm_pre = nn.Identity()
        self.blocks = blocks

    def forward(self, x):
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        return self.blocks(self.norm_pre(x))


class PatchEmbed(nn.Module):
    """timm's ``PatchEmbed``: a patchify convolution (kernel = stride = patch), flattened to
    tokens (batch, patches, dim)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class MlpMixer(nn.Module):
    """timm's ``MlpMixer`` layout: patchify stem, Mixer blocks, final LayerNorm, token mean,
    classifier."""

    def __init__(self, img: int, patch: int, dim: int, depth: int, act_layer=nn.ReLU):
        super().__init__()
        self.stem = PatchEmbed(patch, dim)
        n = (img // patch) ** 2
        self.blocks = nn.Sequential(*[MixerBlock(dim, n, act_layer=act_layer)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x))).mean(dim=1))


@contextmanager
def as_library_classes():
    """Within the block, the copies are the classes of torchvision's and timm's modules (fake
    entries in ``sys.modules``, removed afterwards; real ones restored)."""
    fakes = {TV_VIT: {"EncoderBlock": EncoderBlock, "MLPBlock": MLPBlock},
             TIMM_ATTENTION: {"Attention": Attention},
             TIMM_SCALE: {"LayerScale": LayerScale},
             TIMM_VIT: {"Block": Block},
             TIMM_MIXER: {"MixerBlock": MixerBlock}}
    saved = {name: sys.modules.get(name) for name in fakes}
    try:
        for name, classes in fakes.items():
            mod = types.ModuleType(name)
            for attr, cls in classes.items():
                setattr(mod, attr, cls)
            sys.modules[name] = mod
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def gaussian_tokens(seed: int, batch: int, tokens: int, dim: int) -> torch.Tensor:
    """Exchangeable Gaussian tokens of unit variance (float64), from their own generator."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return torch.randn(batch, tokens, dim, generator=g, dtype=torch.float64)


__all__ = ["Block", "ClassTokenStem", "EncoderBlock", "MixerBlock", "MlpMixer", "PatchEmbed",
           "as_library_classes",
           "gaussian_tokens", "timm_vit_init"]
