"""Nested Gaussian expectations E_w[h(w, E_z[f(w + z)])] by direct quadrature, against closed
forms and scipy, and the rule that builds their variance tables only when amortised.

Closed forms used (w ~ N(0, a), z ~ N(0, b), so u = w + z₁ and v = w + z₂ with independent
z₁, z₂ have variance a + b and correlation ρ = a/(a + b)):

* E_w[(E_z[φ(w + z)])²] = E[φ(u) φ(v)]: the arc-cosine kernel for ReLU,
  (a + b)/(2π) (sin θ + (π − θ) cos θ), θ = arccos ρ;
* E_z[erf(w + z)] = erf(w/√(1 + 2b)), hence E_w[(E_z[erf(w + z)])²] = (2/π) asin(2c/(1 + 2c)),
  c = a/(1 + 2b);
* E_z[gelu(w + z)] = w Φ(w/s) + b φ(w/s)/s, s = √(1 + b) (gelu(x) = x Φ(x), Stein's lemma),
  the outer mean by scipy quadrature.
"""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

from critsym.activations import activation_expr
from critsym.gaussian import numeric
from critsym.gaussian.expectation import GaussE
from critsym.gaussian.numeric import compile_expr, nested_tables
from critsym.gaussian.tables import TABLE_POINTS

w, z = sp.symbols("w z", real=True)
A = sp.Symbol("A", positive=True)


def nested_square(act: str, a, b) -> GaussE:
    """E_{w~N(0,a)}[(E_{z~N(0,b)}[act(w + z)])²] as an expression (a may be a symbol)."""
    inner = GaussE(sp.Lambda(z, activation_expr(act, w + z)), sp.Float(b))
    return GaussE(sp.Lambda(w, inner**2), a)


def gelu_reference(a: float, b: float) -> float:
    s = np.sqrt(1 + b)

    def m(x):
        return x * stats.norm.cdf(x / s) + b * stats.norm.pdf(x / s) / s

    return integrate.quad(lambda x: m(x) ** 2 * stats.norm.pdf(x, scale=np.sqrt(a)),
                          -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]


@pytest.mark.parametrize("a, b", [(0.0351234901988415, 0.338426418324018), (1.0, 0.5),
                                  (4.0, 2.5)])
def test_gelu_single_value_by_direct_quadrature(a, b):
    expr = nested_square("gelu", sp.Float(a), b)
    got = float(compile_expr(expr, ())())
    assert got == pytest.approx(gelu_reference(a, b), rel=1e-10)
    assert expr.args[0] not in numeric._TABLES  # one value: no variance table was built


@pytest.mark.slow
def test_gelu_against_scipy_dblquad():
    """The same expectation as a plain 2-D integral over (w, z) (scipy's dblquad)."""
    a, b = 0.7, 0.4
    got = float(compile_expr(nested_square("gelu", sp.Float(a), b), ())())
    sa, sb = np.sqrt(a), np.sqrt(b)

    def gelu(x):
        return x * stats.norm.cdf(x)

    def inner(x):
        return integrate.quad(lambda y: gelu(x + y) * stats.norm.pdf(y, scale=sb),
                              -12 * sb, 12 * sb, epsabs=1e-14, epsrel=1e-13)[0]

    ref = integrate.quad(lambda x: inner(x) ** 2 * stats.norm.pdf(x, scale=sa), -12 * sa,
                         12 * sa, epsabs=1e-14, epsrel=1e-12)[0]
    assert got == pytest.approx(ref, rel=1e-9)


def test_erf_nested_closed_form_at_many_variances():
    """A vector of outer variances (more than one chunk of the nested rule)."""
    b = 0.6
    fn = compile_expr(nested_square("erf", A, b), (A,))
    a = np.geomspace(1e-3, 50.0, 21)
    c = a / (1 + 2 * b)
    np.testing.assert_allclose(fn(a), 2 / np.pi * np.arcsin(2 * c / (1 + 2 * c)), rtol=1e-10)
    assert fn._nodes[0]._key not in numeric._TABLES


def test_parameter_dependent_nested_integrand_over_many_points():
    """E_{w~N(0,A)}[(E_z[gelu(β w + z)])²] depends on β too (never tabulated): evaluated over
    more points than one chunk of the nested rule, it equals E_w[(E_z[gelu(w + z)])²] at
    outer variance β²A, and the same points one by one."""
    beta = sp.Symbol("beta", positive=True)
    b = 0.3
    inner = GaussE(sp.Lambda(z, activation_expr("gelu", beta * w + z)), sp.Float(b))
    fn = compile_expr(GaussE(sp.Lambda(w, inner**2), A), (A, beta))
    assert not fn._nodes[0].tabulable
    rng = np.random.default_rng(0)
    a, be = rng.uniform(0.1, 3.0, 61), rng.uniform(0.2, 2.0, 61)
    got = fn(a, be)
    np.testing.assert_allclose(got[[0, 45, 60]],
                               [float(fn(a[i], be[i])) for i in (0, 45, 60)], rtol=1e-14)
    np.testing.assert_allclose(got[:6], [gelu_reference(x * y**2, b)
                                         for x, y in zip(a[:6], be[:6], strict=True)],
                               rtol=1e-10)


