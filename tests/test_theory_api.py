"""One Theory for every state: the keyword state API, precision=, lambdify and pickling."""

from __future__ import annotations

import inspect
import math
import pickle

import mpmath
import numpy as np
import pytest
import sympy as sp
from _indep import gauss_E, tanh2
from reference import gauss2
from test_mixer_correlation import cross_block

import critsym as cs
from critsym.errors import CritsymError, HyperparameterError
from critsym.symbols import O_C, O_T, K

MIX = dict(sigma_w=1.2, sigma_b=0.3, mu=0.5)
TANH = dict(sigma_w=1.3, sigma_b=0.2)


@pytest.fixture(scope="module")
def mixer():
    return cs.derive(cs.mixer_block())


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


def test_one_class_with_the_state_as_a_named_record(mixer, tanh):
    assert type(mixer) is type(tanh) is cs.Theory
    assert tanh.state_names == ("K",) and tanh.cross_names == ("K12",)
    assert mixer.state_names == ("K", "O_T", "O_C")
    assert mixer.cross_names == ("K12", "O_T12", "O_C12")
    for name in ("variance_map", "chi_J", "covariance_map", "c_map", "run", "fixed_point",
                 "correlation", "state_map", "lambdify", "state_kernel", "cross_kernel"):
        assert inspect.signature(getattr(mixer, name)) == inspect.signature(getattr(tanh, name))
    r1, r2 = tanh.run(3, c0=0.5, **TANH), mixer.run(3, c0=0.5, **MIX)
    assert type(r1) is type(r2) is cs.RunResult
    assert r1.O_T is None and r2.O_T.shape == r2.K.shape


def test_positional_covariance_map_is_refused(mixer, tanh):
    """covariance_map(1, 1, 0.5) once read 0.5 as O_T on a multi-axis theory and as K12 on a
    single-axis one: the state is keyword-only."""
    for th, hp in ((mixer, MIX), (tanh, TANH)):
        with pytest.raises(HyperparameterError, match="keyword"):
            th.covariance_map(1.0, 1.0, 0.5, **hp)
        with pytest.raises(HyperparameterError, match="keyword"):
            th.variance_map(1.0, 0.2, **hp)


def test_mixer_covariance_map_by_keyword_matches_independent_block(mixer):
    (_, _), (K12, OT12) = cross_block((1.0, 0.0), (0.5, 0.0), MIX["sigma_w"], MIX["sigma_b"],
                                       MIX["mu"])
    assert float(mixer.covariance_map(K=1.0, K12=0.5, **MIX)) == pytest.approx(K12, rel=1e-9)
    _, (K12b, OT12b) = cross_block((1.0, 0.2), (0.5, 0.1), MIX["sigma_w"], MIX["sigma_b"],
                                   MIX["mu"])
    got = mixer.covariance_map(K=1.0, K12=0.5, O_T=0.2, O_T12=0.1, **MIX)
    assert float(got) == pytest.approx(K12b, rel=1e-9)
    OT1, _ = mixer.cross_offset_maps(K=1.0, K12=0.5, O_T=0.2, O_T12=0.1, **MIX)
    assert float(OT1) == pytest.approx(OT12b, rel=1e-9)


def test_single_axis_covariance_map_by_keyword(tanh):
    K_, c = 0.9, 0.4
    G = TANH["sigma_w"] ** 2 * gauss2(np.tanh, np.tanh, K_, 0.6, c * math.sqrt(K_ * 0.6)) \
        + TANH["sigma_b"] ** 2
    got = tanh.covariance_map(K=K_, K22=0.6, K12=c * math.sqrt(K_ * 0.6), **TANH)
    assert float(got) == pytest.approx(G, rel=1e-9)
    assert float(tanh.c_map(0.3, K=K_, **TANH)) == pytest.approx(
        float(tanh.covariance_map(K=K_, K12=0.3 * K_, **TANH) / tanh.variance_map(K=K_, **TANH)),
        rel=1e-13)


@pytest.mark.parametrize("call", [
    lambda th: th.variance_map(K=1.0, O_T=0.1, **TANH),
    lambda th: th.chi_J(1.0, O_C=0.1, **TANH),
    lambda th: th.covariance_map(K=1.0, K12=0.5, O_T12=0.1, **TANH),
    lambda th: th.c_map(0.5, K=1.0, O_T=0.1, **TANH),
    lambda th: th.run(2, O_T0=0.1, **TANH),
    lambda th: th.offset_maps(K=1.0, **TANH),
])
def test_single_axis_refuses_state_it_does_not_have(tanh, call):
    with pytest.raises(CritsymError, match="O_T|O_C|multi-axis|state"):
        call(tanh)


