"""Hugging Face ViT from a tiny config: its pre-LN layers read with the initialization's σ̂'s;
the MLP sub-layer's theory against the real ``ViTMLP``; the body's J^{0,L} against its theory,
the token Gram recursion (the class token and position embeddings give tokens of unequal
variance, which the exchangeable token state does not hold)."""

import math

import pytest
from _model_cases import body, sigma_hat

import critsym as cs
from critsym.repro import models as M


def test_layers_read_pre_norm_with_the_initialization():
    from critsym.ops.attention import Attention

    case, model, x, blocks, approx, b = body("ViT")
    n = (8 // 4) ** 2 + 1  # patches and the class token
    for i, b in enumerate(blocks):
        res1, res2 = b.ops
        ln, att = res1.branch.ops
        assert ln == cs.LayerNorm() and isinstance(att, Attention) and att.n_tokens == n
        s, se = sigma_hat(model.layers[i].attention.v_proj.weight)
        assert float(att.sigma_v) == s and abs(s - 0.02 * math.sqrt(M.WIDTH)) <= 4 * se
        assert [type(o).__name__ for o in res2.branch.ops] == ["LayerNorm", "Linear", "Act",
                                                               "Linear"]


def test_mlp_theory_against_the_real_vit_mlp():
    widths = (32, 64)
    comps = [M.compare_part(lambda s, w=w: M.vit(s, w)[0].layers[0].mlp, 1.0, seeds=12,
                            shape=(32, 5, w)) for w in widths]
    r, se, _ = M.extrapolated_ratio(widths, comps)
    assert abs(r - 1) <= 4 * se, (r, se, comps)


@pytest.mark.slow
def test_body_theory_with_the_class_token_against_measured():
    """Slow (~3 min).  The class token (and position embeddings) give tokens of unequal
    variance: the import labels them, and the body's theory is the token Gram recursion
    without a mask from each example's measured input Gram.  measured/theory of J^{0,L},
    1/width extrapolated over widths 32, 64, 128 (8 seeds each), is 1 within 4 SE (measured:
    1.003 ± 0.013); the exchangeable theory (the tokens' average) gave 1.37 ± 0.05."""
    from critsym.attention.gram_theory import UNLIKE_TOKENS

    case, model, x, blocks, approx, b = body("ViT")
    assert any(UNLIKE_TOKENS in t for t in approx.values())
    assert M.body_theory_run(b)[1].startswith("token Gram recursion")
    widths = (32, 64, 128)
    comps = [M.compare(case, seeds=8, width=w) for w in widths]
    r, se, _ = M.extrapolated_ratio(widths, comps)
    assert abs(r - 1) <= 4 * se, (r, se, comps)
