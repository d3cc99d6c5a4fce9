"""from_torch reads registered embedding stems (BERT, GPT-2, Llama) as an input stage: the body
input comes from the embedding theory, labelled, with the example estimate kept beside it."""

import warnings

import numpy as np
import pytest
import torch

import critsym as cs
from critsym.interop.embedding import _id_law, read_stage

pytest.importorskip("transformers")
from critsym.repro import models as M  # noqa: E402


def _read(name, seed=0, batch=None):
    model, x = M.CASES[name].build(seed)
    if batch is not None:
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randint(0, 50, (batch, x.shape[-1]), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, x, cs.from_torch(model, x)


@pytest.mark.parametrize("name,label", [
    ("GPT-2", "wte + wpe"), ("Llama", "embed_tokens"),
    # slow: reading BERT's body derives its GELU MLP behind standard attention (~100 s)
    pytest.param("BERT", "token type", marks=pytest.mark.slow)])
def test_body_input_from_the_embedding_theory(name, label):
    model, x, res = _read(name)
    b = res.body_input
    assert b.source.startswith("embedding theory") and label in b.source
    assert b.measured is not None and b.measured.source == "example_input"
    stage, _ = read_stage(model, x, None, res.blocks[0].path)
    assert b.state() == pytest.approx(stage.initial(), rel=1e-14)
    if name == "BERT":  # the LayerNorm after the sum is the body's first operator here
        assert not stage.layer_norm and "in the body" in b.source


def test_id_law_from_example_ids():
    emb = torch.nn.Embedding(10, 4, padding_idx=0)
    ids = torch.tensor([[1, 1, 2, 0], [3, 4, 5, 6]])
    law = _id_law(ids, emb)
    # sequence 1: non-padding pairs (a ≠ b) with equal ids: (0,1), (1,0) of 12; sequence 2: none
    assert law["p_same"] == pytest.approx((2 / 12 + 0) / 2, rel=1e-14)
    assert law["p_token"] == pytest.approx(7 / 8, rel=1e-14)


def _stem_output(name, model, ids):
    """The embedding stem's output (before BERT's LayerNorm, which is in its body)."""
    n = ids.shape[-1]
    with torch.no_grad():
        if name == "GPT-2":
            return model.wte(ids) + model.wpe(torch.arange(n))
        if name == "Llama":
            return model.embed_tokens(ids)
        e = model.embeddings
        return (e.word_embeddings(ids) + e.position_embeddings(torch.arange(n))
                + e.token_type_embeddings(torch.zeros_like(ids)))


@pytest.mark.parametrize("name,start", [("GPT-2", "h.0"), ("BERT", "embeddings.LayerNorm"),
                                        ("Llama", "layers.0")])
def test_theory_against_stem_outputs_over_seeds(name, start):
    """Over 8 independently initialised models (64 sequences of uniform ids each), the
    example estimates of q and p on the stem's output (critsym.interop.network.body_input)
    average to the stage's theory within 4 SE (SE over models)."""
    from critsym.interop.network import body_input

    diff = []
    for seed in range(8):
        model, x = M.CASES[name].build(seed)
        g = torch.Generator().manual_seed(100 + seed)
        ids = torch.randint(0, 50, (64, x.shape[-1]), generator=g)
        stage, _ = read_stage(model, ids, None, start)
        est = body_input(_stem_output(name, model, ids), True)
        st = stage.state
        diff.append([est.K.value - st.q, est.O_C.value - st.p])
    diff = np.array(diff)
    se = diff.std(0, ddof=1) / np.sqrt(len(diff))
    assert np.all(np.abs(diff.mean(0)) <= 4 * se), (diff.mean(0), se)
