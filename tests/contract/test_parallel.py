"""Parallel (sum of branches) against independent quadrature; Residual as its special case."""

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal, norm

import critsym as cs

SW, SB = 1.1, 0.2
TWO_NORMS = cs.Parallel(cs.LayerNorm() >> cs.Act("tanh") >> cs.Linear(),
                        cs.Act("relu") >> cs.LayerNorm() >> cs.Linear())


def _e1(f):
    """E f(z), z ~ N(0, 1), by adaptive quadrature."""
    return integrate.quad(lambda t: f(t) * norm.pdf(t), -12, 12, epsabs=1e-13, limit=200)[0]


def _e2(f, c):
    """E f(u, v) for a standard bivariate normal with correlation c."""
    dens = multivariate_normal(np.zeros(2), [[1, c], [c, 1]])
    return integrate.dblquad(lambda v, u: f(u, v) * dens.pdf([u, v]), -9, 9, -9, 9,
                             epsabs=1e-10)[0]


def _reference(K, c):
    """(K', χ_J, c') of LN-pre tanh arm + LN-post relu arm, each ending in Linear(σ_w, σ_b).

    Arm 1: LN(h) = h/√K ~ N(0, 1): K_1 = σ_w² E[tanh(z)²] + σ_b², χ_1 = σ_w² E[tanh'(z)²]/K.
    Arm 2: LN(relu(h)) has unit variance: K_2 = σ_w² + σ_b², χ_2 = σ_w² E[relu'(h)²]/s²
    with s² = Var relu(h) = K(1/2 − 1/(2π)), E[relu'²] = 1/2.  Independent last weights:
    K' = K_1 + K_2, χ_J = χ_1 + χ_2, K'_12 = Σ_arms σ_w² Cov(arm features) + σ_b².
    """
    et2 = _e1(lambda z: math.tanh(z) ** 2)
    ed2 = _e1(lambda z: (1 - math.tanh(z) ** 2) ** 2)
    s2 = K * (0.5 - 0.5 / math.pi)
    Kp = SW**2 * et2 + SB**2 + SW**2 + SB**2
    chi = SW**2 * ed2 / K + SW**2 * 0.5 / s2
    m = math.sqrt(K / (2 * math.pi))  # E relu(h)
    cov_relu = K * _e2(lambda u, v: max(u, 0) * max(v, 0), c) - m * m
    k12 = (SW**2 * _e2(lambda u, v: math.tanh(u) * math.tanh(v), c) + SB**2
           + SW**2 * cov_relu / s2 + SB**2)
    return Kp, chi, k12 / Kp


@pytest.mark.parametrize("K,c", [(0.7, 0.3), (2.5, 0.8)])
def test_two_normalised_arms_against_quadrature(K, c):
    th = cs.derive(TWO_NORMS)
    assert th.F.free_symbols <= {cs.K, cs.sigma_w, cs.sigma_b}  # no layer statistic leaks
    run = th.run(1, K0=K, c0=c, sigma_w=SW, sigma_b=SB)
    Kp, chi, cp = _reference(K, c)
    assert run.K[1] == pytest.approx(Kp, rel=1e-9)
    assert run.J[1] == pytest.approx(chi, rel=1e-9)
    assert run.c[1] == pytest.approx(cp, rel=1e-7)


def test_residual_is_parallel_with_identity():
    branch = cs.LayerNorm() >> cs.Act("erf") >> cs.Linear()
    a = cs.derive(cs.Residual(branch, 1))
    b = cs.derive(cs.Parallel(cs.Act("identity"), branch))
    for K in (0.5, 2.0):
        ra = a.run(3, K0=K, c0=0.4, sigma_w=1.3, sigma_b=0.1)
        rb = b.run(3, K0=K, c0=0.4, sigma_w=1.3, sigma_b=0.1)
        assert np.allclose(ra.K, rb.K, rtol=1e-12) and np.allclose(ra.J, rb.J, rtol=1e-12)
        assert np.allclose(ra.c, rb.c, rtol=1e-10)


def test_parallel_refuses_bad_branches():
    with pytest.raises(cs.CritsymError):
        cs.Parallel()
    with pytest.raises(cs.CritsymError):
        cs.Parallel(cs.Linear(), "relu")
