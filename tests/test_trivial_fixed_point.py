"""Continuous transitions out of the trivial fixed point K* = 0 (blocks without biases).

Closed forms (hand-derived small-K expansions, no critsym code): near K = 0, tanh(x)² =
x² − (2/3)x⁴ + …, so E tanh²(√K z) = K − 2K² + O(K³), and the network is linear.

* Plain MLP, tanh, σ_b = 0: F(K) = σ_w² E tanh²; χ_J(0) = σ_w², the transition at σ_w* = 1,
  K* ≈ (σ_w² − 1)/(2σ_w⁴) above it.
* Residual x ↦ μx + σ_w W tanh(x): χ_J(0) = μ² + σ_w², σ_w* = √(1 − μ²).
* No-LN transformer block, uniform attention (σ_OV = σ_O σ_V), tanh MLP (σ₁, σ₂): uniform
  attention adds s·(q/n + (n−1)p/n), s = σ_OV², to q and p; on the token-mean direction
  (q = p) it multiplies the state by a = μ² + s, on the n − 1 others by μ².  The MLP multiplies
  by μ² + σ₁²σ₂² at K → 0.  So χ_J(0) = (μ² + s)(μ² + σ₁²σ₂²) at every n, and
  σ₁* = √(1/(μ² + s) − μ²)/σ₂.  Above it the tokens collapse (p = q) and
  q = μ²aq + σ₂²(σ₁²aq − 2σ₁⁴a²q²) gives K* = (a(μ² + σ₁²σ₂²) − 1)/(2σ₂²σ₁⁴a²).
"""

import numpy as np
import pytest

import critsym as cs
from critsym.criticality.trivial import trivial_chi


@pytest.fixture(scope="module")
def mlp():
    return cs.derive(cs.Act("tanh") >> cs.Linear("sigma_w", "sigma_b"))


@pytest.fixture(scope="module")
def token_block():
    att = cs.Attention(8, "uniform", sigma_v="sigma_v", sigma_o=1.0)
    return cs.derive(cs.transformer_block(att, "tanh", None, "mu", sigma_1="sigma_w",
                                          sigma_2=1.0))


def test_plain_tanh_mlp_critical_point_is_one(mlp):
    assert cs.critical_point(mlp, "sigma_w", sigma_b=0.0) == pytest.approx(1.0, abs=1e-12)
    (t,) = cs.transitions(mlp, "sigma_w", sigma_b=0.0)
    assert t == pytest.approx(1.0, abs=1e-12)
    line = cs.critical_line(mlp, "sigma_b", [0.0, 0.2])
    assert line.y[0] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(line.first_order).all()


def test_plain_tanh_mlp_trivial_chi_and_small_K(mlp):
    sw = np.array([0.5, 0.9, 1.1])
    assert np.allclose(trivial_chi(mlp, sigma_w=sw, sigma_b=0.0), sw**2, rtol=1e-12)
    assert np.isnan(trivial_chi(mlp, sigma_w=1.0, sigma_b=0.1))  # a bias: K = 0 is no fixed point
    fp = cs.fixed_point(mlp, sigma_w=0.9, sigma_b=0.0)
    assert fp.status == "zero" and fp.chi_star == pytest.approx(0.81, rel=1e-12)
    eps = 1e-4
    s2 = (1 + eps) ** 2
    fp = cs.fixed_point(mlp, sigma_w=1 + eps, sigma_b=0.0)
    assert fp.status == "finite"
    assert fp.K_star == pytest.approx((s2 - 1) / (2 * s2**2), rel=1e-3)


def test_tanh_residual_critical_point():
    th = cs.derive(cs.Residual(cs.Act("tanh") >> cs.Linear("sigma_w", 0), "mu"))
    mu = np.array([0.0, 0.5, 0.8])
    assert np.allclose(cs.critical_point(th, "sigma_w", mu=mu), np.sqrt(1 - mu**2), atol=1e-12)


def test_token_block_trivial_chi_closed_form(token_block):
    mu, sv, sw = 0.5, np.array([0.3, 0.5, 1.0]), 1.2
    want = (mu**2 + sv**2) * (mu**2 + sw**2)
    assert np.allclose(trivial_chi(token_block, mu=mu, sigma_v=sv, sigma_w=sw), want,
                       rtol=1e-10)


def test_token_block_fixed_point_zero_then_collapsed(token_block):
    mu, sv = 0.5, 0.5
    a = mu**2 + sv**2
    crit = np.sqrt(1 / a - mu**2)
    fp = cs.fixed_point(token_block, mu=mu, sigma_v=sv, sigma_w=np.array([crit - 1e-4, crit]))
    assert list(fp.status) == ["zero", "zero"]  # creeping towards 0 at the transition itself
    assert np.allclose(fp.chi_star, a * (mu**2 + np.array([crit - 1e-4, crit]) ** 2),
                       rtol=1e-10)
    assert np.allclose(fp.dF_dK, fp.chi_star, rtol=1e-8)  # linear regime: rate = χ_J(0)
    sw = crit * (1 + 1e-4)
    fp = cs.fixed_point(token_block, mu=mu, sigma_v=sv, sigma_w=sw)
    want = (a * (mu**2 + sw**2) - 1) / (2 * sw**4 * a**2)
    assert fp.status == "finite"
    assert fp.K_star == pytest.approx(want, rel=2e-3)
    assert fp.O_C_star == pytest.approx(fp.K_star, rel=1e-8)  # collapsed tokens


def test_token_block_continuous_critical_point(token_block):
    mu, sv = 0.5, 0.5
    crit = np.sqrt(1 / (mu**2 + sv**2) - mu**2)
    got = cs.critical_point(token_block, "sigma_w", mu=mu, sigma_v=sv, bracket=(0.5, 2.0),
                            scan=8)
    assert got == pytest.approx(crit, abs=1e-12)
