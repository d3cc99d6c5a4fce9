"""Fixed points of the variance map against closed forms and independent scipy root finding."""

import numpy as np
import pytest
from _indep import gauss_E, sech4, tanh_fixed_point

import critsym as cs
from critsym.errors import HyperparameterError


@pytest.fixture(scope="module")
def relu():
    return cs.derive(cs.mlp_block("relu"))


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


def test_relu_statuses_and_chi(relu):
    sw = np.array([1.0, 2**0.5, 1.8, 1.0])
    sb = np.array([0.0, 0.0, 0.0, 0.4])
    fp = relu.fixed_point(sigma_w=sw, sigma_b=sb)
    assert list(fp.status) == ["zero", "neutral", "unbounded", "finite"]
    # chi_J = σ_w²/2 for every K
    np.testing.assert_allclose(fp.chi_star, sw**2 / 2, rtol=1e-12)
    assert fp.K_star[0] == 0 and np.isinf(fp.K_star[2])
    # K* = σ_b²/(1 − σ_w²/2)
    assert fp.K_star[3] == pytest.approx(0.16 / (1 - 0.5), rel=1e-12)
    assert fp.growth[2] == "exponential"
    assert fp.growth_rate[2] == pytest.approx(1.8**2 / 2, rel=1e-8)
    assert list(fp.phase()) == ["ordered", "critical", "chaotic", "ordered"]


def test_tanh_fixed_points_vs_scipy(tanh):
    pts = [(0.8, 0.3), (1.3, 0.2), (2.0, 0.5), (2.5, 1.0), (1.2, 0.0)]
    fp = tanh.fixed_point(sigma_w=[p[0] for p in pts], sigma_b=[p[1] for p in pts])
    for i, (sw, sb) in enumerate(pts):
        Kref = tanh_fixed_point(sw, sb)
        assert fp.K_star[i] == pytest.approx(Kref, rel=1e-10)
        assert fp.chi_star[i] == pytest.approx(sw**2 * gauss_E(sech4, Kref), rel=1e-10)
    fz = tanh.fixed_point(sigma_w=0.9, sigma_b=0.0)
    assert fz.status == "zero" and fz.chi_star == pytest.approx(0.81, rel=1e-9)


def test_dF_is_derivative_of_F(tanh):
    # stability dF/dK at K* against a central difference of the engine's own F
    fp = tanh.fixed_point(sigma_w=1.7, sigma_b=0.4)
    K, h = float(fp.K_star), 1e-5
    fd = (tanh.variance_map(K + h, sigma_w=1.7, sigma_b=0.4)
          - tanh.variance_map(K - h, sigma_w=1.7, sigma_b=0.4)) / (2 * h)
    assert float(fp.dF_dK) == pytest.approx(float(fd), rel=1e-8)
    assert fp.stable


def test_grid_matches_points(tanh):
    sw, sb = np.meshgrid(np.linspace(0.5, 3, 7), np.linspace(0, 1.2, 5))
    grid = tanh.fixed_point(sigma_w=sw, sigma_b=sb)
    assert grid.K_star.shape == (5, 7)
    for i, j in [(0, 0), (2, 3), (4, 6), (1, 5)]:
        one = tanh.fixed_point(sigma_w=sw[i, j], sigma_b=sb[i, j])
        assert grid.K_star[i, j] == pytest.approx(float(one.K_star), rel=1e-12, abs=1e-14)


def test_unbounded_linear_growth_ln_pre_residual():
    th = cs.derive(cs.mlp_block("relu", layernorm="pre", residual_mu=1))
    fp = th.fixed_point(sigma_w=1.3, sigma_b=0.2)
    assert fp.status == "unbounded" and fp.growth == "linear"
    # K^{l+1} = K^l + σ_w²/2 + σ_b²
    assert float(fp.growth_rate) == pytest.approx(1.3**2 / 2 + 0.04, rel=1e-6)
    assert float(fp.chi_star) == pytest.approx(1.0, abs=1e-9)


def test_bad_K0(tanh):
    with pytest.raises(HyperparameterError, match="K0"):
        tanh.fixed_point(K0=-1.0, sigma_w=1.0, sigma_b=0.1)
    with pytest.raises(HyperparameterError, match="missing"):
        tanh.fixed_point(sigma_w=1.0)