def test_multi_axis_refuses_K22_and_bad_state(mixer):
    with pytest.raises(HyperparameterError, match="K22"):
        mixer.covariance_map(K=1.0, K22=2.0, K12=0.5, **MIX)
    with pytest.raises(HyperparameterError, match="needs the variance K"):
        mixer.variance_map(O_T=0.1, **MIX)
    with pytest.raises(HyperparameterError, match="twice"):
        mixer.variance_map(1.0, K=1.0, **MIX)
    with pytest.raises(HyperparameterError, match="state variables"):
        mixer.run(2, O_T=0.1, **MIX)
    with pytest.raises(HyperparameterError, match=r"\[-1, 1\]"):
        mixer.run(2, c0=float("nan"), **MIX)
    with pytest.raises(HyperparameterError, match="reserved"):
        cs.Linear(sigma_w="O_T")


@pytest.mark.parametrize("c0", [float("nan"), 1.5, -2.0])
def test_run_refuses_a_bad_c0_for_every_state(mixer, tanh, c0):
    for th, hp in ((mixer, MIX), (tanh, TANH)):
        with pytest.raises(HyperparameterError, match="c0"):
            th.run(2, c0=c0, **hp)


@pytest.mark.parametrize("precision", [0, -1, 2.5, True, "30"])
def test_precision_is_validated_for_every_state(mixer, tanh, precision):
    for th, hp in ((mixer, MIX), (tanh, TANH)):
        for method in (th.variance_map, th.chi_J):
            with pytest.raises(HyperparameterError, match="precision"):
                method(K=1.0, precision=precision, **hp)


def test_multi_axis_precision_is_honoured():
    """χ_J of the token-mixing block, μ² + σ_w⁴ E_q[gelu'(z)²]/(K − O_T), at 40 digits against
    an independent mpmath quadrature (float64 alone agrees to ~1e-16 only)."""
    th = cs.derive(cs.token_mixing())
    v = th.chi_J(1.7, O_T=0.2, sigma_w=1.1, sigma_b=0.4, mu=0.7, precision=40)
    with mpmath.workdps(45):
        sw, sb, mu, K_, OT = (mpmath.mpf(x) for x in (1.1, 0.4, 0.7, 1.7, 0.2))
        sd = mpmath.sqrt(sw**2 + sb**2)

        def dgelu(z):
            return mpmath.ncdf(z) + z * mpmath.npdf(z)

        E = mpmath.quad(lambda z: dgelu(z) ** 2 * mpmath.npdf(z, 0, sd),
                        [-mpmath.inf, 0, mpmath.inf])
        ref = mu**2 + sw**4 * E / (K_ - OT)
        assert abs(v - ref) < mpmath.mpf(10) ** -35
    with pytest.raises(HyperparameterError, match="scalar"):
        th.chi_J(np.array([1.0, 2.0]), sigma_w=1.1, sigma_b=0.4, mu=0.7, precision=30)


def test_sympy_lambdify_of_an_unevaluated_expectation(tanh):
    assert tanh.F.has(cs.GaussE)
    args = (K, *tanh.hyperparameters)
    f = sp.lambdify(args, tanh.F, modules="numpy")
    Ks = np.array([0.3, 1.0, 4.0])
    got = f(Ks, *(TANH[s.name] for s in tanh.hyperparameters))
    np.testing.assert_allclose(got, tanh.variance_map(K=Ks, **TANH), rtol=1e-13)
    ref = [TANH["sigma_w"] ** 2 * gauss_E(tanh2, k) + TANH["sigma_b"] ** 2 for k in Ks]
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    g = sp.lambdify(args, tanh.F, modules="math")
    assert g(1.0, TANH["sigma_b"], TANH["sigma_w"]) == pytest.approx(ref[1], rel=1e-11)
    h = sp.lambdify(args, tanh.F, modules="mpmath")
    with mpmath.workdps(30):
        vals = [mpmath.mpf(1.0)] + [mpmath.mpf(TANH[s.name]) for s in tanh.hyperparameters]
        hi = h(*vals)
    lo = tanh.variance_map(K=1.0, precision=30, **TANH)
    assert abs(hi - lo) < 1e-25


