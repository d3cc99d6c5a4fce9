"""Token bodies whose tokens are not alike (a class token near zero) and the phase of the token
Gram recursion (critsym.attention.gram_theory).

* LayerNorm of a token of variance s² divides its tangent by s² (closed form);
* the Gram recursion's χ_J* = ρ(L_K*) on exchangeable tokens against the Perron root of the
  fold's two-part (j, k) map (independent code), and a pre-LN μ = 1 block, masked or not,
  grows without bound with χ_J* → 1;
* a hand-built torch pre-LN stack whose token 0 is 10× smaller than the rest: the importer
  labels it and runs the Gram recursion (no mask) as its theory; Monte Carlo of the real torch
  stack, 1/width extrapolated, agrees within 4 SE, and the exchangeable theory (tokens' average)
  is rejected beyond 4 SE.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from _torch_models import ViTBlock
from torch import nn

import critsym as cs
from critsym.attention.causal import causal_run
from critsym.attention.gram_theory import UNLIKE_TOKENS, gram_phase
from critsym.derive import derive
from critsym.ops.attention import Attention
from critsym.ops.residual import Residual
from critsym.torch.validate import extrapolate


def test_layernorm_of_a_small_token_divides_its_tangent_by_its_variance():
    s2 = 1e-3
    K0 = np.diag([s2, 1.0, 1.0, 1.0])
    run = causal_run([cs.LayerNorm()], K0, causal=False)
    T = run.states[0].T
    assert T[0, 0] == pytest.approx(1 / s2, rel=1e-12)
    assert np.allclose(np.diag(T)[1:], 1.0, rtol=1e-12)
    assert run.J[-1] == pytest.approx((1 / s2 + 3) / 4, rel=1e-12)


def test_gram_chi_star_equals_the_fold_perron_root_for_exchangeable_tokens():
    """A chaotic tanh residual MLP on tokens (fixed point with p* < q*): started at the fold's
    fixed point (an exchangeable Gram), the Gram recursion stays there and ρ(L_K*) by power
    iteration on the n × n tangent Gram equals the Perron root of the fold's (j, k) map
    (independent code: symbolic fold against Gauss–Hermite quadrature)."""
    n = 4
    blk = Residual(cs.Linear(sigma_w=2.5, sigma_b=0.3) >> cs.Act("tanh")
                   >> cs.Linear(sigma_w=1.5, sigma_b=0.2), mu=0.6)
    th = derive(blk, tokens=True)
    r = th.run(400, K0=1.0, O_C0=0.2)
    q, p = float(r.K[-1]), float(r.O_C[-1])
    assert 0 < p < 0.99 * q
    M = th.tangent_map(K=q, O_T=0.0, O_C=p)
    perron = float(max(abs(np.linalg.eigvals(np.asarray(M, float)))))
    K0 = p * np.ones((n, n)) + (q - p) * np.eye(n)
    g = gram_phase(blk, K0, causal=False, max_blocks=5000)
    assert g.status == "fixed point"
    assert g.K[-1] == pytest.approx(q, rel=1e-8)
    assert g.chi_star == pytest.approx(perron, rel=1e-8)


def test_gram_chi_star_is_the_large_depth_ratio_of_a_causal_post_norm_stack():
    """A causal post-LN block (finite fixed point): χ_J* from :func:`gram_phase` (fixed point,
    power iteration) equals the per-block ratio J^{0,l+1}/J^{0,l} of a plain 300-block run."""
    n = 5
    blk = cs.transformer_block(Attention(n, "uniform", sigma_v=1.2, sigma_o=1.0), "tanh",
                               "post", 0.8, sigma_1=1.3, sigma_2=1.1, sigma_b=0.2)
    K0 = 0.4 * np.ones((n, n)) + 0.6 * np.eye(n)
    g = gram_phase(blk, K0, causal=True, max_blocks=5000)
    run = causal_run([blk] * 300, K0, causal=True)
    assert g.status == "fixed point"
    assert g.chi_star == pytest.approx(run.J[-1] / run.J[-2], rel=1e-9)


@pytest.mark.parametrize("causal", [True, False])
def test_pre_ln_residual_grows_without_bound_and_chi_tends_to_one(causal):
    n = 4
    blk = cs.transformer_block(Attention(n, "uniform", sigma_v=1.0, sigma_o=1.0), "relu",
                               "pre", 1, sigma_1=1.0, sigma_2=1.0)
    K0 = 0.5 * np.eye(n) + 0.1
    K0[0, 0] = 0.01 + 0.1
    g = gram_phase(blk, K0, causal=causal)
    assert g.status == "unbounded" and g.phase == "critical"
    assert abs(g.chi_star - 1) < 1e-3 and g.exponent > 0
    assert g.chi[-1] > 1  # still above 1 at finite depth: J grows as a power


# ----------------------------------------------------------------------------- Monte Carlo
N_TOKENS = 4
SMALL = 0.1  # the first token's scale against the others'


def _stack(d: int, seed: int):
    torch.manual_seed(seed)
    attn = Attention(N_TOKENS, "uniform", sigma_v=1.0, sigma_o=1.0)
    blocks = [ViTBlock(cs.to_torch_model(attn, d, 1, seed=1000 * seed + i,
                                         dtype=torch.float64)[0], d) for i in range(2)]
    model = nn.Sequential(nn.Identity(), *blocks).double()
    g = torch.Generator().manual_seed(50_000 + seed)
    x = torch.randn(8, N_TOKENS, d, generator=g, dtype=torch.float64)
    x[:, 0] *= SMALL
    return model, x


def _ratios(widths, seeds):
    """Per width: (mean, SE) over seeds of measured/theory for the Gram and the exchangeable
    theory of J^{0,L} (model input → last block)."""
    gram, exch = [], []
    for d in widths:
        rg, rx = [], []
        for s in range(seeds):
            model, x = _stack(d, s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = cs.from_torch(model, x)
            assert any(UNLIKE_TOKENS in t for t in res.approximations.values())
            run = res.network_run()
            assert run.theory.startswith("token Gram recursion")
            ex = res.network_run("exchangeable").J[-1]
            meas = cs.apjn(model, x, ["0", res.outputs[-1]], n_probes=4, seed=s).J[-1]
            rg.append(meas / run.J[-1])
            rx.append(meas / ex)
        gram.append((np.mean(rg), np.std(rg, ddof=1) / math.sqrt(seeds)))
        exch.append((np.mean(rx), np.std(rx, ddof=1) / math.sqrt(seeds)))
    return gram, exch


def test_class_token_stack_against_monte_carlo():
    """Two pre-LN blocks (uniform attention, GELU MLP with torch's default Linear init) on 4
    tokens, token 0 at a tenth of the others' scale: measured/theory extrapolated in 1/width
    (widths 32, 64; 6 initializations each) is 1 within 4 SE for the Gram recursion, and the
    exchangeable theory is rejected beyond 4 SE."""
    widths = (32, 64)
    gram, exch = _ratios(widths, seeds=6)
    r, se, _ = extrapolate(list(widths), [m for m, _ in gram], [s for _, s in gram])
    assert abs(r - 1) <= 4 * se, (r, se, gram)
    rx, sx, _ = extrapolate(list(widths), [m for m, _ in exch], [s for _, s in exch])
    assert abs(rx - 1) > 4 * sx, (rx, sx, exch)


def test_scale_in_a_residual_branch_multiplies_the_branch_gram():
    """Residual(LN >> Linear >> Scale(g)) (timm's LayerScale): the branch's K and T scale by
    g² (closed form: K' = K + g²σ²·LN(K), T' = T + g²σ²·T/(s_a s_b))."""
    n, g, sw = 3, 0.3, 1.2
    K0 = np.diag([0.04, 1.0, 2.0]) + 0.01
    blk = Residual(cs.LayerNorm() >> cs.Linear(sigma_w=sw, sigma_b=0) >> cs.Scale(g), mu=1)
    st = causal_run([blk], K0, causal=False).states[0]
    s = np.sqrt(np.diag(K0))
    assert np.allclose(st.K, K0 + g**2 * sw**2 * K0 / np.outer(s, s), rtol=1e-12)
    assert np.allclose(st.T, np.eye(n) + g**2 * sw**2 * np.eye(n) / np.outer(s, s), rtol=1e-12)


def test_a_body_the_gram_recursion_cannot_run_falls_back_with_a_label():
    """An operator without a Gram rule (here BatchNorm appended to the first block's numeric
    form): network_run gives the exchangeable theory and says why, never silently."""
    from dataclasses import replace

    from critsym.ops.batchnorm import BatchNorm

    model, x = _stack(16, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.from_torch(model, x)
    assert res.network_run().theory.startswith("token Gram recursion")
    b0 = res.blocks[0]
    broken = replace(res, blocks=(replace(b0, arch=b0.arch >> BatchNorm()), *res.blocks[1:]))
    run = broken.network_run()
    assert run.theory == "exchangeable"
    assert run.note.startswith("exchangeable token theory: the token Gram recursion cannot run")
    assert "BatchNorm" in run.note
    assert np.allclose(run.J, res.network_run("exchangeable").J, rtol=1e-12)
