"""Monte Carlo of pre-LN transformer blocks (uniform and deterministic attention, ReLU MLP)
against the exchangeable-token theory: q (K), p (O_C), j (J) and k per block, scored with
critsym.validate's rule (1/d extrapolation over two widths, |z| <= 4 from the measured standard
errors).  The networks are built from critsym's operators (``Attention.to_torch``); the
theory is critsym's fold (``derive(block).run``) and, independently, the closed forms of
tests/_transformer_reference.py, which agree with each other to rounding."""

import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch
from _transformer_reference import pre_ln_run

import critsym as cs
from critsym.ops.attention import token_count
from critsym.stats import mean_se
from critsym.torch.attention import StackedAttention
from critsym.torch.build import build_blocks, network_generators
from critsym.torch.modules import BuildContext
from critsym.torch.tokens import simulate_tokens, token_statistics, validate_tokens
from critsym.torch.validate import score

SIGMA_QK = 1.5  # deterministic regime: β = σ_QK²/τ = 2.25 (τ = 1)
MLP = 2.0
DEPTH = 4


def block(n, regime, sigma_ov="sigma_v", mlp=MLP):
    """Pre-LN block h ↦ h + Attn(LN h) ↦ h + W₂ relu(W₁ LN h), σ_O = 1, σ₁² = mlp, σ₂ = 1."""
    kw = {} if regime == "uniform" else {"sigma_qk": SIGMA_QK}
    attn = cs.Attention(n, regime, sigma_v=sigma_ov, sigma_o=1.0, **kw)
    mlp_branch = cs.LayerNorm() >> cs.Linear(math.sqrt(mlp), 0) >> cs.Act("relu") \
        >> cs.Linear(1.0, 0)
    return cs.Residual(cs.LayerNorm() >> attn, 1) >> cs.Residual(mlp_branch, 1)


@cache
def fold_theory(n, regime):
    return cs.derive(block(n, regime))


def _case(regime, n, sigma_ov, *, widths=(32, 64), n_nets=48, seed=3, depth=DEPTH, mlp=MLP,
          theory=None):
    ref = pre_ln_run(depth, n, sigma_ov, mlp, regime, beta=SIGMA_QK**2)
    res = validate_tokens(block(n, regime, sigma_ov, mlp), n, widths, depth,
                          theory=ref if theory is None else theory, n_nets=n_nets,
                          n_probes=4, seed=seed)
    return res, ref


DEFAULT = [("uniform", 8, 1.0), ("uniform", 4, 2.0), ("deterministic", 32, 0.5),
           ("deterministic", 8, 2.0)]
GRID = [c for c in itertools.product(("uniform", "deterministic"), (4, 8, 32), (0.5, 1.0, 2.0))
        if c not in DEFAULT]


def _same_run(run, ref):
    for q in ("K", "O_C", "J", "k"):
        np.testing.assert_allclose(getattr(run, q), getattr(ref, q), rtol=1e-10, atol=1e-14)


def test_fold_theory_equals_the_independent_closed_forms_uniform():
    th = fold_theory(8, "uniform")
    for s in (0.5, 2.0):
        _same_run(th.run(DEPTH, K0=1.0, O_C0=0.0, sigma_v=s), pre_ln_run(DEPTH, 8, s, MLP))


@pytest.mark.slow
def test_fold_theory_equals_the_independent_closed_forms_deterministic():
    """(The fold of this block takes minutes: its closed forms time out and fall back to
    quadrature.)"""
    th = fold_theory(8, "deterministic")
    _same_run(th.run(DEPTH, K0=1.0, O_C0=0.0, sigma_v=1.0),
              pre_ln_run(DEPTH, 8, 1.0, MLP, "deterministic", beta=SIGMA_QK**2))


@pytest.mark.parametrize("regime,n,sigma_ov", DEFAULT)
def test_pre_ln_block_against_theory(regime, n, sigma_ov, single_thread):
    res, _ = _case(regime, n, sigma_ov)
    assert res.n_scored == 4 * DEPTH
    assert res.passed, res.to_text()


def test_pre_ln_block_against_the_fold_theory(single_thread):
    """validate_tokens' default theory: critsym.derive(block).run."""
    arch = block(8, "uniform")
    fold_theory(8, "uniform")  # warm the fold cache
    res = validate_tokens(arch, 8, (32, 64), DEPTH, n_nets=48, n_probes=4, seed=3,
                          sigma_v=1.0)
    assert res.n_scored == 4 * DEPTH and res.passed, res.to_text()


