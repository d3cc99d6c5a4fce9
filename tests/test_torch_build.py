"""The torch forward maps: activations against their sympy definitions, initialization
statistics against the theory's assumptions, LayerNorm and residual against hand formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

import critsym as cs
from critsym.activations import REGISTRY, activation_expr, torch_activation, torch_lambdify, x
from critsym.errors import SimulationError


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_torch_activation_matches_sympy(name):
    t = torch.linspace(-3, 3, 61, dtype=torch.float64)
    got = torch_activation(name)(t).numpy()
    ref = np.array([float(sp.N(activation_expr(name).subs(x, float(v)), 30)) for v in t[::6]])
    np.testing.assert_allclose(got[::6], ref, rtol=1e-10, atol=1e-12)


def test_leaky_relu_parameter_and_custom_expression():
    t = torch.tensor([-2.0, -0.5, 0.0, 1.5], dtype=torch.float64)
    got = torch_activation("leaky_relu", alpha=0.2)(t)
    assert torch.allclose(got, torch.where(t > 0, t, 0.2 * t))
    phi = torch_lambdify(x**3 / 3 + sp.sin(x))
    assert torch.allclose(phi(t), t**3 / 3 + torch.sin(t))
    with pytest.raises(cs.errors.DerivationError, match="free symbols"):
        torch_lambdify(x * sp.Symbol("a"))


def test_custom_act_op_builds():
    net = cs.build(cs.Act(x**2 / 2 + x) >> cs.Linear(1.0, 0.0), 8, 2, n_nets=2)
    h = torch.ones(2, 1, 8, dtype=torch.float64)
    w0 = net.blocks[0][1].weight
    assert torch.allclose(net.blocks[0](h), (1.5 * torch.ones(2, 1, 8)).double() @ w0.mT)


def test_linear_init_statistics():
    """W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²): sample variances within 5 standard errors."""
    N, n = 200, 4
    net = cs.build(cs.mlp_block("tanh"), N, 3, n_nets=n, sigma_w=1.7, sigma_b=0.4, seed=5)
    W = torch.stack([b[1].weight for b in net.blocks]).numpy()
    B = torch.stack([b[1].bias for b in net.blocks]).numpy()
    var_w = 1.7**2 / N
    # sample variance of m Gaussians has relative SE sqrt(2/m)
    assert abs(W.var() / var_w - 1) < 5 * math.sqrt(2 / W.size)
    assert abs(B.var() / 0.4**2 - 1) < 5 * math.sqrt(2 / B.size)
    assert abs(W.mean()) < 5 * math.sqrt(var_w / W.size)


def test_networks_independent_of_chunking():
    a = cs.build(cs.mlp_block("relu"), 16, 2, n_nets=5, seed=3, sigma_w=1.0, sigma_b=0.1)
    b = cs.build(cs.mlp_block("relu"), 16, 2, n_nets=2, seed=3, first_net=3, sigma_w=1.0,
                 sigma_b=0.1)
    assert torch.equal(a.blocks[1][1].weight[3:], b.blocks[1][1].weight)
    assert not torch.equal(a.blocks[1][1].weight[0], a.blocks[1][1].weight[1])


def test_layernorm_and_residual_forward():
    N = 10
    arch = cs.mlp_block("erf", layernorm="pre", residual_mu=0.7)
    net = cs.build(arch, N, 1, n_nets=1, sigma_w=1.1, sigma_b=0.3)
    h = torch.randn(1, 3, N, dtype=torch.float64)
    lin = net.blocks[0].branch[2]
    hn = (h - h.mean(-1, keepdim=True)) / h.std(-1, unbiased=False, keepdim=True)
    ref = 0.7 * h + torch.erf(hn) @ lin.weight[0].T + lin.bias[0]
    assert torch.allclose(net(h), ref, atol=1e-10)


def test_layernorm_eps_default_is_tiny():
    net = cs.build(cs.mlp_block("relu", layernorm="post"), 4, 1, sigma_w=1.0, sigma_b=0.0)
    assert net.blocks[0][1].eps <= 1e-10


@pytest.mark.parametrize("kw,match", [
    (dict(width=0), "width"),
    (dict(depth=0), "depth"),
    (dict(n_nets=0), "n_nets"),
    (dict(dtype=torch.int32), "dtype"),
    (dict(device="nonsense"), "device"),
])
def test_build_bad_input(kw, match):
    args = dict(width=8, depth=2, sigma_w=1.0, sigma_b=0.0)
    args.update(kw)
    arch = cs.mlp_block("tanh")
    with pytest.raises(SimulationError, match=match):
        cs.build(arch, **args)


def test_build_missing_or_unknown_hyperparameters():
    with pytest.raises(SimulationError, match="sigma_b"):
        cs.build(cs.mlp_block("tanh"), 8, 2, sigma_w=1.0)
    with pytest.raises(SimulationError, match="unknown"):
        cs.build(cs.mlp_block("tanh"), 8, 2, sigma_w=1.0, sigma_b=0.0, mu=1.0)


def test_forward_rejects_wrong_shape_and_dtype():
    net = cs.build(cs.mlp_block("tanh"), 8, 2, n_nets=2, sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="shape"):
        net(torch.zeros(3, 1, 8, dtype=torch.float64))
    with pytest.raises(SimulationError, match="dtype"):
        net(torch.zeros(2, 1, 8, dtype=torch.float32))


def test_operator_without_torch_map_says_what_to_do():
    class Weird(cs.Op):
        def apply(self, s):
            return s

    with pytest.raises(SimulationError, match="to_torch"):
        cs.build(Weird() >> cs.Linear(1.0, 0.0), 4, 1)


def test_forward_mode_rule_matches_autograd():
    """The stacked linear layer's custom JVP/VJP rules against torch's generic ones."""
    net = cs.build(cs.mlp_block("gelu", layernorm="pre", residual_mu=0.5), 12, 3, n_nets=2,
                   sigma_w=1.2, sigma_b=0.1)
    h = torch.randn(2, 1, 12, dtype=torch.float64)
    v = torch.randn(2, 1, 12, dtype=torch.float64)
    _, t = torch.func.jvp(net, (h,), (v,))
    J = torch.autograd.functional.jacobian(net, h)  # (2,1,12,2,1,12)
    ref = torch.einsum("aibcjd,cjd->aib", J, v)
    assert torch.allclose(t, ref, atol=1e-12)
    _, pb = torch.func.vjp(net, h)
    (g,) = pb(v)
    assert torch.allclose(g, torch.einsum("aibcjd,aib->cjd", J, v), atol=1e-12)
