"""Local Q/C maps against independent references: scipy quad, closed forms (arc-cosine /
arc-sine kernels, shifted-ReLU moments), and the Hermite series vs the 2-D rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

import critsym as cs
from critsym.errors import CritsymError
from critsym.gaussian.numeric import compile_expr
from critsym.shaping import local_map_exprs, local_maps
from critsym.shaping.maps import c_sym, q_sym

P = dict(input_scale=0.8, input_shift=0.3, output_shift=-0.2, output_scale=1.1)

FUNCS = {
    "tanh": (np.tanh, lambda t: 1 / np.cosh(t) ** 2,
             lambda t: -2 * np.tanh(t) / np.cosh(t) ** 2, ()),
    "relu": (lambda t: np.maximum(t, 0.0), lambda t: float(t > 0), lambda t: 0.0, (0.0,)),
    "elu": (lambda t: t if t > 0 else math.expm1(t), lambda t: 1.0 if t > 0 else math.exp(t),
            lambda t: 0.0 if t > 0 else math.exp(t), (0.0,)),
    "softplus": (lambda t: np.logaddexp(0, t), lambda t: 1 / (1 + math.exp(-t)),
                 lambda t: math.exp(-t) / (1 + math.exp(-t)) ** 2, ()),
}


def _quad(f, pts=()):
    edges = [-40.0, *sorted(pts), 40.0]
    return sum(integrate.quad(lambda t: f(t) * norm.pdf(t), a, b, epsabs=1e-15, epsrel=1e-13,
                              limit=200)[0] for a, b in zip(edges[:-1], edges[1:], strict=True))


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_one_dimensional_invariants_match_scipy_quad(name):
    f0, f1, f2, kinks = FUNCS[name]
    a, b, d, g = P["input_scale"], P["input_shift"], P["output_shift"], P["output_scale"]
    pts = [(k - b) / a for k in kinks]

    def ph(t):
        return g * (f0(a * t + b) + d)

    Q = _quad(lambda t: ph(t) ** 2, pts)
    ref = {
        "Q(1)": Q,
        "Q'(1)": _quad(lambda t: ph(t) * g * a * f1(a * t + b) * t, pts),
        "C(0)": _quad(ph, pts) ** 2 / Q,
        "C'(1)": _quad(lambda t: (g * a * f1(a * t + b)) ** 2, pts) / Q,
        "C'(0)": _quad(lambda t: g * a * f1(a * t + b), pts) ** 2 / Q,
        "C''(1)": _quad(lambda t: (g * a * a * f2(a * t + b)) ** 2, pts) / Q,
    }
    got = local_maps(name, **P).invariants()
    if name == "relu":  # φ' jumps: φ'' has a Dirac part and C''(1) diverges
        assert got.pop("C''(1)") == math.inf
        ref.pop("C''(1)")
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-11, rel=1e-11), k


def test_shifted_relu_closed_form_moments():
    a, b, d, g = 0.43, 1.0, -0.9, 2.3
    k = b / a
    Er = a * (norm.pdf(k) + k * norm.cdf(k))
    Er2 = a * a * ((1 + k * k) * norm.cdf(k) + k * norm.pdf(k))
    Q = g * g * (Er2 + 2 * d * Er + d * d)
    qs = g * g * a * (a * (norm.cdf(k) - k * norm.pdf(k)) + b * norm.pdf(k) + d * norm.pdf(k))
    inv = local_maps("relu", a, b, d, g).invariants()
    assert inv["Q(1)"] == pytest.approx(Q, rel=1e-13)
    assert inv["Q'(1)"] == pytest.approx(qs, rel=1e-12)
    assert inv["C'(1)"] == pytest.approx(g * g * a * a * norm.cdf(k) / Q, rel=1e-13)
    assert inv["C(0)"] == pytest.approx(g * g * (Er + d) ** 2 / Q, rel=1e-12)


@pytest.mark.parametrize("c", [-0.95, -0.4, 0.0, 0.3, 0.7, 0.99, 1.0])
@pytest.mark.parametrize("q", [0.5, 1.0, 3.0])
def test_relu_c_map_is_the_arc_cosine_kernel(c, q):
    lm = local_maps("relu")
    ref = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    assert lm.C(c, q) == pytest.approx(ref, abs=1e-12)
    assert lm.C_slope(c, q) == pytest.approx((math.pi - math.acos(c)) / math.pi, abs=1e-12)


@pytest.mark.parametrize("c", [-0.8, -0.2, 0.25, 0.6, 0.97])
@pytest.mark.parametrize("q", [0.3, 1.0, 2.5])
def test_erf_maps_are_the_arc_sine_kernel(c, q):
    lm = local_maps("erf")
    Q = 2 / math.pi * math.asin(2 * q / (1 + 2 * q))
    assert lm.Q(q) == pytest.approx(Q, abs=1e-13)
    assert lm.C(c, q) == pytest.approx(2 / math.pi * math.asin(2 * q * c / (1 + 2 * q)) / Q,
                                       abs=1e-12)
    # d/dc: q E[φ'(u)φ'(v)] with φ' = 2/√π e^{-x²}
    slope = q * 4 / (math.pi * math.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c)) / Q
    assert lm.C_slope(c, q) == pytest.approx(slope, abs=1e-12)
    dQ = 2 / math.pi / math.sqrt(1 - (2 * q / (1 + 2 * q)) ** 2) * 2 / (1 + 2 * q) ** 2
    assert lm.Q_slope(q) == pytest.approx(dQ, abs=1e-12)


@pytest.mark.parametrize("name", ["tanh", "gelu", "swish", "softplus"])
def test_hermite_series_agrees_with_the_2d_rule(name):
    lm = local_maps(name, 0.3, 0.5, -0.4, 3.0)
    assert lm.hermite() is not None
    for c in (-0.9, -0.3, 0.2, 0.5, 0.95):
        two_d = lm._corr(0, c, 1.0) / lm.Q(1.0)
        assert lm.C(c) == pytest.approx(two_d, abs=1e-12)


def test_c_curvature_matches_finite_differences_of_the_c_map():
    lm = local_maps("tanh", 0.9, 0.2, 0.1, 1.3)
    h = 1e-3
    for c in (-0.3, 0.4):
        fd = (lm.C(c + h) - 2 * lm.C(c) + lm.C(c - h)) / h**2
        assert lm.C_curv(c) == pytest.approx(fd, abs=1e-5)
        fd1 = (lm.C(c + h) - lm.C(c - h)) / (2 * h)
        assert lm.C_slope(c) == pytest.approx(fd1, abs=1e-6)


def test_symbolic_maps_closed_form_for_relu_and_quadrature_node_for_tanh():
    ex = local_map_exprs("relu", input_scale=1, input_shift=0, output_shift=0, output_scale=1)
    assert not ex["C"].has(cs.GaussE2) and not ex["Q"].has(cs.GaussE)
    f = sp.lambdify((c_sym, q_sym), ex["C"])
    assert f(0.3, 2.0) == pytest.approx(local_maps("relu").C(0.3, 2.0), abs=1e-12)
    ex = local_map_exprs("tanh", input_scale=0.5, input_shift=0.2, output_shift=0.1,
                         output_scale=2)
    assert ex["Q"].has(cs.GaussE)
    val = compile_expr(ex["C'"], (q_sym,))(np.array(1.0))
    lm = local_maps("tanh", 0.5, 0.2, 0.1, 2.0)
    assert float(val) == pytest.approx(lm.invariants()["C'(1)"], abs=1e-11)


def test_relu_curvature_is_refused_not_wrong():
    # the true C''(c) of relu is 1/(π√(1-c²)) (arc-cosine kernel); the a.e. φ'' would give 0
    with pytest.raises(CritsymError, match="Dirac"):
        local_maps("relu").C_curv(0.3)
    lm = local_maps("relu")
    h = 1e-4
    fd = (lm.C_slope(0.3 + h) - lm.C_slope(0.3 - h)) / (2 * h)
    assert fd == pytest.approx(1 / (math.pi * math.sqrt(1 - 0.09)), rel=1e-6)


def test_bad_inputs_raise_critsym_errors():
    lm = local_maps("tanh")
    with pytest.raises(CritsymError, match="c must lie"):
        lm.C(1.5)
    with pytest.raises(CritsymError, match="q must be"):
        lm.Q(-1.0)
    with pytest.raises(CritsymError, match="unknown activation"):
        local_maps("tanhh")
    with pytest.raises(CritsymError):
        local_maps(3.0)


@settings(max_examples=15, deadline=None)
@given(a=st.floats(0.05, 3.0), b=st.floats(-2.0, 2.0), d=st.floats(-1.0, 1.0),
       g=st.floats(0.2, 5.0), q=st.floats(0.2, 4.0),
       name=st.sampled_from(["tanh", "swish", "elu", "relu"]))
def test_map_identities_for_random_transforms(a, b, d, g, q, name):
    """C(1) = 1; the end points of C and C' equal the one-pass invariants; Q scales as γ²."""
    lm = local_maps(name, a, b, d, g)
    inv = lm.invariants(q)
    assert lm.C(1.0, q) == pytest.approx(1.0, abs=1e-12)
    assert lm.C(0.0, q) == pytest.approx(inv["C(0)"], abs=1e-12)
    assert lm.C_slope(1.0, q) == pytest.approx(inv["C'(1)"], rel=1e-11)
    assert lm.C_slope(0.0, q) == pytest.approx(inv["C'(0)"], rel=1e-11, abs=1e-13)
    assert lm.Q(q) == pytest.approx(g * g * local_maps(name, a, b, d, 1.0).Q(q), rel=1e-12)
    assert inv["Q(1)"] == pytest.approx(lm.Q(q), rel=1e-12)
