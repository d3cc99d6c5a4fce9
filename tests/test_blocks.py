"""F and chi_J of the standard blocks against the formulas of the papers, evaluated with
independent quadrature (tests/reference.py), at random hyperparameters, to 1e-10."""

import numpy as np
import pytest
from reference import PHI, gauss

import critsym as cs

ACTS = ["tanh", "relu", "erf", "gelu", "sin", "silu"]
rng = np.random.default_rng(12345)
POINTS = [dict(K=float(k), sigma_w=float(w), sigma_b=float(b), mu=float(m))
          for k, w, b, m in zip(rng.uniform(0.05, 4, 4), rng.uniform(0.3, 2.5, 4),
                                rng.uniform(0.0, 1.0, 4), rng.uniform(0.1, 1.2, 4))]


def moments(act, K):
    p, dp = PHI[act]
    e2 = gauss(lambda x: p(x) ** 2, K)
    e1 = gauss(p, K)
    d2 = gauss(lambda x: dp(x) ** 2, K)
    return e1, e2, d2


def expected(block, act, K, sw, sb, mu):
    """(F, chi) from docs/theory.md#one-block-recursions."""
    e1, e2, d2 = moments(act, K)
    _, z2, zd2 = moments(act, 1.0)
    if block == "vanilla":
        return sw**2 * e2 + sb**2, sw**2 * d2
    if block == "ln_pre":
        return sw**2 * z2 + sb**2, sw**2 * zd2 / K
    if block == "ln_post":
        return sw**2 + sb**2, sw**2 * d2 / (e2 - e1**2)
    if block == "residual":
        return mu**2 * K + sw**2 * e2 + sb**2, mu**2 + sw**2 * d2
    if block == "residual_ln_pre":
        return mu**2 * K + sw**2 * z2 + sb**2, mu**2 + sw**2 * zd2 / K
    raise ValueError(block)


ARCH = {
    "vanilla": dict(layernorm=None, residual_mu=None),
    "ln_pre": dict(layernorm="pre", residual_mu=None),
    "ln_post": dict(layernorm="post", residual_mu=None),
    "residual": dict(layernorm=None, residual_mu=True),
    "residual_ln_pre": dict(layernorm="pre", residual_mu=True),
}


@pytest.mark.parametrize("block", sorted(ARCH))
@pytest.mark.parametrize("act", ACTS)
def test_block_recursions(block, act):
    th = cs.derive(cs.mlp_block(act, **ARCH[block]))
    for p in POINTS:
        hp = dict(sigma_w=p["sigma_w"], sigma_b=p["sigma_b"])
        if "mu" in th.hyperparameter_names:
            hp["mu"] = p["mu"]
        F_ref, chi_ref = expected(block, act, p["K"], p["sigma_w"], p["sigma_b"], p["mu"])
        assert float(th.variance_map(p["K"], **hp)) == pytest.approx(F_ref, rel=1e-10)
        assert float(th.chi_J(p["K"], **hp)) == pytest.approx(chi_ref, rel=1e-10)


def test_two_layer_residual_branch():
    """LN -> W1 -> φ -> W2 inside a residual (docs/theory.md#one-block-recursions, MLP sub-block):
    F = μ²K + σ_w² E_q[φ²] + σ_b², χ = μ² + σ_w⁴ E_q[φ'²]/K with q = σ_w² + σ_b²."""
    arch = cs.Residual(cs.LayerNorm() >> cs.Linear() >> cs.Act("gelu") >> cs.Linear())
    th = cs.derive(arch)
    for p in POINTS:
        sw, sb, mu, K = p["sigma_w"], p["sigma_b"], p["mu"], p["K"]
        q = sw**2 + sb**2
        _, e2, d2 = moments("gelu", q)
        hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
        assert float(th.variance_map(K, **hp)) == pytest.approx(
            mu**2 * K + sw**2 * e2 + sb**2, rel=1e-10)
        assert float(th.chi_J(K, **hp)) == pytest.approx(mu**2 + sw**4 * d2 / K, rel=1e-10)


