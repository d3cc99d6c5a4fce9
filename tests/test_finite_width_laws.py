"""Log-norm laws checked against independent computations (quadrature, scipy distributions, exact
special cases, large-width limits), never against numbers taken from the implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from critsym.errors import CritsymError, HyperparameterError
from critsym.finite_width import (
    ModelSpec,
    NotApplicableError,
    balanced_layer_moments,
    log_norm,
    mlp_layer_moments,
    resnet_constants,
    resnet_finite_depth,
)
from critsym.finite_width.hermite import (
    energy_coefficients,
    energy_mode_weights,
    energy_sign_products,
    odd_modes,
    sign_projections,
)
from critsym.finite_width.laws import noncentral_chi2_log_moments


def _gauss_expect(f):
    return integrate.quad(lambda v: f(v) * stats.norm.pdf(v), -np.inf, 0, limit=200)[0] + \
        integrate.quad(lambda v: f(v) * stats.norm.pdf(v), 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9, 11, 13])
def test_hermite_data_against_quadrature(k):
    he = lambda v: special.eval_hermitenorm(k, v)  # noqa: E731
    proj = _gauss_expect(lambda v: v * abs(v) * he(v))
    assert energy_coefficients(np.array([k]))[0] * math.factorial(k) == pytest.approx(
        proj, rel=1e-7, abs=1e-9)
    sgn = _gauss_expect(lambda v: np.sign(v) * he(v))
    assert sign_projections(np.array([k]))[0] == pytest.approx(sgn, rel=1e-7, abs=1e-9)
    assert energy_sign_products(np.array([k]))[0] == pytest.approx(
        energy_coefficients(np.array([k]))[0] * sgn, rel=1e-7)


def test_energy_weights_sum_to_fourth_moment():
    assert energy_mode_weights(odd_modes(4001)).sum() == pytest.approx(3.0, abs=1e-8)


def test_relu_limit_of_leaky_path():
    # alpha -> 0 through the Beta-quadrature path reproduces the digamma path (n >= 40 so that
    # the all-dead event, probability 2^-n, which relu conditions away, is negligible)
    for n in (40, 64):
        a = mlp_layer_moments(n, 2.0, 0.0)
        b = mlp_layer_moments(n, 2.0, 1e-4)
        assert b.mean == pytest.approx(a.mean, abs=1e-5)
        assert b.var == pytest.approx(a.var, abs=1e-5)


def test_linear_network_is_chi2():
    # alpha = 1: Y = chi^2_n exactly -> E ln = ln 2 + psi(n/2), Var = psi'(n/2)
    n, c = 40, 1.3
    m = mlp_layer_moments(n, c, 1.0)
    assert m.mean == pytest.approx(math.log(c / n) + math.log(2) + special.digamma(n / 2), abs=1e-9)
    assert m.var == pytest.approx(special.polygamma(1, n / 2), abs=1e-9)


@pytest.mark.parametrize("k,lam", [(8, 3.0), (64, 64.0), (256, 128.0)])
def test_noncentral_chi2_log_moments_against_scipy(k, lam):
    dist = stats.ncx2(k, lam)
    lo, hi = dist.ppf(1e-13), dist.ppf(1 - 1e-13)
    m1 = integrate.quad(lambda y: math.log(y) * dist.pdf(y), lo, hi, limit=400)[0]
    m2 = integrate.quad(lambda y: math.log(y) ** 2 * dist.pdf(y), lo, hi, limit=400)[0]
    mean, var = noncentral_chi2_log_moments(k, lam)
    assert mean == pytest.approx(m1, abs=1e-8)
    assert var == pytest.approx(m2 - m1 * m1, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6])
def test_mlp_exact_approaches_leading_law(alpha):
    # n (mu1 - ln q) -> M = -V/2, n sigma1^2 -> V = 2 + 3((1-a^2)/(1+a^2))^2, with O(1/n) error
    c = 2.0 / (1 + alpha**2)
    r = (1 - alpha**2) / (1 + alpha**2)
    v_lead = 2 + 3 * r * r
    for n in (1024, 4096):
        m = mlp_layer_moments(n, c, alpha)
        assert n * m.var == pytest.approx(v_lead, rel=12.0 / n)
        assert n * m.mean == pytest.approx(-v_lead / 2, rel=12.0 / n)


def test_balanced_exact_approaches_leading_law():
    for c in (1.0, 2.0, 4.0):
        g, q = c / 2, 1 + c / 2
        n = 4096
        m = balanced_layer_moments(n, c)
        assert n * (m.mean - math.log(q)) == pytest.approx(-g * (2 + g) / q**2, rel=4e-3)
        assert n * m.var == pytest.approx(2 * g * (2 + g) / q**2, rel=4e-3)


@pytest.mark.parametrize("c,M,V,kappa,lag1", [(1.0, -1.4404, 4.0781, 0.3976, 0.178),
                                              (2.0, -1.9839, 5.4425, 0.3350, 0.217)])
def test_resnet_constants_match_reference_values(c, M, V, kappa, lag1):
    # values quoted in finite_width.md (derived there independently, MC-checked by the tests)
    cst = resnet_constants(c)
    assert cst.M == pytest.approx(M, abs=1e-4)
    assert cst.V == pytest.approx(V, abs=1e-4)
    assert cst.kappa == pytest.approx(kappa, abs=1e-4)
    assert cst.lag1 == pytest.approx(lag1, abs=1e-3)
    g, q = c / 2, 1 + c / 2
    assert cst.V_uncorrelated == pytest.approx((4 * g + 5 * g * g) / q**2)


def test_resnet_finite_depth_tends_to_stationary():
    c, n = 1.0, 100
    cst = resnet_constants(c)
    m, v = resnet_finite_depth(c, 100_000, n)
    assert m * n / 100_000 == pytest.approx(cst.M, rel=1e-3)
    assert v * n / 100_000 == pytest.approx(cst.V, rel=1e-3)
    m1, v1 = resnet_finite_depth(c, 1, n)  # one layer from a Gaussian input: no m-correlation
    g, q = c / 2, 1 + c / 2
    assert v1 * n == pytest.approx((4 * g + 5 * g * g) / q**2, rel=1e-9)
    assert m1 * n == pytest.approx(-(4 * g + 5 * g * g) / (2 * q * q), rel=1e-9)


def test_exact_kurtosis_one_layer_mlp():
    # one He-ReLU layer: y = w.x^1/sqrt(n); E y^4/(E y^2)^2 = 3 E[R^2]/E[R]^2 computed by hand
    n = 10
    law = log_norm(ModelSpec("mlp", 2.0), 1, n, order="exact")
    k = np.arange(n + 1)
    p = stats.binom.pmf(k, n, 0.5)
    er = (2 / n) * n * (p @ k)  # E|x^0|^2 * E[(2/n) chi^2_K]
    er2 = (2 / n) ** 2 * n * (n + 2) * (p @ (k * (k + 2)))
    assert law.kurtosis_exact == pytest.approx(3 * er2 / er**2, rel=1e-12)


def test_orders_and_not_applicable():
    spec = ModelSpec("resnet", 1.0)
    lead = log_norm(spec, 64, 128)
    assert lead.order_used == "leading"
    assert lead.var == pytest.approx(0.5 * resnet_constants(1.0).V)
    with pytest.raises(NotApplicableError) as err:
        log_norm(spec, 64, 128, order="exact")
    assert err.value.reason == "no_exact_law"
    with pytest.raises(NotApplicableError) as err:
        log_norm(ModelSpec("resnet", 1.0, depth_scaled=True), 64, 128)
    assert err.value.reason == "depth_scaled"
    assert issubclass(NotApplicableError, CritsymError)
    ex = log_norm(ModelSpec("mlp", 2.0), 8, 32, order="1/n")
    assert ex.order_used == "exact" and ex.lag1 == 0 and ex.hypoactivation == 0
    assert ex.kurtosis == pytest.approx(3 * math.exp(ex.var))
    assert r"\chi^2_{K_l}" in ex.latex()


@pytest.mark.parametrize("bad", [
    lambda: log_norm(ModelSpec("mlp", 2.0), 0, 64),
    lambda: log_norm(ModelSpec("mlp", 2.0), 8, 1),
    lambda: log_norm(ModelSpec("mlp", 2.0), 8, 64.5),
    lambda: log_norm(ModelSpec("mlp", 2.0), 8, 64, order="2/n"),
    lambda: ModelSpec("mlp", -1.0),
    lambda: ModelSpec("cnn", 1.0),
    lambda: ModelSpec("resnet", 1.0, alpha=0.2),
])
def test_bad_input_raises(bad):
    with pytest.raises(HyperparameterError):
        bad()
