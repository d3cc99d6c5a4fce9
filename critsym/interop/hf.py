r"""Import of transformer layers: torch's ``nn.TransformerEncoderLayer`` and the GPT-2, BERT,
ViT and Llama layers of Hugging Face ``transformers``, as critsym operators (the models around
them — ``nn.TransformerEncoder``, ``GPT2Model`` … — are captured as graphs,
:mod:`critsym.interop.capture`, each layer one claimed module).

Each reader names the layer's parts and writes its ``forward`` as operators
(:func:`critsym.ops.contract.import_reader`; ``transformers`` is never imported here, the
claims resolve once it is loaded):

* pre-norm layers (GPT-2, ViT, Llama, ``norm_first=True``):
  ``Residual(N >> Attention, 1) >> Residual(N >> MLP, 1)``;
* post-norm layers (BERT, ``norm_first=False``):
  ``Residual(Attention, 1) >> N >> Residual(MLP, 1) >> N``;

with N the layer's LayerNorm (RMSNorm for Llama), MLP ``Linear >> Act >> Linear`` (Llama:
:class:`~critsym.ops.gated.GatedMLP`) and attention read as
``Attention(n_tokens, "standard", sigma_qk=σ̂_Q σ̂_K, sigma_v=σ̂_V, sigma_o=σ̂_O, heads)``: the
softmax of independent query and key projections with logits scaled 1/√d_k (τ = 1), the
weight scales estimated from the projections (fused QKV weights are split).  Where the
standard regime's theory is not available, the best approximation is the uniform regime
(A = 11ᵀ/n, exact as σ_Qσ_K → 0; Hugging Face's N(0, 0.02²) initialization gives
σ_Qσ_K ≈ 4·10⁻⁴·d), recorded with the logits' scale it neglects.  The number of
tokens is the length of the example input the layer received (``from_torch(model,
example_input)``).

What the theory does not hold is recorded, per submodule, in ``reader.approximations``
(``ImportResult.approximations``):
rotary position embeddings (Llama; the theory takes the logits without the rotation),
causal masks (GPT-2, Llama; the exchangeable token theory lets every token attend to all n
tokens, so ``ImportResult.network_run()`` runs the causal token Gram recursion of
:mod:`critsym.attention.gram_theory` instead) and grouped key/value heads.  Query/key biases must
be zero (their initialization); dropout is the identity (evaluation mode).
"""

from __future__ import annotations

import functools
import math

import torch

from ..errors import UnsupportedModuleError
from ..ops.activation import Act
from ..ops.contract import approximate, import_reader
from ..ops.residual import Residual

_GPT2 = "transformers.models.gpt2.modeling_gpt2"
_BERT = "transformers.models.bert.modeling_bert"
_VIT = "transformers.models.vit.modeling_vit"
_LLAMA = "transformers.models.llama.modeling_llama"


#: the note a causal decoder's attention import records (``ImportResult.approximations``);
#: :func:`critsym.attention.gram_theory.gram_kind` looks for it
CAUSAL_MASK = ("causal mask (kept by the token Gram recursion, the theory network_run and "
               "cs.report give: the exchangeable token theory would let every token attend "
               "to all tokens)")


def pre_norm_layer(module, reader, path: str, norm1: str, att, norm2: str, mlp: str):
    """A pre-norm layer x + att(norm1 x), then h + mlp(norm2 h); ``norm1``, ``norm2``, ``mlp``
    the submodule names, ``att`` the attention already read."""
    def part(name: str):
        return reader.map(getattr(module, name), reader.join(path, name))

    return Residual(part(norm1) >> att, 1) >> Residual(part(norm2) >> part(mlp), 1)


def _tokens(reader, modules, path: str) -> int:
    """The number of tokens: the second-to-last axis of the input one of ``modules`` received
    in the example forward pass (``reader.inputs``, recorded by the capture)."""
    for m in modules:
        x = reader.inputs.get(id(m))
        if isinstance(x, torch.Tensor) and x.dim() >= 2:
            return int(x.shape[-2])
    raise UnsupportedModuleError(
        f"submodule {reader.label(path)!r}: attention needs the number of tokens; pass "
        "example_input=... (one batch the model accepts) to from_torch")


def _sigma(w: torch.Tensor) -> float:
    """σ̂ = sqrt(fan_in · mean(W²)) of a weight with rows = outputs."""
    w = w.detach().to(torch.float64)
    return math.sqrt(float((w * w).mean()) * w.shape[1])


