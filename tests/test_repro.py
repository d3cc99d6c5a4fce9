"""The reproductions at CI settings (``--quick``): each asserts the paper's claim it prints.

Tolerances: 4 standard errors of the Monte Carlo (over independent networks) plus, where
stated, an allowance for the O(1/N) finite-width bias measured at these small widths."""

import math

import numpy as np
import pytest

import critsym as cs
from critsym import repro
from critsym.errors import CritsymError


def test_ln_critical(tmp_path):
    out = tmp_path / "ln.png"
    r = repro.run("ln-critical", quick=True, out=str(out), seed=0)
    assert out.stat().st_size > 10_000
    for d in r["critical"]:
        # MC one-step APJN and log-slope agree with the theory (3 % finite-width allowance)
        assert abs(d["chi_last_mc"] - d["chi_last_theory"]) <= \
            4 * d["chi_last_mc_se"] + 0.03 * d["chi_last_theory"]
        assert abs(d["p_mc"] - d["p_theory"]) <= 4 * d["p_mc_se"] + 0.05
        # χ_J^l → 1 (theory, deep): χ - 1 = A/K^l ~ p/l
        th = cs.derive(cs.mlp_block("tanh", "pre", True))
        chi = th.run(2000, sigma_w=d["sigma_w"], sigma_b=d["sigma_b"], mu=1.0).chi[-1]
        assert abs(chi - 1) < 2 * d["p_theory"] / 2000
    for d in r["controls"].values():  # not critical: χ* measurably ≠ 1, and as predicted
        assert abs(d["chi_last_mc"] - 1) > 4 * d["chi_last_mc_se"]
        assert abs(d["chi_last_theory"] - 1) > 0.2
        assert abs(d["chi_last_mc"] - d["chi_last_theory"]) <= \
            4 * d["chi_last_mc_se"] + 0.03 * d["chi_last_theory"]


def test_ln_pre_post(tmp_path):
    r = repro.run("ln-pre-post", quick=True, out=str(tmp_path / "pp.png"), seed=0)
    for ln in ("pre", "post"):
        d = r[ln]
        assert d["p_theory_asymptotic"] == pytest.approx(d["p_formula"], abs=2e-3)
        assert abs(d["p_mc_window"] - d["p_theory_window"]) <= 4 * d["p_mc_se"] + 0.05
    assert abs(r["pre"]["p_formula"] - r["post"]["p_formula"]) > 0.4  # different exponents
    c = r["critical_sigma_w"]
    assert c["pre"] == pytest.approx(c["pre_formula"], abs=1e-6)
    assert abs(c["pre"] - c["post"]) > 0.3  # different critical points


def test_conv_mixer(tmp_path):
    """Allowances for the O(1/N) finite-width excess of J (the theory is the N → ∞ limit).
    ResNet (6×6×32, 3 blocks): 10 %.  Mixer: each sub-block's χ is larger by ≈ c/N, measured
    c ≈ 2.4 (tanh, σ_w² = 3, μ = 0.5: c·N-scaled excess 2.46, 2.50, 2.33 at N = 32, 64, 128;
    gelu σ_w² = 2, μ = 1: J^{0,2} +13.6 %, +2.5 %, +0.3 % at N = 32, 64, 128), so we allow
    (1 + 3/N)^(2l) − 1 on J^{0,l}."""
    r = repro.run("conv-mixer", quick=True, out=str(tmp_path / "cm.png"), seed=0)
    for e in r["resnet"]:
        J, se, th = (np.asarray(e[k]) for k in ("J_mc", "J_mc_se", "J_theory"))
        assert np.all(np.abs(J - th) <= 4 * se + 0.10 * th), (e["param"], J, se, th)
    N = 48  # the quick Mixer's tokens = channels
    for e in r["mixer"]:
        J, se, th = (np.asarray(e[k]) for k in ("J_mc", "J_mc_se", "J_theory"))
        allow = (1 + 3 / N) ** (2 * np.arange(len(J))) - 1
        assert np.all(np.abs(J - th) <= 4 * se + allow * th), (e["param"], J, se, th)
        assert abs(e["O_T_last_mc"] - e["O_T_last_theory"]) <= 4 * e["O_T_last_mc_se"] + \
            0.1 * e["O_T_last_theory"]


def test_numerical_test(tmp_path):
    """The σ_w where the torch model's one-step APJN crosses 1 lands on the theory's critical
    point within 4 SE (+0.02: the O(1/N) bias of χ at width 128 shifts the crossing by ≈ 1 %)."""
    r = repro.run("numerical-test", quick=True, out=str(tmp_path / "nt.png"), seed=0)
    assert r["sigma_w_critical_theory"] == pytest.approx(r["sigma_w_critical_closed_form"],
                                                         abs=1e-7)
    assert abs(r["sigma_w_critical_mc"] - r["sigma_w_critical_theory"]) <= \
        4 * r["sigma_w_critical_mc_se"] + 0.02
    assert math.isfinite(r["sigma_w_critical_mc_se"]) and r["sigma_w_critical_mc_se"] > 0


def test_unknown_reproduction():
    with pytest.raises(CritsymError, match="choose one of"):
        repro.run("nope")
