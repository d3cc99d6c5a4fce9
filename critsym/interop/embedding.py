r"""Embedding stems of real models read as an :class:`~critsym.input_stage.InputStage`: the
state entering a transformer body from the embedding theory instead of one example input.

Registered patterns (:data:`STEMS`, tried in order; each a reader ``(model) -> StemParts |
None``):

* **BERT** (``embeddings.word_embeddings`` + ``position_embeddings`` + ``token_type_embeddings``
  → ``embeddings.LayerNorm``);
* **GPT-2** (``wte`` + ``wpe``);
* **Llama** (``embed_tokens``; positions are rotary, inside attention).

σ's are the weights' root mean squares (the padding row left out); the token-id law comes from
the example input's ids when there is one: P(id_a = id_b) is the rate of equal ids over pairs
a ≠ b of a sequence, P(id ≠ pad) the rate of non-padding ids; otherwise ids are uniform over the
vocabulary.  Token types are all 0 (the default ``token_type_ids``).  The stage's LayerNorm is
included when it is not already the first operator of the body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..input_stage import InputStage, LearnedPositions, TokenEmbedding, TokenTypes


@dataclass(frozen=True)
class StemParts:
    """The modules of one embedding stem: ``label``, the word embedding, the position and
    token-type embeddings (None when absent) and the LayerNorm path after the sum (None)."""

    label: str
    word: nn.Embedding
    positions: nn.Embedding | None = None
    types: nn.Embedding | None = None
    layer_norm: str | None = None
    eps: float = 0.0


def _get(model: nn.Module, path: str):
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _bert(model: nn.Module) -> StemParts | None:
    for pre in ("embeddings", "bert.embeddings"):
        w = _get(model, f"{pre}.word_embeddings")
        if isinstance(w, nn.Embedding):
            ln = _get(model, f"{pre}.LayerNorm")
            return StemParts("BERT embeddings (word + position + token type, LayerNorm)", w,
                             _get(model, f"{pre}.position_embeddings"),
                             _get(model, f"{pre}.token_type_embeddings"),
                             f"{pre}.LayerNorm" if isinstance(ln, nn.LayerNorm) else None,
                             float(getattr(ln, "eps", 0.0)))
    return None


def _gpt2(model: nn.Module) -> StemParts | None:
    for pre in ("", "transformer."):
        w, p = _get(model, f"{pre}wte"), _get(model, f"{pre}wpe")
        if isinstance(w, nn.Embedding) and isinstance(p, nn.Embedding):
            return StemParts("GPT-2 embeddings (wte + wpe)", w, p)
    return None


def _llama(model: nn.Module) -> StemParts | None:
    for pre in ("", "model."):
        w = _get(model, f"{pre}embed_tokens")
        if isinstance(w, nn.Embedding):
            return StemParts("Llama embed_tokens (rotary positions inside attention)", w)
    return None


#: the registered embedding stems, tried in order
STEMS: list[tuple[str, Callable[[nn.Module], StemParts | None]]] = [
    ("BERT", _bert), ("GPT-2", _gpt2), ("Llama", _llama)]


def _sigma(emb: nn.Embedding) -> float:
    w = emb.weight.detach().to(torch.float64)
    if emb.padding_idx is not None:
        keep = torch.ones(w.shape[0], dtype=torch.bool)
        keep[emb.padding_idx] = False
        w = w[keep]
    return float((w * w).mean().sqrt())


def _id_law(ids: torch.Tensor | None, word: nn.Embedding) -> dict:
    """``p_same``, ``p_token`` (P(id ≠ pad)) from example ids (batch, n), else {}."""
    if ids is None or ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2 \
            or ids.shape[-1] < 2:
        return {}
    n = ids.shape[-1]
    pad = word.padding_idx
    live = torch.ones_like(ids, dtype=torch.bool) if pad is None else ids != pad
    eq = (ids[:, :, None] == ids[:, None, :]) & live[:, :, None] & live[:, None, :]
    pairs = (eq.sum((-2, -1)) - live.sum(-1)).double() / (n * (n - 1))
    return {"p_same": float(pairs.mean()), "p_token": float(live.double().mean())}


def read_stage(model: nn.Module, example_input, n_tokens: int | None,
               body_start: str = "") -> tuple[InputStage, str] | None:
    """(stage, label) of ``model``'s embedding stem at ``n_tokens`` tokens (from the example
    ids when None), or None when no registered pattern matches.  ``body_start``: the path of
    the body's first element (a stem LayerNorm there belongs to the body)."""
    for _, reader in STEMS:
        parts = reader(model)
        if parts is not None:
            break
    else:
        return None
    ids = example_input if isinstance(example_input, torch.Tensor) else None
    if n_tokens is None:
        if ids is None or ids.dim() != 2:
            return None
        n_tokens = int(ids.shape[-1])
    law = _id_law(ids, parts.word)
    word = TokenEmbedding(parts.word.num_embeddings, _sigma(parts.word),
                          padding_idx=parts.word.padding_idx, **law)
    stage = [word]
    if parts.positions is not None:
        stage.append(LearnedPositions(_sigma(parts.positions)))
    if parts.types is not None:
        stage.append(TokenTypes(_sigma(parts.types)))
    ln = parts.layer_norm is not None and not body_start.startswith(parts.layer_norm)
    return InputStage(n_tokens, tuple(stage), layer_norm=ln, eps=parts.eps if ln else 0.0), \
        parts.label + ("" if ln or parts.layer_norm is None else "; its LayerNorm is in the body")
