"""Architectures from critsym operators: recognition, not-applicable cases, the BalancedResidual
operator's infinite-width theory (against hand derivation, quadrature and explicit matrices),
and the
log-norm gain read from the core's variance recursion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats

import critsym as cs
from critsym.errors import CritsymError, HyperparameterError
from critsym.finite_width import (
    BalancedResidual,
    ModelSpec,
    NotApplicableError,
    log_norm,
    recognize,
    simulate_log_norm,
)

RELU_MLP = cs.Act("relu") >> cs.Linear(sigma_b=0)
RESNET = cs.Residual(cs.Act("relu") >> cs.Linear(sigma_b=0), mu=1)


def test_recognition():
    spec = recognize(RELU_MLP, sigma_w=math.sqrt(2))
    assert spec.kind == "mlp" and spec.c == pytest.approx(2.0) and spec.alpha == 0
    spec = recognize(cs.Act("leaky_relu", alpha=0.3) >> cs.Linear(1.2, 0))
    assert spec.kind == "mlp" and spec.alpha == pytest.approx(0.3) and spec.c == pytest.approx(1.44)
    assert recognize(RESNET, sigma_w=1.0) == ModelSpec("resnet", 1.0)
    spec = recognize(BalancedResidual(math.sqrt(2)))
    assert spec.kind == "balanced" and spec.c == pytest.approx(2.0)
    assert recognize(cs.Sequential(BalancedResidual(1.0))).kind == "balanced"


@pytest.mark.parametrize("arch,reason", [
    (cs.Act("tanh") >> cs.Linear(1.0, 0), "activation"),
    (cs.Act("gelu") >> cs.Linear(1.0, 0), "activation"),
    (cs.Act("relu") >> cs.Linear(1.4, 0.1), "bias"),
    (cs.LayerNorm() >> cs.Act("relu") >> cs.Linear(1.0, 0), "layernorm"),
    (cs.Residual(cs.Act("relu") >> cs.Linear(sp.sqrt(2 / sp.Symbol("depth")), 0), mu=1),
     "depth_scaled"),
    (cs.Residual(cs.Act("relu") >> cs.Linear(1.0, 0), mu=0.5), "skip"),
    (cs.Linear(1.0, 0) >> cs.Act("relu"), "unsupported"),
    (cs.Residual(cs.Act("tanh") >> cs.Linear(1.0, 0), mu=1), "activation"),
])
def test_not_applicable(arch, reason):
    with pytest.raises(NotApplicableError) as err:
        log_norm(arch, 16, 64)
    assert err.value.reason == reason
    assert isinstance(err.value, CritsymError)


def test_missing_hyperparameter_is_a_clear_error():
    with pytest.raises(HyperparameterError, match="sigma_b"):
        log_norm(cs.Act("relu") >> cs.Linear(), 16, 64, sigma_w=1.0)


@pytest.mark.parametrize("arch,hp,q", [
    (RELU_MLP, {"sigma_w": 1.3}, 1.3**2 / 2),
    (cs.Act("leaky_relu", alpha=0.5) >> cs.Linear(sigma_b=0), {"sigma_w": 1.0}, 1.25 / 2),
    (RESNET, {"sigma_w": 1.0}, 1.5),
    (BalancedResidual(), {"sigma_w": 2.0}, 3.0),
])
def test_gain_from_variance_recursion(arch, hp, q):
    law = log_norm(arch, 32, 64, **hp)
    assert law.gain_source == "variance recursion"
    assert law.log_gain == pytest.approx(32 * math.log(q), rel=1e-12, abs=1e-12)


def test_balanced_theory_by_hand():
    sw, K = cs.sigma_w, cs.K
    t = cs.derive(BalancedResidual())
    assert sp.simplify(t.F - (1 + sw**2 / 2) * K) == 0  # phi(h)^2 + phi(-h)^2 = h^2
    assert sp.simplify(t.chi - (1 + sw**2 / 2)) == 0    # E phi'(h)^2 + E phi'(-h)^2 = 1
    # covariance map against 2-D quadrature of E[(a + W+phi(a) + W-phi(-a))(b + ...)]
    k11, k22, k12, s = 1.3, 0.7, 0.4, 1.1
    cov = np.array([[k11, k12], [k12, k22]])
    dens = stats.multivariate_normal(np.zeros(2), cov)
    relu = lambda v: max(v, 0.0)  # noqa: E731
    val = integrate.dblquad(lambda b, a: (relu(a) * relu(b) + relu(-a) * relu(-b))
                            * dens.pdf([a, b]), -9, 9, -9, 9, epsabs=1e-11)[0]
    expected = k12 + s**2 / 2 * val
    got = float(t.G.subs({sp.Symbol("K_11", positive=True): k11,
                          sp.Symbol("K_22", positive=True): k22,
                          sp.Symbol("K_12", real=True): k12, sw: s}))
    assert got == pytest.approx(expected, rel=1e-7)


def test_balanced_chi_with_explicit_matrices():
    # (1/n) E||J||_F^2 for J = I + W+ diag(phi'(h)) - W- diag(phi'(-h)), W+- ~ N(0, c/(2n))
    g = torch.Generator().manual_seed(0)
    n, c, reps = 160, 2.0, 40
    vals = []
    for _ in range(reps):
        h = torch.randn(n, generator=g, dtype=torch.float64)
        wp = torch.randn(n, n, generator=g, dtype=torch.float64) * math.sqrt(c / (2 * n))
        wm = torch.randn(n, n, generator=g, dtype=torch.float64) * math.sqrt(c / (2 * n))
        J = torch.eye(n, dtype=torch.float64) + wp * (h > 0) - wm * (h < 0)
        vals.append(float((J * J).sum()) / n)
    vals = np.array(vals)
    chi = float(cs.derive(BalancedResidual(math.sqrt(c))).chi)
    assert abs(vals.mean() - chi) <= 4 * vals.std(ddof=1) / math.sqrt(reps) + 1e-12


def test_simulate_from_architecture():
    s = simulate_log_norm(BalancedResidual(math.sqrt(2.0)), 8, 32, n_nets=200, seed=0,
                          method="conditional")
    assert s.spec.kind == "balanced" and s.spec.c == pytest.approx(2.0)
    with pytest.raises(NotApplicableError):
        simulate_log_norm(cs.Act("tanh") >> cs.Linear(1.0, 0), 8, 32)


def test_balanced_serialises():
    b = BalancedResidual(1.5)
    assert cs.from_json(b.to_json()) == b
