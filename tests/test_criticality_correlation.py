"""The correlation map: χ_c(1) = χ_J* for vanilla blocks, c* against an independent iteration."""

import numpy as np
import pytest

import critsym as cs


@pytest.mark.parametrize("act", ["tanh", "erf", "relu", "gelu"])
def test_chi_c_equals_chi_J(act):
    th = cs.derive(cs.mlp_block(act))
    sw = np.array([1.1, 1.25, 1.35])
    sb = np.array([0.2, 0.5, 0.9])
    co = th.correlation(sigma_w=sw, sigma_b=sb)
    fp = th.fixed_point(sigma_w=sw, sigma_b=sb)
    assert np.all(fp.status == "finite")
    np.testing.assert_allclose(co.chi_c1, fp.chi_star, rtol=1e-7)


def test_erf_c_star_vs_arcsine_kernel():
    # independent: iterate c ← (2/π)σ_w² asin(2cK/(1+2K))/K + σ_b²/K at K*, scipy-free numpy
    th = cs.derive(cs.mlp_block("erf"))
    sw, sb = 2.5, 0.1
    co = th.correlation(sigma_w=sw, sigma_b=sb)
    K = float(co.K_star)
    c = 0.3
    for _ in range(5000):
        c = (2 / np.pi * sw**2 * np.arcsin(2 * c * K / (1 + 2 * K)) + sb**2) / K
    assert float(co.c_star) == pytest.approx(c, abs=1e-9)
    chi_ref = 2 / np.pi * sw**2 * 2 / (1 + 2 * K) / np.sqrt(1 - (2 * c * K / (1 + 2 * K)) ** 2)
    assert float(co.chi_c) == pytest.approx(chi_ref, rel=1e-8)
    assert float(co.xi_c) == pytest.approx(-1 / np.log(chi_ref), rel=1e-7)
    assert float(co.chi_c1) > 1  # chaotic: c = 1 unstable


def test_ordered_c_star_is_one():
    th = cs.derive(cs.mlp_block("tanh"))
    co = th.correlation(sigma_w=1.0, sigma_b=0.5)
    assert float(co.c_star) == 1.0 and float(co.chi_c) < 1
