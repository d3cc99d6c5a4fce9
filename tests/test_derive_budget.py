"""Deep blocks derive in bounded time: the two-layer post-LN GELU residual block (whose closed
forms once grew for minutes) against an independent Gauss–Hermite recursion, and the symbolic
time budget's numeric fallback."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
from _deadline import deadline
from scipy.special import erf

import critsym as cs
from critsym.errors import CritsymWarning
from critsym.fold import fold_maps
from critsym.gaussian.expectation import GaussE

MU, SW, SB = 0.5, 1.1, 0.2
DEPTH, K0, C0 = 4, 1.0, 0.5
X, W = np.polynomial.hermite_e.hermegauss(80)
W = W / W.sum()


def gelu(z):
    return 0.5 * z * (1 + erf(z / np.sqrt(2)))


def dgelu(z):
    return 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)


def pair(f, V, C):
    """(E f(u), E f(u)², E f(u) f(v)) for (u, v) ~ N(0, [[V, C], [C, V]])."""
    s = np.sqrt(V)
    rho = C / V
    u = s * X[:, None] + 0 * X[None, :]
    v = s * (rho * X[:, None] + np.sqrt(max(1 - rho * rho, 0.0)) * X[None, :])
    w2 = W[:, None] * W[None, :]
    return float(W @ f(s * X)), float(W @ f(s * X) ** 2), float((w2 * f(u) * f(v)).sum())


def reference(depth: int):
    """K, J, c of h ↦ μh + W₂ LN(gelu(W₁ LN(gelu(h)))) by Gauss–Hermite quadrature (80 nodes)."""
    K, K12, J = K0, C0 * K0, 1.0
    out = [(K, J, K12 / K)]
    for _ in range(depth):
        chi_b, V, C = 1.0, K, K12
        for _layer in range(2):
            m, m2, mab = pair(gelu, V, C)
            var = m2 - m * m
            chi_b *= SW**2 * float(W @ dgelu(np.sqrt(V) * X) ** 2) / var
            V, C = SW**2 + SB**2, SW**2 * (mab - m * m) / var + SB**2
        K, K12, J = MU**2 * K + V, MU**2 * K12 + C, J * (MU**2 + chi_b)
        out.append((K, J, K12 / K))
    return np.array(out).T



derive_mod = importlib.import_module("critsym.derive")
ARCH = cs.two_layer_block("linear", "gelu", layernorm="post", mu=MU)


def test_post_ln_gelu_two_layer_block_derives_and_matches_quadrature():
    with deadline(150):
        th = cs.derive(ARCH)
        run = th.run(DEPTH, K0=K0, c0=C0, sigma_w=SW, sigma_b=SB)
    K, J, c = reference(DEPTH)
    np.testing.assert_allclose(run.K, K, rtol=1e-10)
    np.testing.assert_allclose(run.J, J, rtol=1e-8)
    np.testing.assert_allclose(run.c, c, rtol=1e-8, atol=1e-10)


def test_spent_budget_falls_back_to_quadrature(monkeypatch):
    arch = cs.mlp_block("gelu", residual_mu=0.7)
    exact = cs.derive(arch).run(2, K0=1.0, c0=0.3, sigma_w=1.2, sigma_b=0.1)
    fold_maps.cache_clear()
    monkeypatch.setattr(derive_mod, "SYMBOLIC_BUDGET_S", 0.0)
    with pytest.warns(CritsymWarning, match="numeric quadrature"):
        th = cs.derive(arch)
    assert th.chi.has(GaussE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CritsymWarning)
        num = th.run(2, K0=1.0, c0=0.3, sigma_w=1.2, sigma_b=0.1)
    np.testing.assert_allclose(num.K, exact.K, rtol=1e-9)
    np.testing.assert_allclose(num.J, exact.J, rtol=1e-7)
    np.testing.assert_allclose(num.c, exact.c, rtol=1e-7)
    fold_maps.cache_clear()
