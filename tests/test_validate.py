"""validate(): the 1/N extrapolation against an independent weighted polyfit, the check's power
to fail (a wrong theory is rejected; power() against a direct recomputation), the table and the
plot, every entry scored or a failure that says why, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import critsym as cs
from critsym.errors import SimulationError
from critsym.torch.validate import MIN_NETS, extrapolate, power, score


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
    assert "PASS" in text and "N→∞" in text and "scored 31 of 31 entries" in text
    assert res.n_scored == res.n_expected == 31 and not res.unscored and res.why == ""
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


def _max_z_against(res, **hp):
    th = cs.derive(res.arch).run(res.depth, K0=1.0, c0=0.5, **hp)
    zs = []
    for q in ("K", "J", "c"):
        for layer in range(0 if q == "J" else 1, res.depth + 1):
            mc = [getattr(s, q)[layer] for s in res.sims]
            se = [getattr(s, q + "_se")[layer] for s in res.sims]
            a, sa, _ = extrapolate(res.widths, mc, se)
            zs.append(abs(a - getattr(th, q)[layer]) / sa)
    return max(zs)


def test_power_is_the_first_rejected_deviation(relu_run):
    res = relu_run
    pw = power(res)
    assert 0 < pw.delta_up <= 0.10 and 0 < pw.delta_down <= 0.10, pw
    assert pw.delta == max(pw.delta_up, pw.delta_down)
    for sign, d in ((1, pw.delta_up), (-1, pw.delta_down)):
        assert _max_z_against(res, sigma_w=1.4 * (1 + sign * d), sigma_b=0.2) > 4
        assert _max_z_against(res, sigma_w=1.4 * (1 + sign * (d - 0.005)), sigma_b=0.2) <= 4
    assert power(res, deltas=[0.001]).delta_up != power(res, deltas=[0.001]).delta_up  # NaN
    with pytest.raises(SimulationError, match="mu"):
        power(res, "mu")
    with pytest.raises(SimulationError, match="nonzero"):
        power(dataclasses.replace(res, hp={"sigma_w": 1.4, "sigma_b": 0.0}), "sigma_b")
    with pytest.raises(SimulationError, match="increasing"):
        power(res, deltas=[0.1, 0.05])


def test_cannot_pass_with_nothing_scored():
    """One network per width (no standard error) is refused; so is a single width."""
    arch = cs.mlp_block("relu")
    with pytest.raises(SimulationError, match=f"at least {MIN_NETS} networks"):
        cs.validate(arch, widths=(16, 32), depth=3, n_nets=1, sigma_w=5.0, sigma_b=0.1)
    with pytest.raises(SimulationError, match="at least two widths"):
        cs.validate(arch, widths=(32,), depth=3, n_nets=16, sigma_w=1.4, sigma_b=0.1)
    with pytest.raises(SimulationError, match="at least two widths"):
        cs.validate(arch, widths=32, depth=3, n_nets=16, sigma_w=1.4, sigma_b=0.1)


def test_degenerate_entries_fail_with_the_reason():
    """c0 = 1: c^l = 1 in every network (zero spread), so c cannot be scored: FAIL, says why."""
    res = cs.validate(cs.mlp_block("tanh"), widths=(16, 32), depth=3, n_nets=8, n_probes=1,
                      c0=1.0, sigma_w=1.0, sigma_b=0.1, seed=2)
    assert not res.passed
    assert {r["quantity"] for r in res.unscored} == {"c"}
    assert res.n_expected == 3 * 3 + 1 and res.n_scored == res.n_expected - 3
    assert "zero spread" in res.why and "could not be scored" in res.to_text()
    ok = cs.validate(cs.mlp_block("tanh"), widths=(16, 32), depth=3, n_nets=8, n_probes=1,
                     c0=1.0, quantities=("K", "J"), sigma_w=1.0, sigma_b=0.1, seed=2)
    assert ok.n_scored == ok.n_expected == 7


def test_score_reasons():
    w = (16, 32)
    assert score("K", 0, 1.0, w, [1, 1], [0, 0])["reason"] is None  # exact input
    assert score("J", 0, 1.0, w, [1, 1], [0.1, 0.1])["z"] is not None
    assert "not finite" in score("J", 2, 1.0, w, [1, 1], [float("nan"), 0.1])["reason"]
    assert "zero spread" in score("K", 2, 1.0, w, [1, 1], [0.1, 0.0])["reason"]
    assert "theory" in score("K", 2, float("inf"), w, [1, 1], [0.1, 0.1])["reason"]
    assert "Monte Carlo" in score("K", 2, 1.0, w, [float("nan"), 1], [0.1, 0.1])["reason"]


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