def test_resnet_block_two_layernorms():
    """LN -> relu -> W -> LN -> relu -> W (+μ): F = μ²K + σ_w²/2 + σ_b²,
    χ = μ² + (σ_w²/(2K))·(σ_w²/2)/(σ_w²/2 + σ_b²)  (docs/theory.md#one-block-recursions)."""
    relu = cs.Act("relu")
    arch = cs.Residual(cs.LayerNorm() >> relu >> cs.Linear() >> cs.LayerNorm() >> relu
                       >> cs.Linear())
    th = cs.derive(arch)
    for p in POINTS:
        sw, sb, mu, K = p["sigma_w"], p["sigma_b"], p["mu"], p["K"]
        hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
        assert float(th.variance_map(K, **hp)) == pytest.approx(
            mu**2 * K + sw**2 / 2 + sb**2, rel=1e-12)
        chi = mu**2 + (sw**2 / (2 * K)) * (sw**2 / 2) / (sw**2 / 2 + sb**2)
        assert float(th.chi_J(K, **hp)) == pytest.approx(chi, rel=1e-12)


def test_branch_not_ending_in_linear():
    """h -> μh + tanh(h) then a Linear: the expectation is of the whole sum."""
    th = cs.derive(cs.Residual(cs.Act("tanh")) >> cs.Linear())
    for p in POINTS:
        sw, sb, mu, K = p["sigma_w"], p["sigma_b"], p["mu"], p["K"]
        F = sw**2 * gauss(lambda x: (mu * x + np.tanh(x)) ** 2, K) + sb**2
        chi = sw**2 * gauss(lambda x: (mu + 1 - np.tanh(x) ** 2) ** 2, K)
        hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
        assert float(th.variance_map(K, **hp)) == pytest.approx(F, rel=1e-10)
        assert float(th.chi_J(K, **hp)) == pytest.approx(chi, rel=1e-10)


def test_distinct_hyperparameters_per_layer():
    arch = cs.Act("relu") >> cs.Linear("sigma_w1", "sigma_b1") >> cs.Act("erf") >> cs.Linear(
        "sigma_w2", 0)
    th = cs.derive(arch)
    assert set(th.hyperparameter_names) == {"sigma_w1", "sigma_b1", "sigma_w2"}
    K, w1, b1, w2 = 0.8, 1.3, 0.4, 0.9
    K1 = w1**2 * K / 2 + b1**2
    F = w2**2 * 2 / np.pi * np.arcsin(2 * K1 / (1 + 2 * K1))
    chi = w1**2 / 2 * w2**2 * 4 / (np.pi * np.sqrt(1 + 4 * K1))
    assert float(th.variance_map(K, sigma_w1=w1, sigma_b1=b1, sigma_w2=w2)) == pytest.approx(
        F, rel=1e-12)
    assert float(th.chi_J(K, sigma_w1=w1, sigma_b1=b1, sigma_w2=w2)) == pytest.approx(
        chi, rel=1e-12)


@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_correlation_map_and_chi_c(act):
    """c-map of a vanilla block: G(K,K,cK) against 2-D quadrature, and dc'/dc at c=1 equals
    χ_J at the same K (a standard mean-field identity, F(K) = K only at the fixed point, so
    compare d G(K,K,cK)/d(cK) at c = 1 with χ_J)."""
    from reference import gauss2

    th = cs.derive(cs.mlp_block(act))
    p, _ = PHI[act]
    sw, sb, K = 1.4, 0.3, 0.9
    for c in [-0.4, 0.2, 0.7]:
        G = sw**2 * gauss2(p, p, K, K, c * K) + sb**2
        assert float(th.covariance_map(K=K, K12=c * K, sigma_w=sw, sigma_b=sb)) == pytest.approx(
            G, rel=1e-9)
    chi = float(th.chi_J(K, sigma_w=sw, sigma_b=sb))
    if th.G.has(cs.GaussE2):  # no closed form: one-sided finite difference (smooth φ)
        h = 1e-5
        g0, g1, g2 = (th.covariance_map(K=K, K12=K * (1 - j * h), sigma_w=sw, sigma_b=sb)
                      for j in range(3))
        slope = (3 * g0 - 4 * g1 + g2) / (2 * K * h)
        assert float(slope) == pytest.approx(chi, rel=1e-6)
    else:  # closed form: differentiate symbolically, evaluate at c -> 1
        import sympy as sp

        from critsym.symbols import K11, K12, K22
        dG = sp.diff(th.G, K12).subs({cs.sigma_w: sw, cs.sigma_b: sb, K11: K, K22: K})
        assert float(sp.limit(dG, K12, K, "-")) == pytest.approx(chi, rel=1e-12)
