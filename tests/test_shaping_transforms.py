"""DKS / TAT / TReLU transforms: targets achieved (checked by independent quadrature), canonical
roots, determinism, errors, torch callables, and shaping beyond dks (biases, LN, residual)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize
from scipy.stats import norm

import critsym as cs
from critsym.errors import CritsymError, HyperparameterError, ShapingError
from critsym.shaping import transform

SMOOTH = ["tanh", "softplus", "swish", "elu", "erf", "gelu"]


_XH, _WH = np.polynomial.hermite_e.hermegauss(160)
_WH = _WH / np.sqrt(2 * np.pi)


def _scipy_invariants(s):
    """Q(1), Q'(1), C(0), C'(1) of a shaped activation from its numpy form only: 160-node
    Gauss–Hermite for smooth φ, scipy quad split at the kink otherwise; φ̂' by differences."""
    lm = s.maps
    pts = [(k - lm.input_shift) / lm.input_scale for k in lm.base.kinks]
    edges = [-40.0, *pts, 40.0]
    h = 1e-6

    def E(f):
        if not pts:
            return float(np.sum(f(_XH) * _WH))
        return sum(integrate.quad(lambda t: f(t) * norm.pdf(t), a, b, epsabs=1e-15,
                                  epsrel=1e-13, limit=200)[0]
                   for a, b in zip(edges[:-1], edges[1:], strict=True))

    def ph(t):
        return s.numpy(t)

    def dph(t):  # central difference of the numpy form, away from kinks
        return (ph(t + h) - ph(t - h)) / (2 * h)

    Q = E(lambda t: ph(t) ** 2)
    return {"Q(1)": Q, "C(0)": E(ph) ** 2 / Q, "Q'(1)": E(lambda t: ph(t) * dph(t) * t),
            "C'(1)": E(lambda t: dph(t) ** 2) / Q}


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("depth", [16, 50])
def test_dks_targets(name, depth):
    s = transform(name, depth=depth, method="DKS")
    ref = _scipy_invariants(s)
    assert ref["Q(1)"] == pytest.approx(1.0, abs=1e-10)
    assert ref["C(0)"] == pytest.approx(0.0, abs=1e-10)
    assert ref["Q'(1)"] == pytest.approx(1.0, abs=1e-7)  # finite-difference φ̂' in the check
    assert ref["C'(1)"] ** depth == pytest.approx(1.5, abs=1e-6)
    assert s.local["C'(1)"] ** depth == pytest.approx(1.5, abs=1e-12)
    assert s.network["C_f'(1)"] == pytest.approx(1.5, abs=1e-12)
    assert s.input_scale > 0
    if s.base.is_odd:
        assert s.input_shift >= 0


@pytest.mark.parametrize("name", SMOOTH)
def test_tat_targets(name):
    s = transform(name, depth=16, method="TAT")
    ref = _scipy_invariants(s)
    assert ref["Q(1)"] == pytest.approx(1.0, abs=1e-10)
    assert ref["C'(1)"] == pytest.approx(1.0, abs=1e-7)
    assert ref["Q'(1)"] == pytest.approx(1.0, abs=1e-7)
    assert s.local["C''(1)"] * 16 == pytest.approx(0.3, abs=1e-12)
    assert s.network["C_f''(1)"] == pytest.approx(0.3, abs=1e-12)
    assert s.input_scale * s.output_scale < 2  # dks's rejection rule for unstable roots


def test_relu_dks_uses_the_shift_convention_and_reaches_zeta():
    s = transform("relu", depth=16)
    k = s.input_shift / s.input_scale
    Er = s.input_scale * (norm.pdf(k) + k * norm.cdf(k))
    assert s.input_shift == 1.0
    assert s.output_shift == pytest.approx(-Er, rel=1e-13)
    assert s.local["C'(1)"] ** 16 == pytest.approx(1.5, abs=1e-12)


def test_trelu_network_c0_by_independent_iteration():
    s = transform("leaky_relu", depth=16, method="TReLU", eta=0.9)
    a = s.negative_slope
    assert s.output_scale == pytest.approx(math.sqrt(2 / (1 + a * a)), rel=1e-14)
    c = 0.0
    lm = s.maps  # 2-D quadrature of the leaky-ReLU map, not the closed form used by the solve
    for _ in range(16):
        c = lm._corr(0, c, 1.0) / lm.Q(1.0)
    assert c == pytest.approx(0.9, abs=1e-10)


