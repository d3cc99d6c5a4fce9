"""critsym.apjn on arbitrary torch modules: a hand-written model with the same weights as a
critsym-built network gives the same APJN by both routes; estimators agree with the exact
full Jacobian; bad input is rejected with SimulationError."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
from critsym.errors import SimulationError

N, L = 16, 5
MU = 0.8
HP = dict(sigma_w=1.3, sigma_b=0.2)
ARCH = cs.mlp_block("tanh", layernorm="pre", residual_mu=MU)


class Block(nn.Module):
    """h ↦ μ h + W tanh(LN(h)) + b, written with plain torch layers."""

    def __init__(self, W, b):
        super().__init__()
        self.ln = nn.LayerNorm(N, elementwise_affine=False, eps=1e-12)
        self.lin = nn.Linear(N, N).double()
        with torch.no_grad():
            self.lin.weight.copy_(W)
            self.lin.bias.copy_(b)

    def forward(self, h):
        return MU * h + self.lin(torch.tanh(self.ln(h)))


class HandMLP(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.inp = nn.Identity()
        self.blocks = nn.ModuleList(
            Block(b.branch[2].weight[0], b.branch[2].bias[0]) for b in net.blocks)
        self.head = nn.Linear(N, 3).double()

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


@pytest.fixture(scope="module")
def setup():
    net = cs.build(ARCH, N, L, n_nets=1, seed=11, **HP)
    model = HandMLP(net)
    x = cs.torch.make_inputs(N, 1.0, None, seed=4)  # (1, N)
    names = ["inp"] + [f"blocks.{i}" for i in range(L)]
    return net, model, x, names


def test_hand_written_model_matches_critsym_simulation(setup):
    net, model, x, names = setup
    ex = cs.apjn(model, x, names, mode="exact")
    sim = cs.simulate(ARCH, N, L, n_nets=1, inputs=x[0], exact=True, l=L, seed=11, **HP)
    np.testing.assert_allclose(ex.J, sim.J_nets[:, 0], rtol=1e-10)
    assert ex.J[0] == pytest.approx(1.0)
    # J^{l0, L} for every l0, by the simulation's reverse mode and apjn's exact mode
    for k in range(L + 1):
        e = cs.apjn(model, x, [names[k], names[-1]], mode="exact").J[1]
        assert e == pytest.approx(sim.J_to_nets[k, 0], rel=1e-10)


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_estimators_agree_with_exact(setup, mode):
    _, model, x, names = setup
    ex = cs.apjn(model, x, names, mode="exact").J
    P = 1500
    est = cs.apjn(model, x, names, mode=mode, n_probes=P, seed=2)
    ref = ex  # jvp: J^{inp,l}; vjp: J^{l,L}, exact by pairs (≠ ex[-1]/ex at finite width)
    if mode == "vjp":
        ref = np.array([cs.apjn(model, x, [n, names[-1]], mode="exact").J[1] for n in names])
    assert np.all(np.abs(est.J - ref) <= 4 * est.J_se + 1e-12), (est.J, ref, est.J_se)
    assert np.all(est.J_se < 4 * math.sqrt(2 / P) * ref + 1e-12)


def test_batch_axis_averages_examples(setup):
    _, model, _, names = setup
    xs = torch.randn(3, N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batch = cs.apjn(model, xs, names[:3], mode="exact").J
    single = np.mean([cs.apjn(model, xs[i:i + 1], names[:3], mode="exact").J for i in range(3)],
                     axis=0)
    np.testing.assert_allclose(batch, single, rtol=1e-10)
    unb = cs.apjn(model, xs[0], names[:3], mode="exact", batch_axis=None).J
    np.testing.assert_allclose(unb, cs.apjn(model, xs[:1], names[:3], mode="exact").J)
    v = cs.apjn(model, xs[0], names[:3], mode="jvp", batch_axis=None, n_probes=800)
    assert np.all(np.abs(v.J - unb) <= 4 * v.J_se + 1e-12)


def test_apjn_on_critsym_net_and_module_objects(setup):
    net, _, x, _ = setup
    r = cs.apjn(net, x.unsqueeze(0), [net.blocks[1], net.blocks[4]], mode="exact")
    assert r.layers == ("blocks.1", "blocks.4")
    sim = cs.simulate(ARCH, N, L, n_nets=1, inputs=x[0], exact=True, l=L, seed=11, l0=2, **HP)
    assert r.J[1] == pytest.approx(sim.J_nets[5, 0], rel=1e-10)
    assert r.as_dict()["blocks.1"] == pytest.approx(1.0)


class TwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.shared = nn.Tanh()

    def forward(self, x):
        h = self.shared(self.a(x))
        return self.shared(h), (h, h)


def test_apjn_bad_input(setup):
    _, model, x, names = setup
    with pytest.raises(SimulationError, match="no submodule named 'blocks.9'"):
        cs.apjn(model, x, ["inp", "blocks.9"])
    with pytest.raises(SimulationError, match="not part of the model"):
        cs.apjn(model, x, ["inp", nn.Linear(2, 2)])
    with pytest.raises(SimulationError, match="called 2 times"):
        cs.apjn(TwoOut(), torch.randn(1, 4), ["a", "shared"])
    with pytest.raises(SimulationError, match="non-finite"):
        cs.apjn(model, x * float("nan"), names)
    with pytest.raises(SimulationError, match="mode"):
        cs.apjn(model, x, names, mode="magic")
    with pytest.raises(SimulationError, match="n_probes"):
        cs.apjn(model, x, names, n_probes=0)
    with pytest.raises(SimulationError, match="nn.Module"):
        cs.apjn(lambda z: z, x, names)
    with pytest.raises(SimulationError, match="non-empty"):
        cs.apjn(model, x, [])
