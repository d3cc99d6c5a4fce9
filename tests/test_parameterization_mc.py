"""Width exponents measured on real torch networks after one SGD step, against the calculus.

Every measured exponent is the within-seed OLS slope of log RMS on log m with its standard error
(``fit_slope``); it must agree with the prediction within 4 standard errors, and a contrast
(a vanishing update, linear response against the relu-coherent term) must be rejected by more
than 4.  Fast: widths 128-1024, 8 seeds, 6 weight matrices: init, backward and weight-update
exponents, the IP depth threshold.  Slow: Delta h exponents to width 2048 and IP-LLR to 4096
(GPU variant to 8192)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from critsym.errors import SimulationError
from critsym.parameterization import fit_slope, parameterization, simulate_one_step

WIDTHS = (128, 256, 512, 1024)


pytestmark = pytest.mark.usefixtures("single_thread")


def _agrees(r, name, layer, predicted):
    """|measured - predicted| <= 4 standard errors of the measured slope."""
    s, se = r.slope(name, layer)
    assert abs(s - float(predicted)) <= 4 * se, (name, layer, s, se, predicted, r.table())


def _rejects(r, name, layer, other):
    """The measured slope is more than 4 standard errors away from ``other``."""
    s, se = r.slope(name, layer)
    assert abs(s - float(other)) > 4 * se, (name, layer, s, se, other)


@pytest.mark.parametrize("name", ["SP", "NTK", "muP", "IP"])
def test_init_backward_update_exponents(name):
    p = parameterization(name, 6)
    r = simulate_one_step(p, widths=WIDTHS, seeds=8)
    e = p.exponents()
    for l in range(p.L):  # hidden pre-activations (f is one number per net: too noisy)
        _agrees(r, "h", l, e.h[l])
        _agrees(r, "dh", l, e.dh[l])
    for l in range(p.n_layers):
        _agrees(r, "dW", l, e.dW[l])


def test_ip_depth_threshold():
    # 3 weight matrices: the hidden update is Theta(1); 4: it vanishes as m^{-1/2}.
    r3 = simulate_one_step(parameterization("IP", 3), widths=WIDTHS, seeds=12)
    r4 = simulate_one_step(parameterization("IP", 4), widths=WIDTHS, seeds=12)
    _agrees(r3, "dW", 1, 0)
    for l in (1, 2):
        _agrees(r4, "dW", l, -0.5)
        _rejects(r4, "dW", l, 0)  # clearly vanishing
    _agrees(r4, "delta_f", 0, -1)


def test_sp_nonlinear_exponents_at_unit_rate():
    # SP, 4 weight matrices, eta = 1: Dh_2 and Df follow the relu-coherent (nonlinear) calculus
    # (1 and 2), not linear response (1/2 and 1).
    p = parameterization("SP", 4)
    r = simulate_one_step(p, widths=WIDTHS, seeds=6, eta=1.0)
    nl, lin = p.exponents(nonlinear=True), p.exponents()
    _agrees(r, "delta_h", 2, nl.delta_h[2])
    _rejects(r, "delta_h", 2, lin.delta_h[2])
    _agrees(r, "delta_f", 0, nl.delta_f)
    _rejects(r, "delta_f", 0, lin.delta_f)


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
        _agrees(r, "delta_h", l, e.delta_h[l])
    _agrees(r, "delta_f", 0, e.delta_f)


def _ip_llr_updates(widths):
    p = parameterization("IP-LLR", 6)
    r = simulate_one_step(p, widths=widths, seeds=4)
    for l in range(p.n_layers):
        _agrees(r, "dW", l, 0)
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
    _agrees(r, "delta_h", 2, p.exponents(nonlinear=True).delta_h[2])
    _rejects(r, "delta_h", 2, p.exponents().delta_h[2])