@pytest.mark.parametrize("a, b", [(0.3, 0.64), (2.0, 0.1), (0.05, 3.0)])
def test_relu_nested_arc_cosine(a, b):
    got = float(compile_expr(nested_square("relu", sp.Float(a), b), ())())
    V, rho = a + b, a / (a + b)
    th = np.arccos(rho)
    ref = V / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    assert got == pytest.approx(ref, rel=1e-10)


def test_table_built_only_when_amortised(monkeypatch):
    """Direct evaluations are counted per integrand; the table is built once they add up to
    its cost (or at once under ``nested_tables("always")``, never under "never")."""
    built = []
    monkeypatch.setattr(numeric, "build_table", lambda quad: built.append(quad) or None)
    monkeypatch.setattr(numeric, "_DIRECT_POINTS", {})
    monkeypatch.setattr(numeric, "_TABLES", {})
    node = compile_expr(nested_square("gelu", A, 0.25), (A,))._nodes[0]
    assert node.tabulable and node.depth == 1
    assert node._table_for(TABLE_POINTS // 2) is None
    assert node._table_for(TABLE_POINTS // 2 - 1) is None
    assert not built
    node._table_for(1)  # reaches the table's cost
    assert len(built) == 1
    node._table_for(5)
    assert len(built) == 1  # one attempt per integrand
    other = compile_expr(nested_square("gelu", A, 0.5), (A,))._nodes[0]
    with nested_tables("never"):
        assert other._table_for(10 * TABLE_POINTS) is None
    with nested_tables("always"):
        other._table_for(1)
    assert len(built) == 2
    with pytest.raises(ValueError, match="policy"):
        with nested_tables("sometimes"):
            pass


def test_plain_integrands_keep_their_tables():
    fn = compile_expr(GaussE(sp.Lambda(z, sp.tanh(z) ** 2), A), (A,))
    fn(np.array(0.7))
    assert fn._nodes[0].depth == 0 and fn._nodes[0]._key in numeric._TABLES


def test_identical_integrands_share_single_values(monkeypatch):
    """Two compiled copies of the same nested expectation (equal numeric constants, built
    separately): the second is answered from the first's value."""
    calls = []
    quad = numeric._Node1._quad_of_V
    monkeypatch.setattr(numeric._Node1, "_quad_of_V",
                        lambda self, V: calls.append(V.size) or quad(self, V))
    first = float(compile_expr(nested_square("gelu", sp.Float(0.45), 0.3), ())())
    n = len(calls)
    second = float(compile_expr(nested_square("gelu", sp.Float(0.45), 0.3), ())())
    assert second == first and len(calls) == n


@pytest.mark.slow
def test_table_path_agrees_with_direct_quadrature():
    """The former path (a verified variance table of the nested integrand, tens of seconds)
    against direct quadrature at a few variances."""
    numeric.clear_caches()
    b = 0.338426418324018
    fn = compile_expr(nested_square("gelu", A, b), (A,))
    a = np.array([0.0351234901988415, 0.4, 3.0])
    direct = np.array([float(fn(x)) for x in a])
    with nested_tables("always"):
        tabled = fn(a)
    assert fn._nodes[0]._key in numeric._TABLES
    assert fn._nodes[0].table.max_rel_error <= 1e-10
    np.testing.assert_allclose(tabled, direct, rtol=1e-10)
    np.testing.assert_allclose(direct, [gelu_reference(x, b) for x in a], rtol=1e-10)


def gelu_mixer_block(sigmas):
    """A Mixer block (μ = 1, LayerNorm, token then channel GELU MLP), numeric (σ_w, σ_b) per
    Linear, as the importer reads a timm-style block."""
    from critsym.ops.activation import Act
    from critsym.ops.axes import Transpose
    from critsym.ops.linear import Linear
    from critsym.ops.norm import LayerNorm
    from critsym.ops.residual import Residual

    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = sigmas
    tok = Residual(LayerNorm() >> Transpose() >> Linear(w1, b1) >> Act("gelu")
                   >> Linear(w2, b2) >> Transpose(), 1)
    return tok >> Residual(LayerNorm() >> Linear(w3, b3) >> Act("gelu") >> Linear(w4, b4), 1)


@pytest.mark.slow
def test_gelu_mixer_with_numeric_sigmas_runs_without_nested_tables():
    """The block of the timm GELU Mixer row (its σ's numbers, so its nested expectations depend
    on nothing but their variance): J and K through it equal the same block derived with
    symbolic σ's and run at their values (a different evaluation path: parameter-dependent
    integrands, never tabulated), and no variance table of a nested integrand is built."""
    import critsym as cs
    from critsym.body import numeric_form
    from critsym.interop.network import run_blocks

    numeric.clear_caches()
    arch = gelu_mixer_block([(0.5817, 0.1874), (0.5648, 0.1614), (0.5740, 0.0994),
                             (0.5774, 0.0497)])
    got = run_blocks([(cs.derive(arch), {})], K0=1.3, O_T0=0.2, O_C0=0.1)
    tpl, values = numeric_form(arch)
    assert values  # the template has symbols
    ref = run_blocks([(cs.derive(tpl), values)], K0=1.3, O_T0=0.2, O_C0=0.1)
    np.testing.assert_allclose(got.J, ref.J, rtol=1e-10)
    np.testing.assert_allclose(got.K, ref.K, rtol=1e-10)
    nested = [k for k in numeric._TABLES if numeric._nesting_depth(k.expr)]
    assert not nested
    assert numeric._DIRECT_POINTS  # the nested expectations were evaluated directly