def test_sympy_lambdify_of_nested_multi_axis_expectations(mixer):
    args = (K, O_T, O_C, *mixer.hyperparameters)
    f = sp.lambdify(args, mixer.chi)
    hp = [MIX[s.name] for s in mixer.hyperparameters]
    assert f(1.3, 0.2, 0.0, *hp) == pytest.approx(
        float(mixer.chi_J(K=1.3, O_T=0.2, **MIX)), rel=1e-13)


def test_theory_lambdify_uses_the_compiled_maps(mixer, tanh):
    F = tanh.lambdify("F")
    assert F.arg_names == ("K", "sigma_b", "sigma_w")
    assert F(1.0, 0.2, 1.3) == pytest.approx(float(tanh.variance_map(K=1.0, **TANH)), rel=1e-15)
    G = mixer.lambdify("G")
    assert G.arg_names[:6] == ("K", "O_T", "O_C", "K_12", "O_T12", "O_C12")
    hp = [MIX[s.name] for s in mixer.hyperparameters]
    assert G(1.0, 0.0, 0.0, 0.5, 0.0, 0.0, *hp) == pytest.approx(
        float(mixer.covariance_map(K=1.0, K12=0.5, **MIX)), rel=1e-14)
    with pytest.raises(HyperparameterError, match="unknown map"):
        tanh.lambdify("F_T")


@pytest.mark.parametrize("which", ["tanh", "mixer"])
def test_pickle_round_trip_after_run(which, mixer, tanh):
    th, hp = (tanh, TANH) if which == "tanh" else (mixer, MIX)
    r = th.run(4, c0=0.3, **hp)
    fp = th.fixed_point(**hp)
    clone = pickle.loads(pickle.dumps(th))
    assert clone == th and "_compiled" not in clone.__dict__
    r2 = clone.run(4, c0=0.3, **hp)
    np.testing.assert_array_equal(r.K, r2.K)
    np.testing.assert_array_equal(r.J, r2.J)
    np.testing.assert_array_equal(r.c, r2.c)
    assert float(clone.fixed_point(**hp).K_star) == float(fp.K_star)


@pytest.mark.parametrize("which", ["tanh", "mixer"])
def test_solver_kernels_agree_with_the_maps_for_every_state(which, mixer, tanh):
    th, hp = (tanh, TANH) if which == "tanh" else (mixer, MIX)
    V = [np.array([hp[n], hp[n] * 1.1]) for n in th.hyperparameter_names]
    kw = dict(zip(th.hyperparameter_names, V, strict=True))
    s = np.array([[1.0, 2.0], [0.2, 0.5]])[:len(th.feedback_state)]
    state = dict(zip(th.state_names, s, strict=False))
    step, chi = th.state_kernel(V)
    np.testing.assert_allclose(step(s)[0], th.variance_map(**state, **kw), rtol=1e-13)
    np.testing.assert_allclose(chi(s), th.chi_J(**state, **kw), rtol=1e-13)
    full = [state.get(n, np.zeros(2)) for n in th.state_names]
    x = np.array([[0.5, 1.2], [0.1, 0.3]])[:len(th.cross_feedback)]
    cross = dict(zip(th.cross_names, x, strict=False))
    np.testing.assert_allclose(th.cross_kernel(full, V)(x)[0],
                               th.covariance_map(**state, **cross, **kw), rtol=1e-13)


def test_overflowing_hyperparameters_are_refused(tanh):
    """σ_b = 1e200 squares to 1e400: refused up front, not an OverflowError or a silent inf."""
    with pytest.raises(HyperparameterError, match="too large"):
        cs.Linear(sigma_b=1e200)
    for call in (lambda: tanh.variance_map(1.0, sigma_w=1.0, sigma_b=1e200),
                 lambda: tanh.run(3, sigma_w=1.0, sigma_b=1e200)):
        with pytest.raises(HyperparameterError, match="overflow"):
            call()
    th = cs.derive(cs.Act("tanh") >> cs.Linear(sigma_b=1e100))
    assert th.run(2, sigma_w=1.0).K[-1] == pytest.approx(1e200, rel=1e-12)
