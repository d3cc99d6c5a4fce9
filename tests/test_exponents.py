"""Critical exponents: analytic (series/asymptotics) against independent results and fits."""

import numpy as np
import pytest
import sympy as sp
from scipy.special import gammaln

import critsym as cs
from critsym.criticality import analytic_exponents, fit_nu, fit_p


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


def test_tanh_series_symbolic(tanh):
    ex = analytic_exponents(tanh, sigma_b=0)
    # independent: tanh² = z² − (2/3)z⁴ + …, E z⁴ = 3K² ⇒ a = −2σ_w²; (1 − tanh²)² = 1 − 2z² + …
    sw = cs.sigma_w
    assert sp.simplify(ex.coefficients["a"] + 2 * sw**2) == 0
    assert sp.simplify(ex.coefficients["b"] + 2 * sw**2) == 0
    assert ex.p == -1 and ex.zeta == 1 and "K*=0" in ex.universality
    assert ex.nu["ordered"] == 1 and ex.nu["chaotic"] == 2
    # docs/theory.md#critical-exponents: χ* − 1 ≈ δ²/3 at σ_w = 1 (δ = σ_w² − 1)
    assert sp.simplify(ex.nu["chaotic_leading"].subs(sw, 1) - sp.Rational(1, 3)) == 0


def test_tanh_trajectory_laws(tanh):
    run = tanh.run(4000, K0=1.0, sigma_w=1.0, sigma_b=0.0)
    l = np.arange(4001)
    # K^l ~ 1/(2l) (corrections O(log l / l²))
    assert run.K[4000] * 2 * 4000 == pytest.approx(1.0, abs=5e-3)
    # J^{l0,l} ~ l0/l
    J = run.J_from(1000)
    assert J[-1] * l[-1] / 1000 == pytest.approx(1.0, abs=5e-3)


def test_analytic_vs_fitted_tanh(tanh):
    ex = analytic_exponents(tanh, sigma_w=1.0, sigma_b=0.0)
    fit = fit_p(tanh, 3000, sigma_w=1.0, sigma_b=0.0)
    assert fit.value == pytest.approx(ex.p, abs=max(5 * fit.stderr, 1e-4))
    assert ex.K_law.startswith("K^l ≈ 0.5/l")


def test_erf_p_minus_one():
    ex = analytic_exponents(cs.derive(cs.mlp_block("erf")), sigma_b=0)
    assert ex.p == -1


def test_critical_line_class(tanh):
    ex = analytic_exponents(tanh, sigma_w=1.30414584, sigma_b=0.2)
    assert ex.p == 0 and "K*>0" in ex.universality
    fit = fit_p(tanh, 2000, sigma_w=1.30414584, sigma_b=0.2)
    assert abs(fit.value) < 1e-6


def test_ln_pre_residual_exact_gamma_formula():
    # docs/theory.md#everywhere-critical, relu σ_b = 0:
    # J^{l0,l} = Γ(l+c+A/B)Γ(l0+c)/[Γ(l0+c+A/B)Γ(l+c)], c = K0/B
    th = cs.derive(cs.mlp_block("relu", layernorm="pre", residual_mu=1))
    sw, sb, K0, l0 = 1.2, 0.0, 1.0, 5
    A, B = sw**2 / 2, sw**2 / 2 + sb**2
    run = th.run(300, K0=K0, sigma_w=sw, sigma_b=sb)
    l = np.arange(l0, 301)
    c, r = K0 / B, A / B
    ref = np.exp(gammaln(l + c + r) + gammaln(l0 + c) - gammaln(l0 + c + r) - gammaln(l + c))
    np.testing.assert_allclose(run.J_from(l0), ref, rtol=1e-11)
    # J^{l0,l} ≈ l/l0 at σ_b = 0
    assert run.J_from(100)[-1] == pytest.approx(300 / 100, rel=0.02)
    ex = analytic_exponents(th, sigma_w=sw, sigma_b=sb)
    assert ex.p == pytest.approx(1.0, abs=1e-12)
    fit = fit_p(th, 2000, sigma_w=sw, sigma_b=sb)
    assert fit.value == pytest.approx(ex.p, abs=max(5 * fit.stderr, 1e-4))


def test_ln_pre_residual_symbolic_and_tanh_ratio():
    th = cs.derive(cs.mlp_block("relu", layernorm="pre", residual_mu=1))
    ex = analytic_exponents(th)
    sw, sb = cs.sigma_w, cs.sigma_b
    assert sp.simplify(ex.p - sw**2 / (sw**2 + 2 * sb**2)) == 0
    tt = cs.derive(cs.mlp_block("tanh", layernorm="pre", residual_mu=1))
    ex = analytic_exponents(tt, sigma_w=1.0, sigma_b=0.0)
    # docs/theory.md#everywhere-critical: p = E φ'² / E φ²
    assert ex.p == pytest.approx(1.177807, abs=2e-6)
    fit = fit_p(tt, 2000, sigma_w=1.0, sigma_b=0.0)
    assert fit.value == pytest.approx(ex.p, abs=max(5 * fit.stderr, 1e-4))


def test_nu_fitted_vs_analytic(tanh):
    offs = [0.01, 0.015, 0.02, 0.03, 0.04]
    chaotic = fit_nu(tanh, "sigma_w", 1.0, offs, side=+1, depth=1500, sigma_b=0.0)
    assert chaotic.value == pytest.approx(2.0, abs=0.02)
    ordered = fit_nu(tanh, "sigma_w", 1.0, [0.02, 0.03, 0.04, 0.06], side=-1, depth=1500,
                     sigma_b=0.0)
    assert ordered.value == pytest.approx(1.0, abs=0.01)


def test_other_classes():
    relu = cs.derive(cs.mlp_block("relu"))
    assert analytic_exponents(relu, sigma_w=2**0.5, sigma_b=0.0).p == 0
    res = cs.derive(cs.mlp_block("tanh", residual_mu=1))
    ex = analytic_exponents(res, sigma_w=1.0, sigma_b=0.0)
    assert "stretched" in ex.universality and ex.coefficients["gamma"] == pytest.approx(0.5, 1e-3)
    off = analytic_exponents(relu, sigma_w=1.0, sigma_b=0.1)
    assert off.p is None and "ordered" in off.universality
