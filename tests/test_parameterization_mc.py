"""Width exponents measured on real torch networks after one SGD step, against the calculus.

Fast: widths 128-1024, 8 seeds, 6 weight matrices; init, backward and weight-update exponents within
+-0.1 (finite_width.md section 2), the IP depth threshold.  Slow: Delta h exponents to width 2048
(+-0.15) and IP-LLR to 4096 (GPU variant to 8192)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from critsym.errors import SimulationError
from critsym.parameterization import fit_slope, parameterization, simulate_one_step

WIDTHS = (128, 256, 512, 1024)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", ["SP", "NTK", "muP", "IP"])
def test_init_backward_update_exponents(name):
    p = parameterization(name, 6)
    r = simulate_one_step(p, widths=WIDTHS, seeds=8)
    e = p.exponents()
    for l in range(p.L):  # hidden pre-activations (f is one number per net: too noisy)
        assert abs(r.slope("h", l)[0] - float(e.h[l])) <= 0.1, (name, "h", l, r.table())
        assert abs(r.slope("dh", l)[0] - float(e.dh[l])) <= 0.1, (name, "dh", l, r.table())
    for l in range(p.n_layers):
        assert abs(r.slope("dW", l)[0] - float(e.dW[l])) <= 0.1, (name, "dW", l, r.table())


def test_ip_depth_threshold():
    # 3 weight matrices: the hidden update is Theta(1); 4: it vanishes as m^{-1/2}.
    r3 = simulate_one_step(parameterization("IP", 3), widths=WIDTHS, seeds=12)
    r4 = simulate_one_step(parameterization("IP", 4), widths=WIDTHS, seeds=12)
    s3, se3 = r3.slope("dW", 1)
    assert abs(s3) <= 0.1
    for l in (1, 2):
        s4, se4 = r4.slope("dW", l)
        assert abs(s4 + 0.5) <= 0.1
        assert s4 < -0.3  # clearly vanishing
    assert abs(r4.slope("delta_f", 0)[0] + 1.0) <= 0.15


def test_sp_nonlinear_exponents_at_unit_rate():
    # SP, 4 weight matrices, eta = 1: Dh_2 and Df follow the relu-coherent (nonlinear) calculus
    # (1 and 2), not linear response (1/2 and 1).
    p = parameterization("SP", 4)
    r = simulate_one_step(p, widths=WIDTHS, seeds=6, eta=1.0)
    nl, lin = p.exponents(nonlinear=True), p.exponents()
    s2, _ = r.slope("delta_h", 2)
    sf, _ = r.slope("delta_f", 0)
    assert abs(s2 - float(nl.delta_h[2])) <= 0.15 < abs(s2 - float(lin.delta_h[2]))
    assert abs(sf - float(nl.delta_f)) <= 0.15 < abs(sf - float(lin.delta_f))


def test_fit_slope_recovers_known_exponent():
    rng = np.random.default_rng(0)
    x = np.repeat(np.log([128, 256, 512, 1024.0]), 50)
    y = -0.75 * x + rng.normal(0, 0.2, x.size)
    s, se = fit_slope(x, y)
    assert abs(s + 0.75) <= 4 * se
    assert 0.01 < se < 0.05
    with pytest.raises(SimulationError):
        fit_slope(np.ones(5), np.arange(5.0))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["NTK", "muP", "IP", "SP-lr/m"])
def test_delta_h_exponents_slow(name):
    p = parameterization(name, 6)
    r = simulate_one_step(p, widths=(128, 256, 512, 1024, 2048), seeds=10)
    e = p.exponents()
    for l in range(p.L):
        assert abs(r.slope("delta_h", l)[0] - float(e.delta_h[l])) <= 0.15, r.table()
    assert abs(r.slope("delta_f", 0)[0] - float(e.delta_f)) <= 0.15, r.table()


def _ip_llr_updates(widths):
    p = parameterization("IP-LLR", 6)
    r = simulate_one_step(p, widths=widths, seeds=4)
    for l in range(p.n_layers):
        assert abs(r.slope("dW", l)[0]) <= 0.1, r.table()
    return r


@pytest.mark.slow
def test_ip_llr_updates_theta1_slow():
    _ip_llr_updates((512, 1024, 2048, 4096))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ip_llr_updates_theta1_gpu():
    _ip_llr_updates((1024, 2048, 4096, 8192))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ip_llr_last_hidden_layer_learns_gpu():
    # 4 weight matrices, eta = 1: linear response says Dh_2 ~ m^{-1/2}; the relu-coherent term
    # makes it Theta(1) (measured flat from width ~4096 on)
    p = parameterization("IP-LLR", 4)
    r = simulate_one_step(p, widths=(2048, 4096, 8192, 16384), seeds=4, eta=1.0)
    s2, _ = r.slope("delta_h", 2)
    assert abs(s2 - float(p.exponents(nonlinear=True).delta_h[2])) <= 0.15
    assert s2 > float(p.exponents().delta_h[2]) + 0.3
