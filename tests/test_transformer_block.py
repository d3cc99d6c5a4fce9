"""transformer_block, its activations and normalizations in token states, against hand-built
stacks, closed forms written here and the single-token reduction of a collapsed state."""

import math

import numpy as np
import pytest
import torch

import critsym as cs
from critsym.errors import ArchitectureError

ATT = cs.Attention(8, sigma_v="sigma_w", sigma_o="sigma_w")


@pytest.mark.parametrize("norm", ["pre", "post", None])
def test_hand_built_stack_gives_the_same_theory(norm):
    mlp = cs.Linear("sigma_w", 0) >> cs.Act("gelu") >> cs.Linear("sigma_w", 0)
    ln = cs.LayerNorm()
    hand = {"pre": cs.Residual(ln >> ATT, "mu") >> cs.Residual(ln >> mlp, "mu"),
            "post": cs.Residual(ATT, "mu") >> ln >> cs.Residual(mlp, "mu") >> ln,
            None: cs.Residual(ATT, "mu") >> cs.Residual(mlp, "mu")}[norm]
    block = cs.transformer_block(ATT, "gelu", norm, "mu")
    assert block == hand
    th, th_hand = cs.derive(block), cs.derive(hand)
    assert th.maps == th_hand.maps
    r = th.run(3, K0=1.0, O_C0=0.3, sigma_w=0.9, mu=0.8)
    assert np.all(np.isfinite(r.J)) and np.all(np.isfinite(r.k))


def test_bad_transformer_block_arguments():
    with pytest.raises(ArchitectureError, match="norm"):
        cs.transformer_block(ATT, norm="middle")
    with pytest.raises(ArchitectureError, match="Attention"):
        cs.transformer_block(cs.Linear())
    assert cs.transformer_block(8) == cs.transformer_block(cs.Attention(8))


def test_phases_of_the_three_placements():
    """Pre-LN μ = 1: J grows slowly (K linearly); post-LN: K = 1 and J decays at first; no
    LN: K and J grow exponentially."""
    hp = dict(sigma_w=1.0, mu=1.0)
    runs = {n: cs.derive(cs.transformer_block(ATT, "relu", n, "mu")).run(30, K0=1.0, O_C0=0.2,
                                                                          **hp)
            for n in ("pre", "post", None)}
    pre, post, none = runs["pre"], runs["post"], runs[None]
    np.testing.assert_allclose(post.K, 1.0, rtol=1e-12)
    assert post.J[5] < 1 and pre.J[30] > pre.J[10] > 1
    assert np.all(np.diff(pre.K) > 0) and np.all(np.diff(np.diff(pre.K)) < 0.2)
    assert none.J[30] > 1e6 and none.K[30] > 1e6


