"""The correlation map of a block with two nonlinear activations (nested bivariate
expectations): χ_c from Price's theorem through both layers against finite differences of an
independent Gauss–Hermite c-map, and χ_c(1) = χ_J* at the fixed point."""

from __future__ import annotations

import numpy as np
import pytest

import critsym as cs
from critsym.criticality.correlation import chi_c

SW, SB = 1.3, 0.2
X, W = np.polynomial.hermite_e.hermegauss(90)
W = W / W.sum()
W2 = W[:, None] * W[None, :]


def E2(f, V, C):
    """E f(u) f(v) for (u, v) ~ N(0, [[V, C], [C, V]]) (Gauss–Hermite)."""
    s, r = np.sqrt(V), C / V
    u = s * X[:, None] + 0 * X[None, :]
    v = s * (r * X[:, None] + np.sqrt(max(1 - r * r, 0.0)) * X[None, :])
    return float((W2 * f(u) * f(v)).sum())


def layer(V, C):
    """(variance, covariance) after tanh → Linear(σ_w, σ_b)."""
    return SW**2 * E2(np.tanh, V, V) + SB**2, SW**2 * E2(np.tanh, V, C) + SB**2


def c_map(c, K):
    V, C = layer(*layer(K, c * K))
    return C / V


def fixed_K():
    K = 1.0
    for _ in range(2000):
        K = layer(*layer(K, K))[0]
    return K


def sech4(V):
    return float(W @ (1 / np.cosh(np.sqrt(V) * X)) ** 4)


ARCH = cs.Act("tanh") >> cs.Linear() >> cs.Act("tanh") >> cs.Linear()


@pytest.fixture(scope="module")
def theory():
    return cs.derive(ARCH)


def test_correlation_of_two_nonlinear_layers(theory):
    K = fixed_K()
    V1 = layer(K, K)[0]
    chiJ = SW**2 * sech4(K) * SW**2 * sech4(V1)
    res = cs.correlation(theory, sigma_w=SW, sigma_b=SB)
    assert float(res.K_star) == pytest.approx(K, rel=1e-9)
    assert float(res.chi_c1) == pytest.approx(chiJ, rel=1e-7)
    assert chiJ < 1 and float(res.c_star) == 1.0  # ordered phase: c* = 1


@pytest.mark.parametrize("c", [-0.4, 0.3, 0.8])
def test_chi_c_through_both_layers(theory, c):
    K, h = fixed_K(), 1e-4
    fd = (c_map(c + h, K) - c_map(c - h, K)) / (2 * h)
    got = float(chi_c(theory, c, K, sigma_w=SW, sigma_b=SB))
    assert got == pytest.approx(fd, rel=1e-6)