def _zero_bias(b, what: str, path: str, reader) -> None:
    if b is not None and bool((b != 0).any()):
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: the {what} bias is not zero; critsym's attention "
            "has no query/key biases (zero at initialization): import the model as initialized")


def fused_qkv(w: torch.Tensor, b, d: int, name: str) -> dict:
    """The ``q``, ``k``, ``v`` arguments of :func:`attention` from a fused projection ``name``
    whose (3d, d) weight ``w`` (and bias ``b``, or None) stack query, key and value."""
    bs = (None, None, None) if b is None else b.split(d)
    return {r: (wr, br, f"{name}.{r}") for r, wr, br in zip("qkv", w.split(d), bs, strict=True)}


def attention(reader, path: str, *, q, k, v, o, heads: int, n_tokens: int,
              scaling: float | None = None, head_dim: int | None = None):
    """``Attention(n, "standard", …)`` from query, key, value and output weights / biases:
    ``q``, ``k``, ``v``, ``o`` are (weight with rows = outputs, bias or None, name)."""
    try:
        from ..ops.attention import Attention
    except ImportError:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: attention needs critsym's Attention operator "
            "(critsym.ops.attention), which this installation lacks") from None

    for (w, b, name), what in ((q, "query"), (k, "key")):
        _zero_bias(b, what, reader.join(path, name), reader)
        reader.weights(reader.join(path, name), "Linear", w, b, role=f"sigma_{what[0]}",
                       bias_role="")
    sq, sk = _sigma(q[0]), _sigma(k[0])
    sv, sbv = reader.weights(reader.join(path, v[2]), "Linear", v[0], v[1], role="sigma_v")
    so, sbo = reader.weights(reader.join(path, o[2]), "Linear", o[0], o[1], role="sigma_o")
    d_k = head_dim or q[0].shape[0] // heads
    if scaling is not None and not math.isclose(scaling, d_k ** -0.5, rel_tol=1e-9):
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: attention logits scaled by {scaling:g}, not "
            f"1/sqrt(d_k) = {d_k ** -0.5:g}; critsym's standard attention scales by 1/sqrt(d_k)")
    if standard_available():
        return Attention(n_tokens, "standard", sigma_qk=sq * sk, sigma_v=sv, sigma_o=so,
                         heads=heads, sigma_b_v=sbv, sigma_b_o=sbo)
    approximate(reader, path, (
        f"softmax attention taken as uniform (A = 11ᵀ/n), its logits of SD σ_Qσ_K·q̃ = "
        f"{sq * sk:.2g}·q̃ neglected (q̃ the attention input's per-token second moment), the "
        "standard regime's theory not being available here"))
    return Attention(n_tokens, "uniform", sigma_v=sv, sigma_o=so, heads=heads,
                     sigma_b_v=sbv, sigma_b_o=sbo)


@functools.lru_cache(maxsize=1)
def standard_available() -> bool:
    """Whether this installation derives the standard (random softmax) attention regime."""
    from ..derive import derive
    from ..errors import DerivationError
    from ..ops.attention import Attention

    try:
        derive(Attention(2, "standard", sigma_qk=1.0, sigma_v=1.0, sigma_o=1.0))
    except DerivationError:
        return False
    return True


