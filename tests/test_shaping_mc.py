"""Monte Carlo validation: shaped torch networks follow the network C map and the APJN of the
theory (tolerance: 4 standard errors over independent networks)."""

from __future__ import annotations

import pytest

import critsym as cs
from critsym.errors import SimulationError
from critsym.shaping import transform
from critsym.shaping.simulate import simulate

pytestmark = pytest.mark.usefixtures("single_thread")


def _check(s, depth, width, weights, networks=12, c0=0.5, seed=0):
    nm = s.network_maps(depth)
    r = simulate(s.block, depth, width=width, c0=c0, networks=networks, weights=weights,
                 seed=seed)
    c_th, J_th = float(nm.c_map(c0)), float(nm.apjn[-1])
    assert abs(r.c_mean - c_th) < 4 * r.c_se, (r.c_mean, r.c_se, c_th)
    assert abs(r.J_mean - J_th) < 4 * r.J_se, (r.J_mean, r.J_se, J_th)
    # the test can fail: the measurement resolves the maps (SE well below the signal)
    assert r.c_se < 0.05 and r.J_se < 0.2 * J_th


def test_dks_tanh_depth16_orthogonal():
    _check(transform("tanh", depth=16, method="DKS"), 16, 256, "orthogonal")


def test_trelu_depth16_gaussian():
    _check(transform("leaky_relu", depth=16, method="TReLU"), 16, 256, "gaussian")


def test_measurement_distinguishes_shaped_from_unshaped():
    """Guard against a vacuous check: an unshaped ReLU chain (σ_w² = 2, c -> 1) is far from the
    shaped ReLU network's C map, and the simulation sees it."""
    s = transform("relu", depth=16, method="DKS")
    r = simulate(cs.Act("relu") >> cs.Linear(2**0.5, 0), 16, width=256, c0=0.5, networks=6)
    assert abs(r.c_mean - float(s.network_maps().c_map(0.5))) > 10 * r.c_se


def test_simulation_errors():
    with pytest.raises(SimulationError, match="weights"):
        simulate(cs.Act("tanh") >> cs.Linear(1, 0), 2, weights="uniform")
    with pytest.raises(SimulationError, match="symbolic"):
        simulate(cs.mlp_block("tanh"), 2)


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("name,method", [("tanh", "DKS"), ("gelu", "TAT"),
                                         ("leaky_relu", "TReLU"), ("relu", "DKS")])
@pytest.mark.parametrize("depth", [16, 50])
def test_plain_chain_mc(name, method, depth, weights):
    _check(transform(name, depth=depth, method=method), depth, 512, weights, networks=16)


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("depth", [16, 50])
def test_ln_pre_residual_mc(depth, weights):
    arch = cs.mlp_block("tanh", layernorm="pre", residual_mu=1.0, sigma_w=1.0, sigma_b=0.0)
    _check(transform("tanh", arch=arch, depth=depth, method="DKS"), depth, 512, weights,
           networks=16)


@pytest.mark.slow
def test_biased_tat_mc():
    arch = cs.mlp_block("gelu", sigma_w=1.0, sigma_b=0.2)
    _check(transform("gelu", arch=arch, depth=16, method="TAT"), 16, 512, "orthogonal",
           networks=16)
