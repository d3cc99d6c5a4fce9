r"""Import of torchvision's and timm's transformer and Mixer blocks as critsym operators.

The readers are keyed by class name (:func:`critsym.ops.contract.import_reader`): neither
torchvision nor timm is imported here, a claim resolves once the library is loaded (a model of
its classes cannot exist before).  The models around the blocks (``VisionTransformer``,
``MlpMixer``) are captured as graphs (:mod:`critsym.interop.capture`); their stems (patchify
convolution, class token, position embedding) and heads (token pooling, classifier) are
reported as skipped.  Each block is one claimed module, so one body block per model block,
whose output :func:`critsym.apjn` can measure:

* torchvision ``EncoderBlock`` and timm ``Block`` (pre-LN):
  ``Residual(LN >> Attention [>> Scale(γ)], 1) >> Residual(LN >> MLP [>> Scale(γ)], 1)``,
  the ``Scale`` for timm's ``LayerScale`` (a learned per-channel γ, read while all its entries
  are equal, as at initialization: γ = ``init_values``);
* timm ``MixerBlock``:
  ``Residual(LN >> Transpose >> MLP_tokens >> Transpose, 1) >> Residual(LN >> MLP_channels, 1)``.

Attention (torchvision's ``nn.MultiheadAttention`` with q = k = v, timm's ``Attention`` with a
fused ``qkv`` projection) is read by :func:`critsym.interop.hf.attention`: the standard regime
(softmax of independent query and key projections, logits scaled 1/√d_k) with σ̂_Q σ̂_K, σ̂_V,
σ̂_O estimated from the projection weights, or the uniform regime with the approximation
recorded where the standard regime's theory is not available.  Dropout and stochastic depth
(timm's ``DropPath``) are the identity in evaluation mode; an active one is refused.
"""

from __future__ import annotations

import torch

from ..errors import UnsupportedModuleError
from ..ops.axes import Transpose
from ..ops.contract import import_reader
from ..ops.residual import Residual
from ..ops.scale import Scale
from .hf import _tokens, _w, attention, fused_qkv

_TV_VIT = "torchvision.models.vision_transformer"
_TIMM_VIT = "timm.models.vision_transformer"
_TIMM_MIXER = "timm.models.mlp_mixer"


def _identity_or_refuse(module, reader, path: str, what: str) -> None:
    """Refuse an optional part that is present (not ``nn.Identity`` / None)."""
    if module is not None and not isinstance(module, torch.nn.Identity):
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: {what} ({type(module).__name__}) has no "
            "critsym theory; build the block without it")


def _inactive_drop_path(module, reader, path: str) -> None:
    """Stochastic depth (timm's ``DropPath``) must be the identity: evaluation mode or rate 0."""
    p = float(getattr(module, "drop_prob", 0.0) or 0.0)
    if module.training and p > 0:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: stochastic depth with rate {p:g} is active in "
            "training mode; import the model in evaluation mode (model.eval())")


def multihead_self_attention(sa: torch.nn.MultiheadAttention, reader, path: str,
                             n_tokens: int):
    """``nn.MultiheadAttention`` called as self-attention (query = key = value = x, batch
    first, no extra key/value tokens): ``Attention(n, "standard", …)`` from its packed input
    projection and ``out_proj``."""
    if not sa._qkv_same_embed_dim or sa.in_proj_weight is None:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: MultiheadAttention with separate key/value "
            "dimensions; critsym reads self-attention with one embedding size")
    if sa.bias_k is not None:
        raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: add_bias_kv is not "
                                     "supported (extra key/value tokens)")
    if not sa.batch_first:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: batch_first=False puts the tokens on axis 0; "
            "build the attention with batch_first=True")
    d = sa.embed_dim
    wq, wk, wv = sa.in_proj_weight.split(d)
    bq, bk, bv = (None, None, None) if sa.in_proj_bias is None else sa.in_proj_bias.split(d)
    return attention(reader, path, q=(wq, bq, "in_proj.q"), k=(wk, bk, "in_proj.k"),
                     v=(wv, bv, "in_proj.v"), o=(*_w(sa.out_proj), "out_proj"),
                     heads=sa.num_heads, n_tokens=n_tokens)