def _w(lin) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight with rows = outputs, bias) of an nn.Linear or a Hugging Face Conv1D."""
    if type(lin).__name__ == "Conv1D" and hasattr(lin, "nf"):
        return lin.weight.t(), lin.bias
    return lin.weight, lin.bias


def _mlp(reader, path: str, fc1: str, act: str, fc2: str, module):
    """``Linear >> Act >> Linear`` of a two-layer MLP (the activation may be a function)."""
    ops = []
    for name in (fc1, act, fc2):
        m = getattr(module, name)
        if not isinstance(m, torch.nn.Module):
            ops.append(_function_activation(m, reader.join(path, name), reader))
            continue
        op = reader.map(m, reader.join(path, name))
        if op is not None:
            ops.append(op)
    return reader.seq(ops)


def _function_activation(fn, path: str, reader):
    """An activation given as a function (``nn.TransformerEncoderLayer(activation=F.gelu)``)."""
    from torch.nn import functional as F

    table = {F.relu: "relu", F.gelu: "gelu", F.silu: "silu", torch.tanh: "tanh",
             torch.relu: "relu", torch.sigmoid: "sigmoid"}
    name = table.get(fn)
    if name is None:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: activation function {fn!r} is not in the "
            "activation table; pass an nn.Module activation critsym knows (nn.ReLU, nn.GELU …)")
    return Act(name)


# ------------------------------------------------------------------------------ torch
@import_reader("torch.nn.TransformerEncoderLayer")
def read_encoder_layer(module, reader, path: str):
    """``nn.TransformerEncoderLayer`` (self-attention, ``norm_first`` True or False)."""
    sa = module.self_attn
    ap = reader.join(path, "self_attn")
    if not sa._qkv_same_embed_dim or sa.in_proj_weight is None:
        raise UnsupportedModuleError(
            f"submodule {reader.label(ap)!r}: MultiheadAttention with separate key/value "
            "dimensions; critsym reads self-attention with one embedding size")
    if sa.bias_k is not None:
        raise UnsupportedModuleError(f"submodule {reader.label(ap)!r}: add_bias_kv is not "
                                     "supported (extra key/value tokens)")
    d = sa.embed_dim
    wq, wk, wv = sa.in_proj_weight.split(d)
    bq, bk, bv = (None, None, None) if sa.in_proj_bias is None else sa.in_proj_bias.split(d)
    n = _tokens(reader, (module, sa), path)
    if module.self_attn.batch_first is False:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: batch_first=False puts the tokens on axis 0; "
            "build the layer with batch_first=True")
    att = attention(reader, ap, q=(wq, bq, "in_proj.q"), k=(wk, bk, "in_proj.k"),
                    v=(wv, bv, "in_proj.v"), o=(*_w(sa.out_proj), "out_proj"),
                    heads=sa.num_heads, n_tokens=n)
    mlp = _mlp(reader, path, "linear1", "activation", "linear2", module)
    n1 = reader.map(module.norm1, reader.join(path, "norm1"))
    n2 = reader.map(module.norm2, reader.join(path, "norm2"))
    if module.norm_first:
        return Residual(n1 >> att, 1) >> Residual(n2 >> mlp, 1)
    return Residual(att, 1) >> n1 >> Residual(mlp, 1) >> n2


# ------------------------------------------------------------------------------ GPT-2
@import_reader(f"{_GPT2}.GPT2Attention")
def read_gpt2_attention(module, reader, path: str, n_tokens: int | None = None):
    """GPT-2's attention: fused ``c_attn`` (Conv1D, d → 3d), ``c_proj``; causal."""
    if module.is_cross_attention:
        raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: cross-attention has "
                                     "no self-attention theory")
    n = n_tokens or _tokens(reader, (module,), path)
    w, b = _w(module.c_attn)
    d = module.embed_dim
    approximate(reader, path, CAUSAL_MASK)
    return attention(reader, path, **fused_qkv(w, b, d, "c_attn"), o=(*_w(module.c_proj), "c_proj"),
                     heads=module.num_heads, n_tokens=n, scaling=module.scaling,
                     head_dim=module.head_dim)


@import_reader(f"{_GPT2}.GPT2MLP")
def read_gpt2_mlp(module, reader, path: str):
    """GPT-2's MLP: ``c_fc`` → ``act`` → ``c_proj``."""
    return _mlp(reader, path, "c_fc", "act", "c_proj", module)


@import_reader(f"{_GPT2}.GPT2Block")
def read_gpt2_block(module, reader, path: str):
    """GPT-2's pre-LN layer (no cross-attention)."""
    if hasattr(module, "crossattention"):
        raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: a layer with "
                                     "cross-attention is not supported")
    n = _tokens(reader, (module, module.ln_1, module.attn), path)
    att = read_gpt2_attention(module.attn, reader, reader.join(path, "attn"), n)
    return pre_norm_layer(module, reader, path, "ln_1", att, "ln_2", "mlp")


# ------------------------------------------------------------------------------ BERT
@import_reader(f"{_BERT}.BertAttention")
def read_bert_attention(module, reader, path: str, n_tokens: int | None = None):
    """BERT's attention with its output projection: LN(x + W_O attn(x)) is read by the layer;
    here only ``self`` (query, key, value) and ``output.dense``."""
    s = module.self
    if getattr(module, "is_cross_attention", False):
        raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: cross-attention has "
                                     "no self-attention theory")
    n = n_tokens or _tokens(reader, (module, s), path)
    return attention(reader, path, q=(*_w(s.query), "self.query"),
                     k=(*_w(s.key), "self.key"), v=(*_w(s.value), "self.value"),
                     o=(*_w(module.output.dense), "output.dense"),
                     heads=s.num_attention_heads, n_tokens=n, scaling=s.scaling,
                     head_dim=s.attention_head_size)


