"""Hugging Face BERT from a tiny config: its post-LN layers read as
Residual(Attention) >> LN >> Residual(Linear >> GELU >> Linear) >> LN with the initialization's
σ̂'s (N(0, 0.02²)), and the body's J^{0,L} theory against the APJN measured on the model,
extrapolated in 1/width."""

import math

import pytest
from _model_cases import body, body_theory, extrapolated, sigma_hat

import critsym as cs
from critsym.interop.hf import standard_available
from critsym.repro import models as M


def test_layers_read_post_norm_with_the_initialization():
    from critsym.ops.attention import Attention

    case, model, x, blocks, approx, b = body("BERT")
    for i, b in enumerate(blocks):
        res1, ln1, res2, ln2 = b.ops
        assert isinstance(res1.branch, Attention) and ln1 == cs.LayerNorm() == ln2
        assert res1.branch.n_tokens == M.TOKENS and res1.branch.heads == 2
        # the standard regime where its theory exists, else uniform attention, labelled
        if standard_available():
            assert res1.branch.regime == "standard" and not approx
            s_q, _ = sigma_hat(model.encoder.layer[i].attention.self.query.weight)
            s_k, _ = sigma_hat(model.encoder.layer[i].attention.self.key.weight)
            assert math.isclose(float(res1.branch.sigma_qk), s_q * s_k, rel_tol=1e-12)
        else:
            assert res1.branch.regime == "uniform"
            assert "uniform" in approx[f"encoder.layer.{i}.attention"]
        lin1, act, lin2 = res2.branch.ops
        assert act == cs.Act("gelu")
        layer = model.encoder.layer[i]
        for op_sigma, w in ((res1.branch.sigma_v, layer.attention.self.value.weight),
                            (res1.branch.sigma_o, layer.attention.output.dense.weight),
                            (lin1.sigma_w, layer.intermediate.dense.weight),
                            (lin2.sigma_w, layer.output.dense.weight)):
            s, se = sigma_hat(w)
            assert math.isclose(float(op_sigma), s, rel_tol=1e-12)
            assert abs(s - 0.02 * math.sqrt(w.shape[1])) <= 4 * se


@pytest.mark.slow
def test_body_theory_against_measured():
    """Slow: the standard-regime theory of each layer at two widths and 8 seeds (~1–2 min)."""
    case, model, x, blocks, approx, b = body("BERT")
    body_theory(b)
    (r, se, _), comps = extrapolated("BERT")
    assert abs(r - 1) <= 4 * se, (r, se, comps)


def _redraw(sigma_w: float, sigma_vo: float | None):
    """An ``init(model, x)`` for :func:`critsym.repro.models.compare`: BERT's MLP weights
    redrawn N(0, σ_w²/fan_in) (and the value and output projections at σ_vo, if given), each
    call from its own generator."""
    import torch

    calls = []

    def init(model, x):
        calls.append(None)
        g = torch.Generator().manual_seed(777 + len(calls))
        with torch.no_grad():
            for layer in model.encoder.layer:
                lins = [(layer.intermediate.dense, sigma_w), (layer.output.dense, sigma_w)]
                if sigma_vo is not None:
                    lins += [(layer.attention.self.value, sigma_vo),
                             (layer.attention.output.dense, sigma_vo)]
                for lin, s in lins:
                    lin.weight.normal_(0.0, s / math.sqrt(lin.weight.shape[1]), generator=g)

    return init


@pytest.mark.slow
@pytest.mark.parametrize("sigma_w, sigma_vo", [(0.05, None), (0.25, 1.0)])
def test_body_theory_against_measured_below_sigma_w_03(sigma_w, sigma_vo):
    """Slow (~4 min each): BERT with its MLP at sigma_w < 0.3 (tokens collapse slowly towards
    the fixed point) and, in the second case, value and output projections at sigma 1 (strong
    token mixing, J^{0,2} well below 1): measured / theory of J^{0,2} over 8 seeds at widths
    32, 64, 128, extrapolated in 1/width, is 1 within 4 SE."""
    comps = [M.compare(M.CASES["BERT"], 8, init=_redraw(sigma_w, sigma_vo), width=w)
             for w in (32, 64, 128)]
    r, se, _ = M.extrapolated_ratio((32, 64, 128), comps)
    assert abs(r - 1) <= 4 * se, (r, se, comps)
