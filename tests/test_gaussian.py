"""Closed forms and quadrature of Gaussian expectations against independent scipy integration."""

import numpy as np
import pytest
import sympy as sp
from reference import PHI, gauss, gauss2, leaky

from critsym.activations import activation_expr
from critsym.gaussian.expectation import GaussE, GaussE2, expect, expect2
from critsym.gaussian.numeric import compile_expr, evaluate_mp

z = sp.Symbol("z", real=True)
u, v = sp.symbols("u v", real=True)
K = sp.Symbol("K", positive=True)
K1, K2, C = sp.symbols("K1 K2 C", real=True)
KS = [0.03, 0.4, 1.0, 2.7, 9.0]


def _num(expr, *args):
    return compile_expr(expr, args)


@pytest.mark.parametrize(
    "name,phi2,dphi2",
    [
        ("relu", lambda k: k / 2, lambda k: 0.5),
        ("identity", lambda k: k, lambda k: 1.0),
        ("erf", lambda k: 2 / np.pi * np.arcsin(2 * k / (1 + 2 * k)),
         lambda k: 4 / (np.pi * np.sqrt(1 + 4 * k))),
        ("sin", lambda k: (1 - np.exp(-2 * k)) / 2, lambda k: (1 + np.exp(-2 * k)) / 2),
    ],
)
def test_textbook_closed_forms(name, phi2, dphi2):
    f = activation_expr(name, z)
    e2 = expect(f**2, z, K)
    d2 = expect(sp.diff(f, z) ** 2, z, K)
    assert not e2.has(GaussE) and not d2.has(GaussE), "expected closed forms"
    for k in KS:
        assert float(e2.subs(K, k)) == pytest.approx(phi2(k), rel=1e-12, abs=1e-14)
        assert float(d2.subs(K, k)) == pytest.approx(dphi2(k), rel=1e-12)
        # and the textbook formula itself against quadrature
        p, dp = PHI[name]
        assert phi2(k) == pytest.approx(gauss(lambda x: p(x) ** 2, k), rel=1e-10)
        assert dphi2(k) == pytest.approx(gauss(lambda x: dp(x) ** 2, k), rel=1e-10)


def test_relu_mean_and_leaky_relu():
    assert float(expect(activation_expr("relu", z), z, K).subs(K, 2.0)) == pytest.approx(
        np.sqrt(2.0 / (2 * np.pi)), rel=1e-13)
    a = 0.2
    f = activation_expr("leaky_relu", z, alpha=a)
    p, dp = leaky(a)
    for k in KS:
        assert float(expect(f**2, z, K).subs(K, k)) == pytest.approx(
            gauss(lambda x: p(x) ** 2, k), rel=1e-10)
        assert float(expect(sp.diff(f, z) ** 2, z, K).subs(K, k)) == pytest.approx(
            gauss(lambda x: dp(x) ** 2, k), rel=1e-10)


