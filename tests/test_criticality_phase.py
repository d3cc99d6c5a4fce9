"""Phase grids and figures, the command line, the everywhere-critical report and the summary."""

import numpy as np
import pytest

import critsym as cs
from critsym.criticality import phase


@pytest.fixture(scope="module")
def tanh():
    return cs.derive(cs.mlp_block("tanh"))


def test_phase_grid_values(tanh):
    g = cs.phase_grid(tanh, "sigma_w", np.linspace(0.5, 2.5, 9), "sigma_b", [0.0, 0.5, 1.0])
    assert g.chi_star.shape == (3, 9)
    one = tanh.fixed_point(sigma_w=g.x[4], sigma_b=g.y[1])
    assert g.chi_star[1, 4] == pytest.approx(float(one.chi_star), rel=1e-13)
    np.testing.assert_allclose(g.xi_J, -1 / np.log(g.chi_star))
    # the ordered/chaotic boundary at σ_b = 0.5 lies at the critical σ_w ≈ 1.5497
    row = g.phase[1]
    assert set(row[g.x < 1.5]) == {"ordered"} and set(row[g.x > 1.6]) == {"chaotic"}


def test_plot_png_pdf(tanh, tmp_path):
    g = cs.phase_grid(tanh, "sigma_w", np.linspace(0.5, 2.5, 12), "sigma_b",
                      np.linspace(0, 1, 10))
    for q, name in (("log_chi", "a.png"), ("xi", "b.pdf"), ("K", "c.png")):
        fig = cs.plot_phase(tanh, g, str(tmp_path / name), quantity=q)
        assert (tmp_path / name).stat().st_size > 1000
        assert fig.axes[0].get_xlabel() == "sigma_w"
    with pytest.raises(cs.errors.HyperparameterError):
        cs.plot_phase(tanh, g, None, quantity="nope")


def test_cli(tmp_path, capsys):
    out = tmp_path / "phase.png"
    assert phase.main(["--act", "erf", "--n", "16", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "phase fractions" in capsys.readouterr().out


def test_everywhere_critical():
    ln = cs.derive(cs.mlp_block("relu", layernorm="pre", residual_mu=1))
    rep = cs.everywhere_critical(ln, n=3, depth=300)
    assert rep.everywhere and rep.fraction == 1.0
    assert "critical everywhere" in str(rep)
    van = cs.derive(cs.mlp_block("tanh"))
    rep = cs.everywhere_critical(van, n=3, depth=300)
    assert not rep.everywhere


def test_summary(tanh):
    s = cs.summary(tanh, sigma_w=1.0, sigma_b=0.0)
    assert s["status"] == "zero" and s["phase"] == "critical"
    assert s["p"] == pytest.approx(-1.0) and "K*=0" in s["universality"]
    assert "universality class" in s["text"]
    s = cs.summary(tanh, sigma_w=1.5, sigma_b=0.3)
    assert s["phase"] == "chaotic"
    assert s["critical_sigma_w"] == pytest.approx(cs.critical_point(tanh, sigma_b=0.3))
