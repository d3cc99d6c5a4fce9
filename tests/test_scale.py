"""Scale(g): a fixed multiplier h ↦ g·h, and the abc-parameterization network built from it."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import critsym as cs
from critsym.errors import SimulationError
from critsym.parameterization import ABCNet, parameterization
from critsym.torch.build import build_stack
from critsym.torch.modules import BuildContext


def _gauss(f, var):
    return integrate.quad(lambda z: f(z) * math.exp(-z * z / (2 * var))
                          / math.sqrt(2 * math.pi * var), -np.inf, np.inf, epsabs=1e-13)[0]


@pytest.mark.parametrize("g", [0.5, 1.7])
def test_scale_after_linear_against_quadrature(g):
    """tanh → W → ·g: K' = g²(σ_w² E tanh² + σ_b²), χ = g² σ_w² E[tanh'²] (scipy quad)."""
    th = cs.derive(cs.Act("tanh") >> cs.Linear() >> cs.Scale(g))
    sw, sb, K = 1.3, 0.4, 0.8
    F = g**2 * (sw**2 * _gauss(lambda z: math.tanh(z) ** 2, K) + sb**2)
    chi = g**2 * sw**2 * _gauss(lambda z: (1 - math.tanh(z) ** 2) ** 2, K)
    assert th.variance_map(K=K, sigma_w=sw, sigma_b=sb) == pytest.approx(F, rel=1e-9)
    assert th.chi_J(K=K, sigma_w=sw, sigma_b=sb) == pytest.approx(chi, rel=1e-9)


def test_abcnet_is_the_abc_map():
    """ABCNet's layers compute h_0 = m^{-a_0} W^0 ξ, h_l = m^{-a_l} W^l relu(h_{l-1}) with its
    own weights (recomputed here by hand), W^l entries of variance σ² m^{-2 b_l}, and the
    gradient reaches every weight."""
    p = parameterization("muP", 4)
    m, d_in, sigma = 64, 8, 1.3
    net = ABCNet(p, m, d_in, sigma, generator=torch.Generator().manual_seed(2))
    xi = torch.randn(d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hs = net.forward_all(xi)
    W = [w.detach()[0] for w in net.weights]
    assert [tuple(w.shape) for w in W] == [(m, d_in), (m, m), (m, m), (1, m)]
    h = m ** -float(p.a[0]) * (W[0] @ xi)
    assert torch.allclose(hs[0], h, rtol=1e-12)
    for l in range(1, p.n_layers):
        h = m ** -float(p.a[l]) * (W[l] @ torch.relu(h))
        assert torch.allclose(hs[l], h, rtol=1e-12)
    big = W[1] / (sigma * m ** -float(p.b[1]))  # unit-variance entries
    assert abs(float(big.var()) - 1) < 4 * math.sqrt(2 / big.numel())
    hs[-1].sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in net.weights)


def test_build_stack_needs_one_width_per_layer():
    ctx = BuildContext(n_nets=1, width=4, values={}, generators=[torch.Generator()])
    with pytest.raises(SimulationError, match="one width per layer"):
        build_stack([cs.Linear(1.0, 0.0)], [4, 4], ctx, (3,))