def test_odd_activation_has_two_mirror_solutions_and_we_pick_beta_positive():
    s = transform("tanh", depth=16)
    mirror = cs.shaping.local_maps("tanh", s.input_scale, -s.input_shift, -s.output_shift,
                                   s.output_scale).invariants()
    for k, v in mirror.items():
        assert v == pytest.approx(s.local[k], abs=1e-12)
    assert s.input_shift > 0


def test_deterministic():
    a, b = transform("swish", depth=50, method="TAT"), transform("swish", depth=50, method="TAT")
    assert (a.input_scale, a.input_shift, a.output_shift) == (b.input_scale, b.input_shift,
                                                              b.output_shift)


def test_torch_module_and_sympy_expression_agree_with_numpy():
    s = transform("gelu", depth=16, method="TAT")
    t = torch.linspace(-4, 4, 41, dtype=torch.float64)
    y = s.torch()(t).numpy()
    np.testing.assert_allclose(y, s.numpy(t.numpy()), rtol=1e-13, atol=1e-13)
    f = cs.shaping.local_maps(s.expr).invariants()  # the sympy expression as an activation
    for k, v in s.local.items():
        assert f[k] == pytest.approx(v, abs=1e-11)
    np.testing.assert_allclose(s(t).numpy(), y, rtol=0, atol=0)


def test_errors():
    with pytest.raises(ShapingError, match="TAT cannot shape relu"):
        transform("relu", method="TAT")
    with pytest.raises(ShapingError, match="eta"):
        transform("leaky_relu", depth=1, method="TReLU", eta=0.9)
    with pytest.raises(HyperparameterError, match="method"):
        transform("tanh", method="NTK")
    with pytest.raises(HyperparameterError, match="zeta"):
        transform("tanh", zeta=0.9)
    with pytest.raises(HyperparameterError, match="depth"):
        transform("tanh", depth=0)
    with pytest.raises(HyperparameterError, match="free hyperparameters"):
        transform("tanh", arch=cs.mlp_block("tanh"), depth=4)
    with pytest.raises(CritsymError):
        transform("tanh", arch=cs.Linear(1, 0) >> cs.Linear(1, 0), depth=4)
    with pytest.raises(ShapingError, match="TReLU shapes leaky_relu"):
        transform("tanh", method="TReLU")


# ---------------------------------------------------------------------------- beyond dks

def test_dks_with_biases_reaches_zeta_on_the_fold_network_map():
    arch = cs.mlp_block("tanh", sigma_w=1.0, sigma_b=0.2)
    s = transform("tanh", arch=arch, depth=4, method="DKS")
    assert s.network["C_f'(1)"] == pytest.approx(1.5, abs=1e-9)
    # independent: C_f'(1) = J^{0,L} K^0 / K^L from the core's own run() on a fresh derivation
    th = cs.derive(s.block)
    r = th.run(4, K0=1.0)
    assert r.J[-1] * 1.0 / r.K[-1] == pytest.approx(1.5, abs=1e-9)
    # and by a finite difference of the network C map at c = 1
    nm = s.network_maps()
    h = 1e-5
    assert (1 - nm.c_map(1 - h)) / h == pytest.approx(1.5, rel=1e-4)


def test_trelu_with_layernorm_residual_reaches_eta():
    arch = cs.mlp_block("relu", layernorm="pre", residual_mu=0.8, sigma_w=1.0, sigma_b=0.0)
    s = transform("leaky_relu", arch=arch, depth=6, method="TReLU", eta=0.5)
    th = cs.derive(s.block)
    assert float(th.run(6, K0=1.0, c0=0.0).c[-1]) == pytest.approx(0.5, abs=1e-9)


def test_plain_vs_ln_pre_residual_comparison():
    from critsym.shaping import compare

    arch = cs.mlp_block("tanh", layernorm="pre", residual_mu=1.0, sigma_w=1.0, sigma_b=0.0)
    s = transform("tanh", depth=6, method="DKS")
    table = compare(s, {"plain": None, "ln_pre_residual": arch}, depth=6,
                    c0=np.array([0.0, 0.5]))
    assert table["plain"]["C_f'(1)"] == pytest.approx(1.5, abs=1e-9)
    r = cs.derive(table["ln_pre_residual"]["block"]).run(6, K0=1.0, c0=0.5)
    assert table["ln_pre_residual"]["c"][1] == pytest.approx(float(r.c[-1]), abs=1e-12)
    assert table["ln_pre_residual"]["J"] == pytest.approx(float(r.J[-1]), rel=1e-12)


