"""Correlation tables m(V, r) of bivariate expectations at equal variances: against closed forms
and an independent dense Gauss–Hermite rule; verified pieces; bounded memory of the 2-D rule."""

import tracemalloc

import numpy as np
import pytest
import sympy as sp

from critsym.gaussian import numeric, rules, tables
from critsym.gaussian.expectation import GaussE2
from critsym.gaussian.numeric import compile_expr, quadrature_only

u, v = sp.symbols("u v", real=True)
V, C = sp.symbols("V C", real=True)


def _fn(expr):
    return compile_expr(GaussE2(sp.Lambda((u, v), expr), V, V, C), (V, C))


def _gauss_hermite(f, Vv, r, n=200):
    """Dense tensor Gauss–Hermite rule (independent of critsym's rules)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    X, Y = np.meshgrid(x, x, indexing="ij")
    s = np.sqrt(Vv)
    return float(np.sum(np.outer(w, w) * f(s * X, s * (r * X + np.sqrt(1 - r * r) * Y))))


R = np.array([-1.0, -0.95, -0.3, 0.0, 0.4, 0.9, 0.999, 1.0])


def test_closed_forms_sum_of_products():
    # E[cos u cos v] = e^{-V} cosh(V r);  E[u² v²] = V² (1 + 2 r²)
    fn = _fn(sp.cos(u) * sp.cos(v) + u**2 * v**2)
    Vs = np.array([1e-8, 1e-3, 0.3, 2.0, 20.0])
    Vg, Rg = np.meshgrid(Vs, R, indexing="ij")  # 2-D inputs
    got = fn(Vg, Rg * Vg)
    exact = np.exp(-Vg) * np.cosh(Vg * Rg) + Vg**2 * (1 + 2 * Rg**2)
    scale = np.exp(-Vg) * np.cosh(Vg) + 3 * Vg**2
    assert got.shape == Vg.shape
    assert np.max(np.abs(got - exact) / scale) < 1e-10
    assert fn._nodes[0].table is not None


@pytest.mark.parametrize("name, expr, f", [
    ("tanh", sp.tanh(u) * sp.tanh(v), lambda a, b: np.tanh(a) * np.tanh(b)),
    ("gelu", u * v * (1 + sp.erf(u / sp.sqrt(2))) * (1 + sp.erf(v / sp.sqrt(2))) / 4,
     lambda a, b: a * b * (1 + _erf(a / np.sqrt(2))) * (1 + _erf(b / np.sqrt(2))) / 4),
])
def test_table_against_dense_gauss_hermite(name, expr, f):
    fn = _fn(expr)
    for Vv in (0.01, 0.37, 1.0, 2.5):
        got = fn(np.full(R.shape, Vv), R * Vv)
        ref = np.array([_gauss_hermite(f, Vv, r) for r in R])
        scale = _gauss_hermite(f, Vv, 1.0)
        assert np.max(np.abs(got - ref)) <= 1e-10 * scale, (name, Vv)
    tab = fn._nodes[0].table
    assert tab.errors and all(e <= tables.TABLE2_RTOL for e in tab.errors.values())


def test_table_agrees_with_quadrature_and_one_dimensional_limits():
    import mpmath

    fn = _fn(sp.tanh(u) * sp.tanh(v))
    Vs = np.array([1e-6, 0.05, 3.0, 40.0, 300.0])
    Vg, Rg = np.meshgrid(Vs, np.linspace(-1, 1, 9), indexing="ij")
    got = fn(Vg, Rg * Vg)
    with quadrature_only():
        quad = fn(Vg, Rg * Vg)
    scale = got[:, -1]
    assert np.max(np.abs(got - quad) / scale[:, None]) < 1e-10
    # r = 1: E[tanh(u)²] by mpmath; r = 0: (E tanh)² = 0
    for Vv, g in zip(Vs, got[:, -1], strict=True):
        s = mpmath.sqrt(Vv)
        ref = mpmath.quad(lambda t: mpmath.tanh(s * t) ** 2 * mpmath.npdf(t),
                          [-mpmath.inf, -1 / s, 0, 1 / s, mpmath.inf])
        assert abs(g - float(ref)) <= 1e-10 * float(ref)
    assert np.max(np.abs(got[:, 4])) < 1e-15


def test_unequal_variances_use_the_nested_rule():
    f = compile_expr(GaussE2(sp.Lambda((u, v), sp.tanh(u) * sp.tanh(v)), V, 2 * V, C), (V, C))
    Vv, r = 0.7, 0.6
    ref = _gauss_hermite_unequal(Vv, 2 * Vv, r)
    assert float(f(Vv, r * np.sqrt(2) * Vv)) == pytest.approx(ref, abs=1e-12)


def test_nested_rule_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(rules, "CHUNK_NODES", 1 << 18)
    fn = _fn(sp.tanh(u) * sp.tanh(v) * sp.exp(-(u - v) ** 2))  # not separable: quadrature
    assert fn._nodes[0].table is None
    n = 200
    Vs = np.linspace(0.2, 3.0, n)
    tracemalloc.start()
    fn(Vs, 0.3 * Vs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # unchunked this is ~1.5 MB per point (~300 MB); the chunks hold a few CHUNK_NODES arrays
    assert peak < 12 * 8 * rules.CHUNK_NODES


def test_quadrature_only_disables_tables():
    fn = _fn(sp.tanh(u) * sp.tanh(v))
    with quadrature_only():
        assert not numeric.tabulation_enabled()
        a = fn(1.3, 0.5)
    assert numeric.tabulation_enabled()
    assert float(fn(1.3, 0.5)) == pytest.approx(float(a), abs=1e-12)


def _erf(x):
    from scipy.special import erf

    return erf(x)


def _gauss_hermite_unequal(V1, V2, r, n=200):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    X, Y = np.meshgrid(x, x, indexing="ij")
    a = np.sqrt(V1) * X
    b = np.sqrt(V2) * (r * X + np.sqrt(1 - r * r) * Y)
    return float(np.sum(np.outer(w, w) * np.tanh(a) * np.tanh(b)))
