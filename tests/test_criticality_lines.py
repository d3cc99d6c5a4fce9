"""Critical points and lines against independent closed forms and scipy root finding."""

import numpy as np
import pytest
from _indep import erf_critical, tanh_critical

import critsym as cs
from critsym.errors import HyperparameterError, NoCriticalPointError


@pytest.fixture(scope="module")
def erf():
    return cs.derive(cs.mlp_block("erf"))


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


def test_relu_critical_at_sigma_w_sq_2():
    th = cs.derive(cs.mlp_block("relu"))
    sw = cs.critical_point(th, "sigma_w", sigma_b=0.0)
    assert sw**2 == pytest.approx(2.0, rel=1e-12)
    # with a residual μ < 1: σ_w² = 2(1 − μ²)
    thr = cs.derive(cs.mlp_block("relu", residual_mu=True))
    sw = cs.critical_point(thr, "sigma_w", sigma_b=0.0, mu=0.5)
    assert sw**2 == pytest.approx(2 * (1 - 0.25), rel=1e-10)


def test_erf_critical_line_vs_scipy(erf):
    sbs = np.array([0.05, 0.2, 0.5, 0.8, 1.2, 2.0])
    sw = cs.critical_point(erf, "sigma_w", sigma_b=sbs)  # the whole line in one call
    ref = np.array([erf_critical(b)[0] for b in sbs])
    np.testing.assert_allclose(sw, ref, rtol=0, atol=1e-8)
    # docs/theory.md#critical-lines: σ_w(0.5) = 1.3713304703
    assert sw[2] == pytest.approx(1.3713304703, abs=2e-10)


def test_erf_sigma_b_zero(erf):
    # K* = 0 class: χ* − 1 is quadratic on the chaotic side, so the root is only ~1e-7 sharp
    assert cs.critical_point(erf, sigma_b=0.0) == pytest.approx(np.sqrt(np.pi) / 2, abs=1e-6)


def test_tanh_critical_line_vs_scipy(tanh):
    sbs = np.array([0.2, 0.5, 1.0])
    sw = cs.critical_point(tanh, "sigma_w", sigma_b=sbs)
    for b, s in zip(sbs, sw, strict=True):
        assert s == pytest.approx(tanh_critical(b)[0], abs=1e-8)
    assert sw[0] == pytest.approx(1.30414584, abs=1e-8)  # docs/theory.md#critical-lines
    assert sw[1] == pytest.approx(1.54967391, abs=1e-8)


def test_solve_for_sigma_b(tanh):
    sb = cs.critical_point(tanh, "sigma_b", sigma_w=1.54967391, bracket=(0.01, 2.0))
    assert sb == pytest.approx(0.5, abs=1e-7)


def test_critical_line_sampling(tanh):
    line = cs.critical_line(tanh, along="sigma_b", values=[0.0, 0.3, 0.6], solve_for="sigma_w")
    assert line.y.shape == (3,) and np.all(np.diff(line.y) > 0)
    assert line.y[0] == pytest.approx(1.0, abs=1e-6)


def test_no_critical_point_errors(tanh):
    with pytest.raises(NoCriticalPointError, match="widen the bracket"):
        cs.critical_point(tanh, "sigma_w", sigma_b=0.5, bracket=(0.1, 1.0))
    out = cs.critical_point(tanh, "sigma_w", sigma_b=[0.5, 0.2], bracket=(1.4, 3.0),
                            on_missing="nan")
    assert np.isnan(out[1]) and np.isfinite(out[0])
    ln = cs.derive(cs.mlp_block("relu", layernorm="pre", residual_mu=1))
    with pytest.raises(NoCriticalPointError, match="critical everywhere"):
        cs.critical_point(ln, "sigma_w", sigma_b=0.0)
    with pytest.raises(HyperparameterError, match="cannot solve"):
        cs.critical_point(tanh, "gamma", sigma_b=0.0)
    with pytest.raises(HyperparameterError, match="unknown"):
        cs.critical_point(tanh, "sigma_w", sigma_b=0.1, sigma_w=1.0)
