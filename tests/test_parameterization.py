"""abc-parameterizations: exponent calculus against hand-derived closed forms, the symmetry
(exactly,
in sympy and in torch), classification, and input validation."""

from __future__ import annotations

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from critsym.errors import CritsymError, HyperparameterError
from critsym.parameterization import (
    ABCNet,
    abc,
    one_step,
    parameterization,
)

H = sp.Rational(1, 2)


@pytest.mark.parametrize("n_layers", [3, 4, 6, 9])
def test_ip_closed_forms(n_layers):
    # IP: a=(0;1;1), b=0 -> each hidden layer multiplies the scale by m^{1/2 - 1}: h_l ~ m^{-l/2};
    # intermediate updates dW^l ~ m^{-(L-2)/2}; stationary exactly from L >= 3.
    L = n_layers - 1
    p = parameterization("IP", n_layers)
    e = p.exponents()
    assert list(e.h) == [-sp.Rational(l, 2) for l in range(L + 1)]
    assert all(e.dW[l] == -sp.Rational(L - 2, 2) for l in range(1, L))
    assert p.classify().stationary is (L >= 3)
    assert p.classify().integrable


def test_sp_unstable_ntk_kernel_mup_feature():
    sp_, ntk, mup, splr = (parameterization(n, 6) for n in ("SP", "NTK", "muP", "SP-lr/m"))
    e = sp_.exponents()
    assert all(x == H for x in e.delta_h[1:]) and e.delta_f == 1  # Dh ~ m^{1/2}
    assert not sp_.classify().stable and sp_.classify().stable_init
    assert ntk.classify().kernel_regime and not ntk.classify().feature_learning
    assert splr.classify().kernel_regime
    assert all(x == 0 for x in mup.exponents().delta_h) and mup.exponents().delta_f == 0
    c = mup.classify()
    assert c.feature_learning and c.nontrivial and not c.kernel_regime and not c.integrable


def test_mup_equivalent_to_its_ip_form():
    mup = parameterization("muP", 6)
    other = abc((0, 1, 1), (0, -H, 0), (-1, -2, -1), n_layers=6)
    assert mup.equivalent(other)
    assert not mup.equivalent(parameterization("IP", 6))  # differs by the hidden init scale
    assert mup.exponents().delta_h == other.exponents().delta_h


rationals = st.fractions(min_value=-2, max_value=2, max_denominator=4)


@settings(max_examples=40, deadline=None)
@given(st.lists(rationals, min_size=5, max_size=5), st.sampled_from(["SP", "NTK", "muP", "IP"]))
def test_symmetry_preserves_function_space_exponents(thetas, name):
    p = parameterization(name, 5)
    q = p.shift([sp.Rational(t.numerator, t.denominator) for t in thetas])
    assert p.equivalent(q)
    ep, eq = p.exponents(), q.exponents()
    assert ep.h == eq.h and ep.dh == eq.dh and ep.delta_h == eq.delta_h
    assert ep.delta_f == eq.delta_f
    # dW moves by +theta_l relative to the weight scale m^{-b_l}: the ratio is invariant
    for l, t in enumerate(thetas):
        assert eq.dW[l] - ep.dW[l] == sp.Rational(t.numerator, t.denominator)


def test_symmetry_holds_in_torch():
    # Same U, shifted exponents: the function and its one-step change agree to rounding.
    p = parameterization("muP", 4)
    q = p.shift([H, 1, 1, H])
    width = 64
    xi = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = []
    for par in (p, q):
        net = ABCNet(par, width, generator=torch.Generator().manual_seed(11))
        res.append(one_step(net, xi, eta=0.3))
    for key in ("h", "delta_h", "delta_f"):
        assert res[0][key] == pytest.approx(res[1][key], rel=1e-9)


def test_latex_and_table():
    p = parameterization("IP", 4)
    tex = p.latex()
    assert tex.startswith(r"\begin{tabular}") and r"- \frac{1}{2}" in tex
    assert "dW" in p.table()


def test_ip_llr_first_step_rates():
    p = parameterization("IP-LLR", 6)
    assert all(x == 0 for x in p.exponents().dW)  # every first-step update Theta(1)
    assert p.c == parameterization("IP", 6).c  # later steps use IP's rates


@pytest.mark.parametrize("bad", [
    lambda: parameterization("XYZ", 4),
    lambda: parameterization("SP", 1),
    lambda: parameterization("SP", True),
    lambda: abc(0, 0, 0),  # no n_layers
    lambda: abc((0, 1), 0, 0, n_layers=4),
    lambda: abc(sp.sqrt(2), 0, 0, n_layers=3),
    lambda: abc("x", 0, 0, n_layers=3),
    lambda: ABCNet(parameterization("SP", 3), 0),
    lambda: ABCNet(parameterization("SP", 3), 8, sigma=-1.0),
])
def test_bad_input(bad):
    with pytest.raises(HyperparameterError):
        bad()
    assert issubclass(HyperparameterError, CritsymError)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(rationals, rationals, rationals), min_size=3, max_size=6))
def test_nonlinear_term_reduces_to_linear_response_where_valid(abcs):
    p = abc([t[0] for t in abcs], [t[1] for t in abcs], [t[2] for t in abcs])
    lin, nl = p.exponents(), p.exponents(nonlinear=True)
    assert lin.h == nl.h and lin.dW == nl.dW
    for l, ok in enumerate(lin.linear_valid[:-1]):
        if ok:
            assert nl.delta_h[l] == lin.delta_h[l]
        assert nl.delta_h[l] >= lin.delta_h[l]  # the coherent term only adds
    if all(lin.linear_valid):
        assert nl.delta_f == lin.delta_f


def test_ip_llr_every_layer_learns_with_the_nonlinear_term():
    p = parameterization("IP-LLR", 6)
    assert not all(p.exponents().linear_valid)
    assert all(x == 0 for x in p.exponents(nonlinear=True).delta_h)
    assert p.classify().feature_learning and not p.classify(nonlinear=False).nontrivial
    assert "linear response invalid" in p.table()