@pytest.mark.slow
@pytest.mark.parametrize("regime,n,sigma_ov", GRID)
def test_pre_ln_block_against_theory_full_grid(regime, n, sigma_ov, single_thread):
    res, _ = _case(regime, n, sigma_ov, n_nets=64)
    assert res.passed, res.to_text()


def test_the_checks_reject_the_other_regime(single_thread):
    """The same simulations score the uniform recursion against deterministic attention (and
    back) at σ_OV = 2: the deviation is many standard errors, so the checks above can fail."""
    for regime, other in (("deterministic", "uniform"), ("uniform", "deterministic")):
        res, _ = _case(regime, 8, 2.0)
        wrong = pre_ln_run(DEPTH, 8, 2.0, MLP, other, beta=SIGMA_QK**2)
        zs = [abs(score(q, layer, getattr(wrong, q)[layer], res.widths,
                        [s.mean(q)[layer] for s in res.sims],
                        [s.se(q)[layer] for s in res.sims])["z"])
              for q in ("K", "O_C", "J", "k") for layer in range(1, DEPTH + 1)]
        assert max(zs) > 6, (regime, max(zs))


def test_naive_product_of_block_chis_is_measurably_wrong(single_thread):
    """At n = 8, σ_OV = 1 the APJN after 8 blocks differs from the product of the per-block
    χ = M[0, 0] (the j → j entry of the (j, k) map): the 1/d-extrapolated Monte Carlo rejects
    the product by more than 6 standard errors while the two-part recursion passes."""
    depth, mlp = 8, 0.5
    res, ref = _case("uniform", 8, 1.0, widths=(64, 128), n_nets=64, seed=5, depth=depth,
                     mlp=mlp)
    assert res.passed, res.to_text()
    row = score("J", depth, ref.naive_J[depth], res.widths,
                [s.J[depth] for s in res.sims], [s.J_se[depth] for s in res.sims])
    assert row["z"] > 6, row
    assert ref.naive_J[depth] < 0.7 * ref.J[depth]  # the size of the miss: over 30 %


def test_naive_product_is_the_fold_theorys_m00():
    """The reference's naive product uses χ = M[0, 0] of the fold's tangent map."""
    th = cs.derive(cs.Residual(cs.LayerNorm() >> cs.Attention(8), 1))
    q, p = 1.7, 0.4
    M = th.tangent_map(K=q, O_C=p, sigma_v=1.0, sigma_o=1.0)
    assert M[0, 0] == pytest.approx(1 + 1 / (8 * q), rel=1e-12)


def test_token_statistics_at_the_input_are_unbiased(single_thread):
    """Block-free check of the estimators: h⁰ with q⁰ = 1.3, p⁰ = 0.4 gives K⁰, O_C⁰ within
    4 SE of the inputs' law and O_T⁰ of 0, j⁰ = 1 and k⁰ = 0 within 4 SE."""
    r = simulate_tokens(block(6, "uniform", 1.0), (6, 32), 1, n_nets=64, q0=1.3, p0=0.4, seed=9)
    for name, want in (("K", 1.3), ("O_C", 0.4), ("O_T", 0.0), ("J", 1.0), ("k", 0.0)):
        assert abs(r.mean(name)[0] - want) <= 4 * r.se(name)[0], (name, r.mean(name)[0])
    assert math.isfinite(r.K[1])


@pytest.mark.parametrize("ex", cs.Attention.examples(), ids=lambda ex: ex.label())
def test_attention_contract_examples_against_monte_carlo(ex, single_thread):
    """The operator's own contract examples (multi-axis, so outside the contract suite's
    single-axis Monte Carlo): K, O_C, J, k of four blocks against the fold, |z| <= 4."""
    res = validate_tokens(ex.block, token_count(ex.block), (16, 32), DEPTH, n_nets=32, seed=2,
                          p0=0.2, **ex.hp)
    assert res.n_scored == 4 * DEPTH
    assert res.passed, res.to_text()


