"""The one activation table: every entry's torch function matches its sympy φ, every torch module
it names exports and imports back, and shaped activations obey the operator contract."""

import numpy as np
import pytest
import sympy as sp
import torch

import critsym as cs
from critsym.activations import REGISTRY, module_activation, x
from critsym.ops.contract import claimant
from critsym.shaping.network import ShapedAct

MODULE_ENTRIES = [n for n, s in REGISTRY.items() if s.torch_modules]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_table_torch_function_matches_sympy(name):
    act = cs.Act(name)
    t = torch.linspace(-3, 3, 13, dtype=torch.float64)
    got = act.torch_function({})(t).numpy()
    f = sp.lambdify(x, act.phi(), modules=[{"ReLU": lambda v: np.maximum(v, 0)}, "scipy",
                                             "numpy"])
    ref = np.array([float(act.phi().subs(x, float(v)).evalf()) for v in t])
    assert np.allclose(got, ref, rtol=1e-12, atol=1e-12), (got, ref, f)


@pytest.mark.parametrize("name", MODULE_ENTRIES)
def test_table_modules_export_and_import(name):
    act = cs.Act(name)
    mod, _ = act.export(_ctx(), 4)
    assert claimant(mod) is cs.Act
    assert module_activation(mod) == (name, {} if name != "leaky_relu" else {"alpha": 0.01})
    imp = cs.from_torch(torch.nn.Sequential(mod, torch.nn.Linear(4, 4)))
    assert imp.arch.ops[0].phi() == act.phi()


def _ctx():
    from critsym.torch.modules import ExportContext

    return ExportContext(width=4, values={}, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tat_tanh():
    return cs.shaping.transform("tanh", method="TAT", depth=6)


def test_shaped_activation_obeys_the_contract(tat_tanh):
    act = tat_tanh.act
    assert isinstance(act, ShapedAct)
    assert cs.from_json(act.to_json()) == act
    block = act >> cs.Linear()
    net = cs.build(block, 16, 3, n_nets=2, sigma_w=1.0, sigma_b=0.0)
    h = torch.randn(2, 5, 16, dtype=torch.float64)
    assert net(h).shape == h.shape
    # the stacked build computes φ̂
    t = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert np.allclose(net.blocks[0][0](t).numpy(), tat_tanh.numpy(t.numpy()), rtol=1e-12)
    imp = cs.from_torch(cs.to_torch_model(block, 32, 2, sigma_w=1.0, sigma_b=0.0))
    assert imp.block == act >> cs.Linear(cs.sigma_w, 0)
    ref = cs.derive(act >> cs.Linear(cs.sigma_w, 0))
    assert imp.theory().F == ref.F
    assert cs.from_torch(net).block.ops[0] == act
    assert isinstance(tat_tanh.torch()(t), torch.Tensor)


def test_shaped_activation_with_symbolic_parameters_builds():
    act = ShapedAct("erf", "alpha_in", 0.1, 0.0, 1.5)
    back = cs.from_json(act.to_json())
    assert back == act and back.hyperparameters() == act.hyperparameters()
    net = cs.build(act >> cs.Linear(), 8, 2, alpha_in=0.7, sigma_w=1.0, sigma_b=0.1)
    t = torch.linspace(-2, 2, 5, dtype=torch.float64)
    ref = 1.5 * torch.erf(0.7 * t + 0.1)
    assert torch.allclose(net.blocks[0][0](t), ref, rtol=1e-12)