@pytest.mark.parametrize("name", ["gelu", "erf", "relu"])
def test_derived_closed_forms_match_quadrature(name):
    """gelu's E[φ²], E[φ'²] come out of Stein's lemma and the arcsine rule: check them."""
    f = activation_expr(name, z)
    p, dp = PHI[name]
    for expr, ref in [(f**2, lambda x: p(x) ** 2), (sp.diff(f, z) ** 2, lambda x: dp(x) ** 2),
                      (f, p)]:
        e = expect(expr, z, K)
        assert not e.has(GaussE)
        for k in KS:
            assert float(e.subs(K, k)) == pytest.approx(gauss(ref, k), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("name", sorted(PHI))
def test_quadrature_accuracy(name):
    """The numeric rule (closed forms switched off) against adaptive quadrature."""
    f = activation_expr(name, z)
    p, dp = PHI[name]
    for expr, ref in [(f**2, lambda x: p(x) ** 2), (sp.diff(f, z) ** 2, lambda x: dp(x) ** 2)]:
        e = expect(expr, z, K, closed_forms=False)
        vals = _num(e, K)(np.array(KS))
        refs = np.array([gauss(ref, k) for k in KS])
        np.testing.assert_allclose(vals, refs, rtol=1e-10, atol=1e-14)


def test_mpmath_precision():
    e = expect(sp.tanh(z) ** 2, z, K)
    hi = evaluate_mp(e, {K: sp.Rational(1, 2)}, dps=40)
    lo = _num(e, K)(0.5)
    assert abs(float(hi) - float(lo)) < 1e-13
    assert abs(float(hi) - gauss(lambda x: np.tanh(x) ** 2, 0.5)) < 1e-12


@pytest.mark.parametrize("k11,k22,k12", [(1.0, 1.0, 0.5), (2.0, 0.7, -0.3), (0.5, 0.5, 0.4999),
                                         (3.0, 1.5, 2.0)])
def test_arc_cosine_and_arc_sine_kernels(k11, k22, k12):
    relu = expect2(activation_expr("relu", u) * activation_expr("relu", v), u, v, K1, K2, C)
    erf = expect2(sp.erf(u) * sp.erf(v), u, v, K1, K2, C)
    assert not relu.has(GaussE2) and not erf.has(GaussE2)
    subs = {K1: k11, K2: k22, C: k12}
    th = np.arccos(k12 / np.sqrt(k11 * k22))
    arccos_ref = np.sqrt(k11 * k22) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    arcsin_ref = 2 / np.pi * np.arcsin(2 * k12 / np.sqrt((1 + 2 * k11) * (1 + 2 * k22)))
    assert float(relu.subs(subs)) == pytest.approx(arccos_ref, rel=1e-12)
    assert float(erf.subs(subs)) == pytest.approx(arcsin_ref, rel=1e-12)
    r, _ = PHI["relu"]
    assert arccos_ref == pytest.approx(gauss2(r, r, k11, k22, k12), rel=1e-9)


@pytest.mark.parametrize("name", ["tanh", "gelu", "relu", "sin"])
def test_bivariate_quadrature(name):
    f = activation_expr(name, u) * activation_expr(name, v)
    e = expect2(f, u, v, K1, K2, C, closed_forms=False)
    assert e.has(GaussE2)
    p, _ = PHI[name]
    pts = [(1.0, 1.0, 0.5), (2.0, 0.7, -0.3), (0.8, 0.8, 0.79)]
    vals = _num(e, K1, K2, C)(*map(np.array, zip(*pts)))
    refs = [gauss2(p, p, *pt) for pt in pts]
    np.testing.assert_allclose(vals, refs, rtol=1e-9, atol=1e-11)


def test_odd_integrands_vanish_and_constants_factor():
    assert expect(sp.tanh(z), z, K) == 0
    s = sp.Symbol("s", positive=True)
    e = expect(sp.tanh(z) ** 2 / s**2, z, K)
    assert e.as_independent(z)[0] != 1 or e.has(GaussE)
    assert sp.simplify(e * s**2 - expect(sp.tanh(z) ** 2, z, K)) == 0


def test_derivative_of_expectation_in_variance():
    """d/dK E_K[tanh²] by the heat-equation identity vs a finite difference of quadrature."""
    e = expect(sp.tanh(z) ** 2, z, K)
    d = sp.diff(e, K)
    k, h = 0.7, 1e-5
    fd = (gauss(lambda x: np.tanh(x) ** 2, k + h) - gauss(lambda x: np.tanh(x) ** 2, k - h)) / (
        2 * h)
    assert float(_num(d, K)(k)) == pytest.approx(fd, rel=1e-7)


def test_nested_expectation_with_a_kink_in_the_inner_integrand():
    """E_w[(E_z[relu(w + z)])²], w ~ N(0, a), z ~ N(0, b): the inner kink at z = −w moves with
    the outer variable and is no kink of the outer integrand (it used to raise).  Reference:
    the inner mean in closed form, m(w) = w Φ(w/√b) + √b φ(w/√b), then scipy quadrature."""
    from scipy import integrate, stats

    w, z = sp.symbols("w z", real=True)
    a, b = 0.3, 0.64
    relu = activation_expr("relu", w + z)
    inner = GaussE(sp.Lambda(z, relu), sp.Float(b))
    outer = GaussE(sp.Lambda(w, inner ** 2), sp.Float(a))
    got = float(compile_expr(outer, ())())  # one value: direct quadrature, no table

    sb = np.sqrt(b)

    def m(x):
        return x * stats.norm.cdf(x / sb) + sb * stats.norm.pdf(x / sb)

    ref = integrate.quad(lambda x: m(x) ** 2 * stats.norm.pdf(x, scale=np.sqrt(a)),
                         -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    assert got == pytest.approx(ref, rel=1e-8)
