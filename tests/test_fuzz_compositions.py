"""Fuzz: random operator compositions and hyperparameters through derive, run, the maps,
fixed_point and correlation.  Every case must end in a result or a CritsymError (never another
exception), within a per-case deadline (no hang), and a NaN in a result must come with a
CritsymWarning that says why.

Cases are kept cheap: mostly closed-form activations (relu, leaky_relu, identity, erf, sin and
a few custom expressions) on small blocks, with a share of quadrature activations (tanh, silu,
elu, softplus, sigmoid, selu, gelu) whose two-input maps are skipped (2-D quadrature of nested
layers costs seconds).  ``derandomize=True`` makes the examples the same on every run.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp
from _deadline import deadline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import critsym as cs
from critsym.errors import CritsymError, CritsymWarning

X = sp.Symbol("x", real=True)
BIVARIATE_CLOSED = ["relu", "leaky_relu", "identity", "erf", "sin"]
QUADRATURE = ["tanh", "silu", "elu", "softplus", "sigmoid", "selu", "gelu"]
CUSTOM = [X**3, sp.exp(-X**2), sp.Abs(X), sp.Max(X, X / 2), X**2, sp.cos(X)]
SECOND = ["relu", "identity", "leaky_relu"]
BAD = [-1.0, float("nan"), float("inf"), 1e300, "abc", None, [1.0, 2.0]]
N_CASES = 300
CASE_DEADLINE_S = 120

number = st.one_of(st.just(0.0), st.floats(0.0, 4.0), st.sampled_from([1e-3, 1.0, 1.5]))
#: numbers fixed inside an operator come from a short list, so that the pool of distinct blocks
#: (each derived once, see ``theory``) stays small while the hyperparameter values vary freely
hyper = st.sampled_from(["sigma_w", "sigma_b", "sigma_w", "sigma_b", 0, 0.5, 1.3])


@st.composite
def activation(draw, names):
    kind = draw(st.sampled_from(["name"] * 8 + ["custom", "param"]))
    if kind == "custom":
        return cs.Act(draw(st.sampled_from(CUSTOM))), False
    if kind == "param":
        return cs.Act("leaky_relu", alpha=draw(st.sampled_from([0.0, 0.1, -0.5, 2.0]))), True
    name = draw(st.sampled_from(names))
    return cs.Act(name), name in BIVARIATE_CLOSED


@st.composite
def layer(draw, names):
    act, closed = draw(activation(names))
    w, b = draw(hyper), draw(hyper)
    lin = cs.Linear(w, b) if draw(st.integers(0, 9)) else cs.Conv(3, w, b)
    ln = draw(st.sampled_from([None, "pre", "post"]))
    if ln == "pre":
        return cs.LayerNorm() >> act >> lin, closed
    if ln == "post":
        return act >> cs.LayerNorm() >> lin, closed
    return act >> lin, closed


@st.composite
def architecture(draw):
    names = draw(st.sampled_from([BIVARIATE_CLOSED] * 5 + [QUADRATURE]))
    body, closed = draw(layer(names))
    if draw(st.integers(0, 5)) == 0:
        second, closed2 = draw(layer(SECOND))
        body, closed = body >> second, closed and closed2
    if draw(st.booleans()):
        body = cs.Residual(body, draw(st.sampled_from(["mu", "mu", 0, 0.5, 1])))
    return body, closed


@st.composite
def values(draw):
    hp = dict(sigma_w=draw(number), sigma_b=draw(number), mu=draw(st.floats(0.0, 1.3)))
    if draw(st.integers(0, 9)) == 0:
        hp[draw(st.sampled_from(sorted(hp)))] = draw(st.sampled_from(BAD))
    K0 = draw(st.one_of(st.just(1.0), st.floats(1e-3, 50.0), st.sampled_from(BAD + [0.0])))
    c0 = draw(st.one_of(st.none(), st.floats(-1.0, 1.0), st.sampled_from([1.0, -1.0, 1.5])))
    return hp, K0, c0, draw(st.integers(1, 5)), draw(st.sampled_from([1e-8, 0.5, 3.0, 1e6]))



def _nan(*arrays) -> bool:
    return any(a is not None and np.any(np.isnan(np.asarray(a, dtype=float))) for a in arrays)


_THEORIES: dict = {}


def theory(arch):
    """derive(arch), once per distinct block (the fuzz varies hyperparameters far more often)."""
    if arch not in _THEORIES:
        _THEORIES[arch] = cs.derive(arch)
    return _THEORIES[arch]


def check_case(arch, closed: bool, hp, K0, c0, depth: int, Kq: float) -> list[str]:
    """Run the public entry points; return the problems (non-Critsym exceptions are raised)."""
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        th = theory(arch)
        hp = {k: v for k, v in hp.items() if k in th.hyperparameter_names}
        calls = [
            ("run", lambda: (lambda r: (r.K, r.J, r.c))(
                th.run(depth, K0=K0, c0=c0 if closed else None, **hp))),
            ("maps", lambda: (th.variance_map(Kq, **hp), th.chi_J(Kq, **hp))),
            ("fixed_point", lambda: (lambda f: (f.K_star, f.chi_star, f.dF_dK, f.phase()))(
                cs.fixed_point(th, K0=K0, **hp))),
        ]
        if closed:
            calls.append(("correlation", lambda: (lambda c: (c.c_star, c.chi_c, c.chi_c1))(
                cs.correlation(th, K0=K0, **hp))))
        for name, call in calls:
            n_warn = len(caught)
            try:
                out = call()
            except CritsymError:
                continue
            numeric = [o for o in out if o is not None and np.asarray(o).dtype.kind in "fiu"]
            warned = any(issubclass(w.category, CritsymWarning) for w in caught[n_warn:])
            if _nan(*numeric) and not warned:
                problems.append(f"{name}: NaN without a warning")
    return problems


@settings(max_examples=N_CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(architecture(), values())
def test_random_compositions(case, vals):
    arch, closed = case
    hp, K0, c0, depth, Kq = vals
    with deadline(CASE_DEADLINE_S):
        try:
            problems = check_case(arch, closed, hp, K0, c0, depth, Kq)
        except CritsymError:
            return
    assert not problems, (repr(arch), hp, K0, c0, depth, Kq, problems)


def test_case_checker_catches_silent_nan(monkeypatch):
    """The checker itself: a NaN returned without a warning is reported."""
    th = cs.derive(cs.mlp_block("relu"))
    monkeypatch.setattr(type(th), "chi_J", lambda self, K, **hp: np.nan)
    assert check_case(cs.mlp_block("relu"), True, dict(sigma_w=1.0, sigma_b=0.1), 1.0, None,
                      1, 0.5) == ["maps: NaN without a warning"]


@pytest.mark.parametrize("arch", [
    cs.Act(sp.Max(X, X / 2)) >> cs.Linear(),  # lambdify's Max needs functools
    cs.Act("tanh") >> cs.Linear() >> cs.Act("tanh") >> cs.Linear(),  # nested Price derivative
])
def test_cases_the_fuzz_found(arch):
    assert check_case(arch, True, dict(sigma_w=1.2, sigma_b=0.1), 1.0, 0.3, 3, 0.5) == []


def test_degenerate_cases_the_fuzz_found():
    """σ_w = σ_b = 0 with LayerNorm (0/0 maps) and a string K0: errors or warned NaN only."""
    arch = cs.Act("relu") >> cs.LayerNorm() >> cs.Linear(1.3, "sigma_b") >> cs.Act("relu") \
        >> cs.LayerNorm() >> cs.Linear()
    zero = dict(sigma_w=0.0, sigma_b=0.0)
    assert check_case(arch, True, zero, 1.0, -0.95, 2, 1e-8) == []
    assert check_case(cs.mlp_block("relu"), True, zero, 1.0, 0.5, 3, 0.5) == []
    with pytest.raises(CritsymError, match="K0"):
        cs.fixed_point(theory(cs.mlp_block("relu")), K0="abc", sigma_w=1.0, sigma_b=0.1)
    with pytest.raises(CritsymError, match="K0"):
        theory(cs.mlp_block("relu")).run(2, K0="abc", sigma_w=1.0, sigma_b=0.1)
    with pytest.warns(CritsymWarning, match="K\\^l = 0"):
        theory(cs.mlp_block("relu")).run(2, K0=1.0, c0=0.5, **zero)
