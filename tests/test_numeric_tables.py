"""Variance tables of 1-D expectations against mpmath and scipy, and the quadrature switch."""

import mpmath
import numpy as np
import pytest
import sympy as sp

import critsym as cs
from critsym.gaussian import numeric
from critsym.gaussian.expectation import GaussE
from critsym.gaussian.numeric import compile_expr, quadrature_only

V = sp.Symbol("V", positive=True)
z = sp.Symbol("z", real=True)


def mp_E(f, v):
    s = mpmath.sqrt(v)
    return mpmath.quad(lambda x: f(s * x) * mpmath.npdf(x), [-mpmath.inf, -1 / s, 0, 1 / s,
                                                               mpmath.inf])


@pytest.mark.parametrize("expr, f", [
    (sp.tanh(z) ** 2, lambda t: mpmath.tanh(t) ** 2),
    ((1 - sp.tanh(z) ** 2) ** 2, lambda t: mpmath.sech(t) ** 4),
    (z**2 * sp.exp(-(z**2)), lambda t: t**2 * mpmath.exp(-(t**2))),
])
def test_table_accuracy_vs_mpmath(expr, f):
    fn = compile_expr(GaussE(sp.Lambda(z, expr), V), (V,))
    vs = [1e-13, 3e-9, 1e-4, 0.37, 1.0, 7.5, 3e3, 2e6, 5e11]
    got = fn(np.array(vs))
    with mpmath.workdps(30):
        ref = [float(mp_E(f, mpmath.mpf(v))) for v in vs]
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert fn._nodes[0].table is not None and fn._nodes[0].table.max_rel_error <= 1e-10


def test_erf_table_vs_closed_form():
    fn = compile_expr(GaussE(sp.Lambda(z, sp.erf(z) ** 2), V), (V,))
    v = np.geomspace(1e-10, 1e10, 200)
    np.testing.assert_allclose(fn(v), 2 / np.pi * np.arcsin(2 * v / (1 + 2 * v)), rtol=1e-10)


def test_quadrature_only_switch_agrees():
    th = cs.derive(cs.mlp_block("tanh"))
    K = np.geomspace(1e-3, 1e3, 50)
    a = th.chi_J(K, sigma_w=1.3, sigma_b=0.2)
    with quadrature_only():
        assert not numeric.tabulation_enabled()
        b = th.chi_J(K, sigma_w=1.3, sigma_b=0.2)
    assert numeric.tabulation_enabled()
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_parameter_dependent_integrand_not_tabulated():
    a = sp.Symbol("a", positive=True)
    fn = compile_expr(GaussE(sp.Lambda(z, sp.tanh(a * z) ** 2), V), (V, a))
    assert not fn._nodes[0].tabulable
    # E_V[tanh(a z)²] = E_{a²V}[tanh²]
    g = compile_expr(GaussE(sp.Lambda(z, sp.tanh(z) ** 2), V), (V,))
    assert fn(0.5, 2.0) == pytest.approx(float(g(2.0)), rel=1e-11)


def test_z_free_factors_pulled_out():
    K = sp.Symbol("K", positive=True)
    expr = GaussE(sp.Lambda(z, z * sp.tanh(z) / K + sp.tanh(z) ** 2), K)
    fn = compile_expr(expr, (K,))
    assert all(n.tabulable for n in fn._nodes)
    ref = [float(mp_E(lambda t, k=k: t * mpmath.tanh(t) / k + mpmath.tanh(t) ** 2, k))
           for k in (0.2, 3.0)]
    np.testing.assert_allclose(fn(np.array([0.2, 3.0])), ref, rtol=1e-10)
