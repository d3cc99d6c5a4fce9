r"""Ablations of Hugging Face causal decoders (GPT-2, Llama) at initialization: which part of
their attention carries the gap between the measured APJN and the exchangeable-token theory.

An :class:`Ablation` switches off, in a real ``transformers`` model, one thing the
exchangeable-token theory leaves out:

* ``causal=False``: every token attends to all n tokens (no causal mask);
* ``rotary=False``: Llama's rotary position embedding is the identity (cos = 1, sin = 0);
* ``logits=False``: the attention logits are zero (the query weights are zeroed, so the theory
  read from the weights sees σ_Q = 0 too): A is uniform over the tokens a row may attend to,
  1/n without the mask, 1/a for token a with it.

:func:`ablate` applies one in place: the causal mask and the logits through a registered
attention function (``transformers``' ``AttentionInterface``) that the model's attention
modules then call, rotary through the model's own ``rotary_emb``; nothing global is patched.
:func:`measure` gives, per initialization, the theory J^{0,L} (the weights read by
:func:`critsym.repro.models.read_body`, run by :func:`critsym.repro.models.body_theory`) and
the measured J^{0,L} (``critsym.apjn`` on the ablated model): their ratio, mean ± SE over
initializations, is the gap that remains with that part switched off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError

#: name of the attention function registered with ``transformers``
ATTENTION_NAME = "critsym_ablation"


@dataclass(frozen=True)
class Ablation:
    """What the ablated model keeps: the causal mask, rotary positions, the attention logits."""

    causal: bool = True
    rotary: bool = True
    logits: bool = True

    @property
    def label(self) -> str:
        off = [k for k in ("causal", "rotary", "logits") if not getattr(self, k)]
        return "as built" if not off else "no " + ", no ".join(off)


#: the variants of the attribution table
VARIANTS = {
    "as built": Ablation(),
    "no causal mask": Ablation(causal=False),
    "no rotary": Ablation(rotary=False),
    "zero logits": Ablation(logits=False),
    "no causal mask, no rotary": Ablation(causal=False, rotary=False),
    "zero logits, no causal mask": Ablation(causal=False, logits=False),
}


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
               **kwargs):
    """softmax(q kᵀ·scaling [+ causal mask]) v per head, the mask and the logits as the
    module's ``_critsym_ablation`` says; the model's own mask argument is ignored (no padding
    in these inputs).  Shapes as ``transformers``' eager attention: (batch, heads, n, d_k) in,
    (batch, n, heads, d_k) out."""
    import torch

    ab: Ablation = getattr(module, "_critsym_ablation", Ablation())
    n = query.shape[-2]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    logits = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if not ab.logits:
        logits = torch.zeros_like(logits)
    if ab.causal:
        mask = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def _attention_modules(model) -> list:
    return [m for m in model.modules() if type(m).__name__ in ("GPT2Attention", "LlamaAttention")]


def ablate(model, ablation: Ablation):
    """Apply ``ablation`` to a ``transformers`` GPT-2 or Llama model in place and return it.
    ``logits=False`` zeroes the query weights (a change of the weights, which the theory then
    reads); ``rotary=False`` needs a model with rotary positions."""
    import torch

    atts = _attention_modules(model)
    if not atts:
        raise HyperparameterError(
            f"ablate: {type(model).__name__} has no GPT-2 or Llama attention module; the "
            "ablations apply to transformers' GPT2Model and LlamaModel")
    _register()
    model.config._attn_implementation = ATTENTION_NAME
    for m in atts:
        m._critsym_ablation = ablation
        if not ablation.logits:
            with torch.no_grad():
                if hasattr(m, "q_proj"):
                    m.q_proj.weight.zero_()
                else:  # GPT-2: fused c_attn, a Conv1D of weight (in, 3d): queries first
                    m.c_attn.weight[:, : m.embed_dim].zero_()
    if not ablation.rotary:
        rot = getattr(model, "rotary_emb", None)
        if rot is None:
            raise HyperparameterError(
                f"ablate: {type(model).__name__} has no rotary position embedding to remove")

        def identity_rotation(x, position_ids, *args, **kwargs):
            shape = (*position_ids.shape, rot.inv_freq.shape[0] * 2)
            return (torch.ones(shape, dtype=x.dtype, device=x.device),
                    torch.zeros(shape, dtype=x.dtype, device=x.device))

        rot.forward = identity_rotation
    return model


@dataclass(frozen=True)
class AblationResult:
    """Per-initialization theory and measured J^{0,L} of one model, one width, one ablation;
    ``ratio``: mean ± SE of measured/theory over the initializations."""

    model: str
    width: int
    ablation: Ablation
    theory: np.ndarray
    measured: np.ndarray

    @property
    def ratio(self) -> tuple[float, float]:
        r = self.measured / self.theory
        return float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))

    def __repr__(self) -> str:
        m, se = self.ratio
        return (f"AblationResult({self.model}, width {self.width}, {self.ablation.label}: "
                f"measured/theory {m:.4f} ± {se:.4f})")


def measure(name: str, ablation: Ablation, width: int, seeds: int = 8, n_probes: int = 8,
            theory=None) -> AblationResult:
    """Theory and measured J^{0,L} (stem output → last layer) of the tiny model ``name`` of
    :mod:`critsym.repro.models` (``"GPT-2"`` or ``"Llama"``) with ``ablation`` applied, over
    ``seeds`` initializations.  ``theory(body) -> J`` replaces the exchangeable-token theory
    (default :func:`critsym.repro.models.body_theory`)."""
    from ..repro import models as M
    from ..torch.apjn import apjn

    case = M.CASES[name]
    theory = theory or M.body_theory
    th, me = [], []
    for s in range(seeds):
        model, x = case.build(s, width)
        if not ablation.logits:
            impl = model.config._attn_implementation
            ablate(model, Ablation(logits=False))  # the weights the theory reads
            model.config._attn_implementation = impl
        th.append(theory(M.read_body(model, x, case)))
        ablate(model, ablation)
        stem, outs = M._names(case, False)
        me.append(float(apjn(model, x, [stem, *outs], n_probes=n_probes, seed=s).J[-1]))
    return AblationResult(name, width, ablation, np.array(th), np.array(me))