def test_gelu_tanh_and_derf_activations():
    t = torch.linspace(-4, 4, 41, dtype=torch.float64)
    g = cs.Act("gelu_tanh").torch_function({})
    ref = 0.5 * t * (1 + torch.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))
    torch.testing.assert_close(g(t), ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(g(t), torch.nn.functional.gelu(t, approximate="tanh"))
    d = cs.Act("derf", alpha=0.7).torch_function({})
    torch.testing.assert_close(d(t), torch.erf(0.7 * t))
    # the variance map of erf(αx) >> Linear: E[erf(αx)²] = (2/π) asin(2α²K/(1 + 2α²K))
    th = cs.derive(cs.Act("derf", alpha="alpha") >> cs.Linear())
    K, a = 1.7, 0.6
    want = 2 / np.pi * np.arcsin(2 * a**2 * K / (1 + 2 * a**2 * K))
    assert th.variance_map(K=K, alpha=a, sigma_w=1.0, sigma_b=0) == pytest.approx(want, 1e-12)


def test_gelu_tanh_imports_from_torch():
    imp = cs.from_torch(torch.nn.Sequential(torch.nn.Linear(6, 6),
                                            torch.nn.GELU(approximate="tanh"),
                                            torch.nn.Linear(6, 6)))
    assert cs.Act("gelu_tanh") in imp.arch.ops


def test_rmsnorm_in_a_token_state_matches_layernorm_pre():
    """On zero-mean preactivations without per-token offsets RMSNorm-pre has LayerNorm-pre's
    theory, tangent included."""
    rms = cs.transformer_block(ATT, "relu", "pre", 1, norm_op=cs.RMSNorm())
    ln = cs.transformer_block(ATT, "relu", "pre", 1)
    a, b = cs.derive(rms), cs.derive(ln)
    for K, OC in [(1.0, 0.2), (3.0, 2.0)]:
        np.testing.assert_allclose(a.tangent_map(K=K, O_C=OC, sigma_w=0.8),
                                   b.tangent_map(K=K, O_C=OC, sigma_w=0.8), rtol=1e-12)
        assert a.variance_map(K=K, O_C=OC, sigma_w=0.8) == pytest.approx(
            b.variance_map(K=K, O_C=OC, sigma_w=0.8), rel=1e-12)


def derf_reference(depth, n, q0, p0, s_att, s_mlp, alpha):
    """Derf ViT block (erf(αx) in place of each LayerNorm, uniform attention, ReLU MLP) in the
    n → ∞ form (ν → p̃; the tangent keeps its 1/n terms): erf moments written from the
    arcsine kernel E[erf(αu) erf(αv)] = (2/π) asin(2α²C/√((1+2α²V1)(1+2α²V2)))."""
    a, m = s_att**2, s_mlp**2

    def erf2(q, c):
        return 2 / np.pi * np.arcsin(2 * alpha**2 * c / (1 + 2 * alpha**2 * q))

    def dd(q, c):  # E[φ'(u)φ'(v)], φ = erf(α·)
        return 4 * alpha**2 / np.pi / np.sqrt((1 + 2 * alpha**2 * q) ** 2
                                               - 4 * alpha**4 * c**2)

    q, p, j, k = q0, p0, 1.0, 0.0
    for _ in range(depth):
        qh, ph = dd(q, q), dd(q, p)
        up = erf2(q, p)
        j, k = (1 + a * qh / n) * j + a * ph * k, (1 + a * ph) * k + a * qh / n * j
        q, p = q + a * up, p + a * up
        u, v = erf2(q, q), erf2(q, p)
        rho = v / u
        qh, ph = dd(q, q), dd(q, p)
        kap = (np.sqrt(1 - rho**2) + rho * (np.pi - np.arccos(rho))) / (2 * np.pi)
        j = (1 + 0.5 * m * qh) * j
        k = (1 + m * (0.25 + np.arcsin(rho) / (2 * np.pi)) * ph) * k
        q, p = q + 0.5 * m * u, p + m * u * kap
    return q, j


def test_derf_block_against_the_large_n_form():
    S = 0.64 * np.sqrt(768 / 1024)
    n = 10**9
    att = cs.Attention(n, sigma_v="sigma_w", sigma_o="sigma_w")
    block = cs.transformer_block(att, "relu", "pre", 1, sigma_1="sigma_w", sigma_2="sigma_2",
                                 norm_op=cs.Act("derf", alpha="alpha"))
    r = cs.derive(block).run(64, K0=1.0, O_C0=0.2, sigma_w=S, sigma_2=2 * S, alpha=1.0)
    q, j = derf_reference(64, n, 1.0, 0.2, S * S, S * 2 * S, 1.0)
    assert r.K[-1] == pytest.approx(q, rel=1e-8)
    assert r.J[-1] == pytest.approx(j, rel=1e-8)


@pytest.mark.slow
def test_critical_point_of_a_collapsing_block_equals_its_single_token_reduction():
    """No-LN block, tanh MLP with biases, μ = 1/2: the tokens collapse (O_C* = K*), and the
    block then acts on one token as h ↦ μh + W_O W_V h, h ↦ μh + W₂ tanh(W₁ h + b₁) + b₂, a
    single-axis architecture derived and solved independently."""
    th = cs.derive(cs.transformer_block(ATT, "tanh", None, "mu", sigma_b="sigma_b"))
    hp = dict(mu=0.5, sigma_b=0.3)
    fp = th.fixed_point(K0=1.0, O_C0=0.2, sigma_w=1.0, **hp)
    assert fp.status == "finite" and fp.O_C_star == pytest.approx(fp.K_star, rel=1e-9)
    single = (cs.Residual(cs.Linear("sigma_w", 0) >> cs.Linear("sigma_w", 0), "mu")
              >> cs.Residual(cs.Linear("sigma_w", "sigma_b") >> cs.Act("tanh")
                             >> cs.Linear("sigma_w", "sigma_b"), "mu"))
    fs = cs.derive(single).fixed_point(K0=1.0, sigma_w=1.0, **hp)
    assert fp.K_star == pytest.approx(fs.K_star, rel=1e-9)
    assert fp.chi_star == pytest.approx(fs.chi_star, rel=1e-7)
    sc = cs.critical_point(th, "sigma_w", K0=1.0, bracket=(0.9, 1.2), scan=8, **hp)
    s1 = cs.critical_point(cs.derive(single), "sigma_w", K0=1.0, bracket=(0.9, 1.2), **hp)
    assert sc == pytest.approx(s1, rel=1e-8)


S_VIT = 0.64 * np.sqrt(768 / 1024)


def vit_like(norm_op=None):
    att = cs.Attention(196, sigma_v="sigma_w", sigma_o="sigma_w")
    return cs.transformer_block(att, "relu", "pre", 1, sigma_1="sigma_w", sigma_2="sigma_2",
                                norm_op=norm_op)


def test_layernorm_transformer_grows_as_a_power_law():
    """Pre-LN: q grows linearly and χ − 1 ∝ 1/q, so J ∝ l^p: the local exponent l·log χ
    tends to a constant."""
    g = cs.j_growth(cs.derive(vit_like()), depth=1000, K0=1.0, O_C0=0.2, sigma_w=S_VIT,
                    sigma_2=2 * S_VIT)
    assert g.kind == "power law" and abs(g.beta) < 0.05
    assert 0.5 < g.power < 1.0


@pytest.mark.slow
def test_derf_transformer_grows_as_a_stretched_exponential():
    """erf(αx) in place of LayerNorm: its derivative factors fall as 1/√q, so χ − 1 ∝ 1/√l and
    log J ∝ √l: a stretched exponential with β near 1/2."""
    g = cs.j_growth(cs.derive(vit_like(cs.Act("derf", alpha="alpha"))), depth=1000, K0=1.0,
                    O_C0=0.2, sigma_w=S_VIT, sigma_2=2 * S_VIT, alpha=1.0)
    assert g.kind == "stretched exponential" and abs(g.beta - 0.5) < 0.05


@pytest.mark.slow
def test_phase_grid_of_a_transformer_block():
    """No-LN block with a tanh MLP and biases: an ordered region (χ_J* < 1) and a chaotic one
    (χ_J* > 1) in (σ_w, μ), through the same phase_grid as every other theory."""
    th = cs.derive(cs.transformer_block(ATT, "tanh", None, "mu", sigma_b=0.3))
    grid = cs.phase_grid(th, "sigma_w", [0.6, 1.6], "mu", [0.3, 0.6], K0=1.0)
    chi = np.asarray(grid.chi_star)
    assert chi.shape == (2, 2)
    assert np.all(chi[:, 0] < 1) and np.all(chi[:, 1] > 1)