@pytest.mark.slow
def test_outer_solve_is_brent_consistent():
    """The local C'(1) found for a biased net solves J K0/K_L = zeta (checked with brentq)."""
    arch = cs.mlp_block("erf", sigma_w=1.0, sigma_b=0.1)
    s = transform("erf", arch=arch, depth=4, method="DKS", zeta=1.3)
    local = s.local["C'(1)"]
    assert 1 < local < 1.3

    def net(t):
        from critsym.shaping.network import ShapedAct, network_maps
        from critsym.shaping.transforms import solve_dks_local

        lm = solve_dks_local("erf", t)
        act = ShapedAct("erf", lm.input_scale, lm.input_shift, lm.output_shift,
                        lm.output_scale)
        return network_maps(arch, 4, 1.0, act).invariants()["C_f'(1)"] - 1.3

    root = optimize.brentq(net, local - 1e-3, local + 1e-3, xtol=1e-14)
    assert root == pytest.approx(local, abs=1e-10)


def test_tat_with_layernorm_residual_reaches_tau():
    """C_f''(1) of the LN-pre + residual network (fold + Richardson) hits tau; checked against
    the exact chain rule through the blocks, whose C''(1) is σ_w² E_z[φ̂''²]/K^{l+1} for LN-pre
    (the LayerNorm feeds unit variance): an independent closed composition."""
    arch = cs.mlp_block("erf", layernorm="pre", residual_mu=0.8, sigma_w=1.0, sigma_b=0.0)
    s = transform("erf", arch=arch, depth=4, method="TAT", tau=0.2)
    assert s.network["C_f''(1)"] == pytest.approx(0.2, abs=1e-9)
    nm = s.network_maps()
    inv = s.maps.invariants()  # at q = 1, Q(1) = 1: E_z[φ̂''²] = C''(1), E_z[φ̂'²] = C'(1)
    f1, f2 = 1.0, 0.0
    for K, Kn in zip(nm.K[:-1], nm.K[1:], strict=True):
        g1 = (0.64 * K + inv["C'(1)"]) / Kn
        g2 = inv["C''(1)"] / Kn
        f1, f2 = g1 * f1, g2 * f1 * f1 + g1 * f2
    assert f2 == pytest.approx(0.2, abs=1e-7)


def test_two_activation_block_equals_the_plain_chain_of_twice_the_depth():
    """Act>>Linear>>Act>>Linear repeated 8 times is the plain chain of 16 layers: the fold-based
    solve must find the plain closed-composition solution (different code paths)."""
    arch = cs.Act("tanh") >> cs.Linear(1.0, 0.0) >> cs.Act("tanh") >> cs.Linear(1.0, 0.0)
    a = transform("tanh", arch=arch, depth=8, method="DKS")
    b = transform("tanh", depth=16, method="DKS")
    for k in ("input_scale", "input_shift", "output_shift", "output_scale"):
        assert getattr(a, k) == pytest.approx(getattr(b, k), abs=1e-9)
    assert a.network["C_f''(1)"] == pytest.approx(b.network["C_f''(1)"], abs=1e-6)


@pytest.mark.parametrize("name,method", [("relu", "DKS"), ("elu", "TAT"), ("softplus", "DKS"),
                                         ("swish", "TAT"), ("leaky_relu", "TReLU")])
def test_torch_module_matches_numpy_for_each_activation(name, method):
    s = transform(name, depth=16, method=method)
    t = torch.linspace(-6, 6, 97, dtype=torch.float64)
    np.testing.assert_allclose(s.torch()(t).numpy(), s.numpy(t.numpy()), rtol=1e-13,
                               atol=1e-13)


def test_plain_chain_at_another_input_variance_goes_through_the_fold():
    s = transform("erf", depth=4, method="DKS", K0=2.0)
    assert s.arch is not None
    r = cs.derive(s.block).run(4, K0=2.0)
    assert r.J[-1] * 2.0 / r.K[-1] == pytest.approx(1.5, abs=1e-9)