@import_reader(f"{_BERT}.BertLayer")
def read_bert_layer(module, reader, path: str):
    """BERT's post-LN layer: LN(x + Attn(x)), then LN(h + W₂ φ(W₁ h))."""
    if getattr(module, "add_cross_attention", False):
        raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: a layer with "
                                     "cross-attention is not supported")
    n = _tokens(reader, (module, module.attention, module.attention.self), path)
    att = read_bert_attention(module.attention, reader, reader.join(path, "attention"), n)
    ln1 = reader.map(module.attention.output.LayerNorm,
                     reader.join(path, "attention.output.LayerNorm"))
    inter = module.intermediate
    mlp = reader.seq([reader.map(inter.dense, reader.join(path, "intermediate.dense")),
                      reader.map(inter.intermediate_act_fn,
                                 reader.join(path, "intermediate.intermediate_act_fn")),
                      reader.map(module.output.dense, reader.join(path, "output.dense"))])
    ln2 = reader.map(module.output.LayerNorm, reader.join(path, "output.LayerNorm"))
    return Residual(att, 1) >> ln1 >> Residual(mlp, 1) >> ln2


# ------------------------------------------------------------------------------ ViT
@import_reader(f"{_VIT}.ViTAttention")
def read_vit_attention(module, reader, path: str, n_tokens: int | None = None):
    """ViT's attention: ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``."""
    n = n_tokens or _tokens(reader, (module,), path)
    return attention(reader, path, q=(*_w(module.q_proj), "q_proj"),
                     k=(*_w(module.k_proj), "k_proj"), v=(*_w(module.v_proj), "v_proj"),
                     o=(*_w(module.o_proj), "o_proj"), heads=module.num_attention_heads,
                     n_tokens=n, scaling=module.scaling, head_dim=module.head_dim)


@import_reader(f"{_VIT}.ViTMLP")
def read_vit_mlp(module, reader, path: str):
    """ViT's MLP: ``fc1`` → ``activation_fn`` → ``fc2``."""
    return _mlp(reader, path, "fc1", "activation_fn", "fc2", module)


@import_reader(f"{_VIT}.ViTLayer")
def read_vit_layer(module, reader, path: str):
    """ViT's pre-LN layer."""
    n = _tokens(reader, (module, module.layernorm_before, module.attention), path)
    att = read_vit_attention(module.attention, reader, reader.join(path, "attention"), n)
    return pre_norm_layer(module, reader, path, "layernorm_before", att, "layernorm_after", "mlp")


# ------------------------------------------------------------------------------ Llama
@import_reader(f"{_LLAMA}.LlamaAttention")
def read_llama_attention(module, reader, path: str, n_tokens: int | None = None):
    """Llama's attention: ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``; rotary positions and
    the causal mask are approximations (recorded)."""
    n = n_tokens or _tokens(reader, (module,), path)
    heads = module.config.num_attention_heads
    if module.num_key_value_groups != 1:
        raise UnsupportedModuleError(
            f"submodule {reader.label(path)!r}: grouped key/value heads "
            f"({module.config.num_key_value_heads} for {heads} query heads); critsym's "
            "attention has one key and value per head: set num_key_value_heads = "
            "num_attention_heads")
    approximate(reader, path, "rotary position embeddings (the theory takes the logits "
                              "without the rotation)")
    approximate(reader, path, CAUSAL_MASK)
    return attention(reader, path, q=(*_w(module.q_proj), "q_proj"),
                     k=(*_w(module.k_proj), "k_proj"), v=(*_w(module.v_proj), "v_proj"),
                     o=(*_w(module.o_proj), "o_proj"), heads=heads, n_tokens=n,
                     scaling=module.scaling, head_dim=module.head_dim)


@import_reader(f"{_LLAMA}.LlamaDecoderLayer")
def read_llama_layer(module, reader, path: str):
    """Llama's pre-RMSNorm layer with the SiLU-gated MLP."""
    n = _tokens(reader, (module, module.input_layernorm, module.self_attn), path)
    att = read_llama_attention(module.self_attn, reader, reader.join(path, "self_attn"), n)
    return pre_norm_layer(module, reader, path, "input_layernorm", att,
                          "post_attention_layernorm", "mlp")


__all__ = ["CAUSAL_MASK", "approximate", "attention", "pre_norm_layer", "read_bert_layer",
           "read_encoder_layer", "read_gpt2_block", "read_llama_layer", "read_vit_layer"]
