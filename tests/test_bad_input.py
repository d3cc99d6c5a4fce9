"""Inputs a new user might try that must get a CritsymError saying what to do (or a correct
answer), never a generic exception, a silent NaN, a hang or an OverflowError."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

import critsym as cs
from critsym.errors import DerivationError, HyperparameterError, SimulationError
from critsym.finite_width import ModelSpec, log_norm
from critsym.gaussian.numeric import compile_expr
from critsym.ops.pool import pool_theory
from critsym.symbols import K

HP = dict(sigma_w=1.2, sigma_b=0.2)


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


@pytest.mark.parametrize("c0", [float("nan"), float("inf"), [0.5, float("nan")]])
def test_run_refuses_non_finite_c0(tanh, c0):
    with pytest.raises(HyperparameterError, match="c0"):
        tanh.run(3, c0=c0, **HP)


@pytest.mark.parametrize("K_,c", [(-1.0, 0.5), (1.0, 2.0), (float("nan"), 0.1), (1.0, -1.5)])
def test_pool_theory_refuses_impossible_statistics(K_, c):
    with pytest.raises(HyperparameterError, match="variance|correlation"):
        pool_theory(K_, c, 4)
    K_pool, factor = pool_theory(2.0, 0.25, 4)
    assert K_pool == pytest.approx(2.0 * (1 + 3 * 0.25) / 4) and factor == 0.25


@pytest.mark.parametrize("offsets", [[], [0.01], [0.01, 0.02, 0.03], [[0.1, 0.2]], "abc"])
def test_fit_nu_needs_enough_offsets(tanh, offsets):
    with pytest.raises(HyperparameterError, match="offsets"):
        cs.fit_nu(tanh, "sigma_w", 1.0, offsets, depth=50, sigma_b=0.0)


def test_simulate_refuses_depths_it_cannot_finish():
    with pytest.raises(SimulationError, match="Theory|derive"):
        cs.simulate(cs.mlp_block("tanh"), 8, 10**6, n_nets=1, **HP)


def test_cuda_without_a_gpu_is_a_simulation_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SimulationError, match="no CUDA device"):
        cs.simulate(cs.mlp_block("tanh"), 8, 2, n_nets=2, device="cuda", **HP)
    with pytest.raises(SimulationError, match="no CUDA device"):
        cs.build(cs.mlp_block("tanh"), 8, 2, n_nets=2, device="cuda:0", **HP)


@pytest.mark.parametrize("value", [1e200, -1e150, 10**300])
def test_huge_hyperparameters_are_refused(value):
    with pytest.raises(HyperparameterError, match="too large"):
        cs.Linear(sigma_b=value)


def test_large_but_representable_hyperparameters_work():
    th = cs.derive(cs.Act("tanh") >> cs.Linear(sigma_b=1e10))
    run = th.run(2, K0=1.0, sigma_w=1.0)
    assert run.K[1] == pytest.approx(1e20, rel=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "balanced", "resnet"])
def test_log_norm_at_depth_1e6(kind):
    """Mean and variance stay finite; the kurtosis 3e^Var exceeds float64 and is +inf."""
    law = log_norm(ModelSpec(kind, c=2.0), depth=10**6, width=128, order="1/n")
    assert math.isfinite(law.mean) and math.isfinite(law.var) and law.var > 0
    assert law.kurtosis == math.inf
    assert law.var == pytest.approx(law.V * law.tau, rel=0.05)
    assert "inf" in law.summary()


def test_unprintable_forms_are_derivation_errors():
    f = sp.Function("f")
    with pytest.raises(DerivationError, match="cannot compile"):
        compile_expr(sp.Derivative(f(K), K), (K,))
    with pytest.raises(DerivationError, match="cannot compile"):
        compile_expr(f(K) + 1, (K,))
    ok = compile_expr(K**2 + 1, (K,))
    np.testing.assert_allclose(ok(np.array([1.0, 2.0])), [2.0, 5.0])
