"""validate(): the 1/N extrapolation against an independent weighted polyfit, the check's power
to fail (a wrong theory is rejected), the table and the plot, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import critsym as cs
from critsym.errors import SimulationError
from critsym.torch.validate import extrapolate


def test_extrapolate_matches_weighted_polyfit():
    rng = np.random.default_rng(0)
    widths = np.array([32, 64, 128, 256])
    y = 0.7 + 3.0 / widths + rng.normal(0, 0.01, 4)
    se = np.array([0.02, 0.015, 0.01, 0.008])
    a, sa, b = extrapolate(widths, y, se)
    coef, cov = np.polyfit(1 / widths, y, 1, w=1 / se, cov="unscaled")
    assert a == pytest.approx(coef[1], rel=1e-12)
    assert b == pytest.approx(coef[0], rel=1e-12)
    assert sa == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-10)
    # two widths: exact line through both points, SE from propagation
    a2, s2, _ = extrapolate([64, 128], [1.1, 1.05], [0.01, 0.02])
    assert a2 == pytest.approx(2 * 1.05 - 1.1)
    assert s2 == pytest.approx(np.hypot(2 * 0.02, 0.01))
    assert extrapolate([64], [1.0], [0.1]) == (1.0, 0.1, 0.0)


@pytest.fixture(scope="module")
def relu_run():
    return cs.validate(cs.mlp_block("relu"), widths=(64, 128), depth=10, n_nets=32,
                       n_probes=2, sigma_w=1.4, sigma_b=0.2, seed=3)


def test_validate_passes_and_reports(relu_run, tmp_path):
    res = relu_run
    assert res.passed, res.to_text()
    text = res.to_text()
    assert "PASS" in text and "N→∞" in text
    assert {r["quantity"] for r in res.rows} == {"K", "J", "c"}
    assert len(res.rows) == 3 * 11
    assert all(r["z"] is None for r in res.rows if r["layer"] == 0 and r["quantity"] != "J")
    path = tmp_path / "val.png"
    fig = res.plot(str(path))
    assert path.stat().st_size > 5000 and len(fig.axes) == 3


def test_wrong_theory_is_rejected(relu_run):
    """Against the theory at σ_w 10 % off (χ_J off by 21 %), the same simulations fail."""
    res = relu_run
    wrong = cs.derive(res.arch).run(10, K0=1.0, c0=0.5, sigma_w=1.54, sigma_b=0.2)
    zs = []
    for q in ("K", "J"):
        for layer in range(1, 11):
            mc = [getattr(s, q)[layer] for s in res.sims]
            se = [getattr(s, q + "_se")[layer] for s in res.sims]
            a, sa, _ = extrapolate(res.widths, mc, se)
            zs.append((a - getattr(wrong, q)[layer]) / sa)
    assert max(abs(z) for z in zs) > 4


def test_validate_bad_input():
    arch = cs.mlp_block("tanh")
    with pytest.raises(SimulationError, match="widths"):
        cs.validate(arch, widths=(), sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="quantities"):
        cs.validate(arch, quantities=("Q",), sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="c0"):
        cs.validate(arch, c0=None, sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="n_nets"):
        cs.validate(arch, widths=(8, 16), n_nets=(4,), sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="width"):
        cs.validate(arch, widths=(0, 8), depth=2, sigma_w=1.0, sigma_b=0.0)


def test_balanced_residual_forward_map_and_theory():
    """BalancedResidual's torch map: h + W₊relu(h) + W₋relu(−h); K, J, c against the theory."""
    from critsym.ops import BalancedResidual

    net = cs.build(BalancedResidual(), 6, 1, n_nets=1, sigma_w=0.8)
    h = np.random.default_rng(0).normal(size=(1, 1, 6))
    import torch

    ht = torch.tensor(h)
    blk = net.blocks[0]
    ref = ht + ht.clamp(min=0) @ blk.plus.weight[0].T + (-ht).clamp(min=0) @ blk.minus.weight[0].T
    assert torch.allclose(net(ht), ref)
    assert len(list(net.parameters())) == 4
    res = cs.validate(BalancedResidual(), widths=(64, 128), depth=10, n_nets=32, n_probes=2,
                      sigma_w=0.6, seed=5)
    assert res.passed, res.to_text()