# ------------------------------------------------------------------------------ torchvision
@import_reader(f"{_TV_VIT}.EncoderBlock")
def read_torchvision_encoder_block(module, reader, path: str):
    """torchvision's ViT block: x + Attn(LN₁ x), then h + MLP(LN₂ h) (pre-LN; the MLP a
    ``torchvision.ops.MLP``: Linear, GELU, Dropout, Linear, Dropout)."""
    n = _tokens(reader, (module, module.ln_1, module.self_attention), path)
    att = multihead_self_attention(module.self_attention, reader,
                                   reader.join(path, "self_attention"), n)
    ln1 = reader.map(module.ln_1, reader.join(path, "ln_1"))
    ln2 = reader.map(module.ln_2, reader.join(path, "ln_2"))
    mlp = reader.map(module.mlp, reader.join(path, "mlp"))
    return Residual(ln1 >> att, 1) >> Residual(ln2 >> mlp, 1)


# ------------------------------------------------------------------------------ timm
@import_reader("timm.layers.layer_scale.LayerScale")
def read_layer_scale(module, reader, path: str):
    """timm's ``LayerScale``, x ↦ γ ⊙ x: ``Scale(γ)`` while every entry of γ is equal (its
    initialization, γ = ``init_values``)."""
    g = module.gamma.detach().to(torch.float64).flatten()
    if g.numel() == 0 or not bool((g == g[0]).all()):
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: LayerScale with unequal per-channel gains "
            f"(from {float(g.min()):.3g} to {float(g.max()):.3g}); critsym reads one gain, as "
            "at initialization: import the model as initialized")
    return Scale(float(g[0]))


@import_reader("timm.layers.attention.Attention")
def read_timm_attention(module, reader, path: str, n_tokens: int | None = None):
    """timm's ``Attention``: a fused ``qkv`` projection (rows: query, key, value), ``proj``;
    no query/key normalisation, no output normalisation, no gate."""
    _identity_or_refuse(module.q_norm, reader, reader.join(path, "q_norm"),
                        "query normalisation (qk_norm)")
    _identity_or_refuse(module.k_norm, reader, reader.join(path, "k_norm"),
                        "key normalisation (qk_norm)")
    _identity_or_refuse(module.norm, reader, reader.join(path, "norm"),
                        "normalisation of the attention output (scale_norm)")
    _identity_or_refuse(getattr(module, "gate", None), reader, reader.join(path, "gate"),
                        "a sigmoid gate on the attention output")
    n = n_tokens or _tokens(reader, (module,), path)
    w, b = _w(module.qkv)
    d = module.attn_dim
    return attention(reader, path, **fused_qkv(w, b, d, "qkv"), o=(*_w(module.proj), "proj"),
                     heads=module.num_heads, n_tokens=n, scaling=module.scale,
                     head_dim=module.head_dim)


@import_reader(f"{_TIMM_VIT}.Block")
def read_timm_block(module, reader, path: str):
    """timm's ViT block: x + γ₁ Attn(LN₁ x), then h + γ₂ MLP(LN₂ h) (pre-LN; γ the optional
    ``LayerScale``; ``DropPath`` the identity in evaluation mode)."""
    for name in ("drop_path1", "drop_path2"):
        _inactive_drop_path(getattr(module, name), reader, reader.join(path, name))
    n = _tokens(reader, (module, module.norm1, module.attn), path)
    att = read_timm_attention(module.attn, reader, reader.join(path, "attn"), n)
    part = {k: reader.map(getattr(module, k), reader.join(path, k))
            for k in ("norm1", "ls1", "norm2", "mlp", "ls2")}
    first = reader.seq([part["norm1"], att, part["ls1"]])
    second = reader.seq([part["norm2"], part["mlp"], part["ls2"]])
    return Residual(first, 1) >> Residual(second, 1)


@import_reader(f"{_TIMM_MIXER}.MixerBlock")
def read_timm_mixer_block(module, reader, path: str):
    """timm's Mixer block: x + MLP_tokens(LN₁ xᵀ)ᵀ, then h + MLP_channels(LN₂ h)."""
    _inactive_drop_path(module.drop_path, reader, reader.join(path, "drop_path"))
    tokens = reader.map(module.mlp_tokens, reader.join(path, "mlp_tokens"))
    channels = reader.map(module.mlp_channels, reader.join(path, "mlp_channels"))
    ln1 = reader.map(module.norm1, reader.join(path, "norm1"))
    ln2 = reader.map(module.norm2, reader.join(path, "norm2"))
    return Residual(ln1 >> Transpose() >> tokens >> Transpose(), 1) >> Residual(ln2 >> channels, 1)


__all__ = ["multihead_self_attention", "read_layer_scale", "read_timm_attention",
           "read_timm_block", "read_timm_mixer_block", "read_torchvision_encoder_block"]
