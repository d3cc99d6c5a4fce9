"""Monte Carlo of pre-LN transformer blocks (uniform and deterministic attention, ReLU MLP)
against the exchangeable-token theory: q (K), p (O_C), j (J) and k per block, scored with
critsym.validate's rule (1/d extrapolation over two widths, |z| <= 4 from the measured standard
errors).  The theory here is the independent closed form of tests/_transformer_reference.py."""

import itertools
import math

import pytest
from _attention_standin import AttentionFields, PreLNBlock
from _transformer_reference import pre_ln_run

from critsym.torch.tokens import simulate_tokens, validate_tokens
from critsym.torch.validate import score

SIGMA_QK = 1.5  # deterministic regime: β = σ_QK²/τ = 2.25 (τ = 1)
MLP = 2.0
DEPTH = 4


def _case(regime, n, sigma_ov, *, widths=(32, 64), n_nets=48, seed=3, depth=DEPTH, mlp=MLP):
    block = PreLNBlock(AttentionFields(n, regime, sigma_qk=SIGMA_QK, sigma_v=sigma_ov,
                                       sigma_o=1.0), mlp=mlp)
    ref = pre_ln_run(depth, n, sigma_ov, mlp, regime, beta=SIGMA_QK**2)
    res = validate_tokens(block, n, widths, depth, theory=ref, n_nets=n_nets, n_probes=4,
                          seed=seed)
    return res, ref


DEFAULT = [("uniform", 8, 1.0), ("uniform", 4, 2.0), ("deterministic", 32, 0.5),
           ("deterministic", 8, 2.0)]
GRID = [c for c in itertools.product(("uniform", "deterministic"), (4, 8, 32), (0.5, 1.0, 2.0))
        if c not in DEFAULT]


@pytest.mark.parametrize("regime,n,sigma_ov", DEFAULT)
def test_pre_ln_block_against_theory(regime, n, sigma_ov, single_thread):
    res, _ = _case(regime, n, sigma_ov)
    assert res.n_scored == 4 * DEPTH
    assert res.passed, res.to_text()


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


def test_token_statistics_at_the_input_are_unbiased(single_thread):
    """Block-free check of the estimators: h⁰ with q⁰ = 1.3, p⁰ = 0.4 gives K⁰, O_C⁰ within
    4 SE of the inputs' law and O_T⁰ of 0, j⁰ = 1 and k⁰ = 0 within 4 SE."""
    r = simulate_tokens(PreLNBlock(AttentionFields(6)), (6, 32), 1, n_nets=64, q0=1.3, p0=0.4,
                        seed=9)
    for name, want in (("K", 1.3), ("O_C", 0.4), ("O_T", 0.0), ("J", 1.0), ("k", 0.0)):
        assert abs(r.mean(name)[0] - want) <= 4 * r.se(name)[0], (name, r.mean(name)[0])
    assert math.isfinite(r.K[1])