def test_softmax_path_contributes_order_one_over_d(single_thread):
    """Deterministic attention differentiates through its logits; the theory leaves that path
    out as O(1/d).  Paired Monte Carlo (the same networks, inputs and probes, with and without
    the path) of one pre-LN attention block at n = 8: the difference ΔJ is nonzero (> 4 SE) and
    d·ΔJ is the same at d = 32 and d = 128 within 4 SE of their difference."""
    n, nets = 8, 64
    blk = cs.Residual(cs.LayerNorm() >> cs.Attention(n, "deterministic", sigma_qk=SIGMA_QK,
                                                      sigma_v=1.0, sigma_o=1.0), 1)
    scaled = []
    for d in (32, 128):
        ctx = BuildContext(n_nets=nets, width=d, values={},
                           generators=network_generators(0, 0, nets, torch.device("cpu")))
        blocks = torch.nn.ModuleList(build_blocks(blk, ctx, (n, d), 1))
        full = token_statistics(blocks, (n, d), range(nets), n_probes=8, p0=0.2, seed=1)[3][1]
        for m in blocks.modules():
            if isinstance(m, StackedAttention):
                m.softmax_path = False
        value = token_statistics(blocks, (n, d), range(nets), n_probes=8, p0=0.2, seed=1)[3][1]
        diff, se = mean_se(full - value)
        assert diff > 4 * se, (d, diff, se)
        scaled.append((d * diff, d * se))
    (a, sa), (b, sb) = scaled
    assert abs(a - b) <= 4 * math.hypot(sa, sb), scaled


def _relu_mlp():
    return cs.Linear("sigma_1", 0) >> cs.Act("relu") >> cs.Linear("sigma_2", 0)


LAYOUTS = {
    # post-LN: the LayerNorm fixes K = 1 exactly, so K is not scored
    "post-LN": (cs.Residual(cs.Attention(8), 1) >> cs.LayerNorm()
                >> cs.Residual(_relu_mlp(), 1) >> cs.LayerNorm(), {}, ("O_C", "J", "k")),
    "no LN": (cs.Residual(cs.Attention(8), 1) >> cs.Residual(_relu_mlp(), 1), {},
              ("K", "O_C", "J", "k")),
    "pre-LN, mu = 0.8": (cs.Residual(cs.LayerNorm() >> cs.Attention(8), "mu")
                         >> cs.Residual(cs.LayerNorm() >> _relu_mlp(), "mu"), {"mu": 0.8},
                         ("K", "O_C", "J", "k")),
}


@pytest.mark.parametrize("layout", [
    "post-LN", pytest.param("no LN", marks=pytest.mark.slow),
    pytest.param("pre-LN, mu = 0.8", marks=pytest.mark.slow)])
def test_other_block_layouts_against_the_fold(layout, single_thread):
    """Uniform attention in post-LN, normalisation-free and μ < 1 blocks, from p⁰ = 0.2:
    the fold's (q, p, j, k) against token Monte Carlo, |z| <= 4 after 1/d extrapolation."""
    arch, extra, quantities = LAYOUTS[layout]
    res = validate_tokens(arch, 8, (32, 64), DEPTH, n_nets=48, p0=0.2, seed=2,
                          quantities=quantities, sigma_v=1.0, sigma_o=1.0, sigma_1=1.0,
                          sigma_2=1.0, **extra)
    assert res.n_scored == len(quantities) * DEPTH
    assert res.passed, res.to_text()


@pytest.mark.parametrize("n,sigma_qk,heads", [
    (4, 2.0, 1), pytest.param(8, 1.0, 2, marks=pytest.mark.slow)])
def test_standard_attention_block_against_its_theory(n, sigma_qk, heads, single_thread):
    """The stacked standard-regime map (independent W_Q, W_K, 1/√d_k logits, random A) in one
    pre-LN block from q⁰ = 1, p⁰ = 0.3: (q, p, j, k) against the standard-regime theory
    (critsym.repro.attention_standard.theory, exact expectations over the Gaussian logits with
    the query/key tangent term), |z| <= 4 after 1/d extrapolation; the value path alone
    (j = 1 + D) is rejected by the same data."""
    from critsym.attention.softmax_moments import softmax_D
    from critsym.repro.attention_standard import theory

    th = theory(n, sigma_qk, depth=1, mode="block", q0=1.0, p0=0.3, heads=heads)
    blk = cs.Residual(cs.LayerNorm() >> cs.Attention(n, "standard", sigma_qk=sigma_qk,
                                                      sigma_v=1.0, sigma_o=1.0, heads=heads), 1)
    widths = (32, 64)
    sims = [simulate_tokens(blk, (n, w), 1, n_nets=256, q0=1.0, p0=0.3, seed=11 + i)
            for i, w in enumerate(widths)]

    def row(name, value):
        return score(name, 1, value, widths, [s.mean(name)[1] for s in sims],
                     [s.se(name)[1] for s in sims])

    for ours, theirs in (("K", "q"), ("O_C", "p"), ("J", "j"), ("k", "k")):
        r = row(ours, th[theirs])
        assert abs(r["z"]) <= 4, (ours, r)
    D = float(softmax_D(n, sigma_qk**2 * 1.0 * 0.7))
    assert abs(row("J", 1 + D)["z"]) > 6
