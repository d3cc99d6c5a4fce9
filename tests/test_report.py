"""cs.report: theory J^{0,l} against an independent quadrature recursion, the measured APJN
against theory over independent networks, the figure, the refusals it reports, and the
``critsym report`` command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
import critsym.init as ci
from critsym import cli
from tests.test_init import PreNormResidual, _gauss, act_linear_mlp, input_at


def quadrature_J(sigma_w: float, sigma_b: float, K0: float, depth: int) -> np.ndarray:
    """J^{0,l} of act >> Linear with tanh: K' = σ_w² E[tanh²(√K z)] + σ_b²,
    χ_J(K) = σ_w² E[sech⁴(√K z)], by scipy quadrature."""
    K, J = K0, [1.0]
    for _ in range(depth):
        J.append(J[-1] * sigma_w ** 2 * _gauss(lambda t: 1 / math.cosh(t) ** 4, K))
        K = sigma_w ** 2 * _gauss(lambda t: math.tanh(t) ** 2, K) + sigma_b ** 2
    return np.array(J)


def test_theory_line_matches_quadrature_at_the_read_sigmas():
    torch.manual_seed(0)
    model = act_linear_mlp(nn.Tanh, 5, width=128)
    x = input_at(1.3, shape=(16, 128))
    rep = cs.report(model, x, n_probes=2)
    sw, sb = rep.hyperparameters["sigma_w"], rep.hyperparameters["sigma_b"]
    assert rep.K0 == pytest.approx(float((x.double() ** 2).mean()), rel=1e-12)
    assert np.allclose(rep.J_theory, quadrature_J(sw, sb, rep.K0, 5), rtol=1e-9, atol=0)
    assert rep.phase == "ordered" and rep.chi_star < 1 and rep.exponent is None
    assert rep.critical_point.value == pytest.approx(
        ci.critical_gain("tanh", sb), rel=1e-9)
    assert rep.xi_J == pytest.approx(-1 / math.log(rep.chi_star))


def test_measured_J_agrees_with_theory_over_independent_networks():
    # theory is per network (its own read σ's); the spread over networks is the honest SE
    x = input_at(1.0, shape=(32, 512))
    z_last, Jm, Jt = [], [], []
    for seed in range(6):
        torch.manual_seed(seed)
        rep = cs.report(act_linear_mlp(nn.Tanh, 4), x, n_probes=8, seed=seed)
        Jm.append(rep.J_measured[1:])
        Jt.append(rep.J_theory[1:])
        z_last.append(rep.z[-1])
    Jm, Jt = np.array(Jm), np.array(Jt)
    d = Jm / Jt - 1  # relative deviation per network and block
    se = d.std(axis=0, ddof=1) / math.sqrt(len(d))
    assert np.all(se < 0.02), se
    assert np.all(np.abs(d.mean(axis=0)) <= 4 * se), (d.mean(axis=0), se)
    assert np.all(np.isfinite(z_last))


def test_after_critical_init_the_model_reads_critical():
    torch.manual_seed(1)
    model = act_linear_mlp(nn.Tanh, 6, width=256)
    x = input_at(1.0, shape=(32, 256))
    res = ci.critical_(model, example_input=x, sigma_b=0.2)
    rep = cs.report(model, x, n_probes=4)
    assert rep.phase == "critical", (rep.chi_star, rep.notes)
    assert rep.universality.startswith("K*>0 critical") and rep.exponent == 0.0
    assert rep.critical_point.value == pytest.approx(res.value, rel=0.05)


def test_plot_draws_theory_and_points_and_returns_the_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(2)
    rep = cs.report(act_linear_mlp(nn.ReLU, 3, width=32), input_at(1.0, shape=(8, 32)),
                    n_probes=2)
    fig = rep.plot()
    ax = fig.axes[0]
    assert np.allclose(ax.lines[0].get_ydata(), rep.J_theory)
    assert ax.get_xlabel() == "block l"
    fig2, ax2 = plt.subplots()
    assert rep.plot(ax=ax2) is fig2 and len(ax2.lines) >= 1
    plt.close("all")


def test_repr_is_one_short_line_and_str_a_report():
    torch.manual_seed(3)
    rep = cs.report(act_linear_mlp(nn.Tanh, 3, width=16), input_at(1.0, shape=(8, 16)),
                    n_probes=2)
    assert "\n" not in repr(rep) and len(repr(rep)) < 300 and repr(rep).startswith("Report(")
    text = str(rep)
    for word in ("analysed:", "phase:", "J^(0,3)", "critical initialization:"):
        assert word in text


def test_a_model_without_critical_point_reports_why():
    torch.manual_seed(4)
    model = nn.Sequential(*[PreNormResidual(32, 1.0) for _ in range(3)])
    rep = cs.report(model, input_at(1.0, shape=(8, 32)), n_probes=2)
    assert rep.critical_point is None and "every sigma_w" in rep.critical_note
    bn = nn.Sequential(*[nn.Sequential(nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32))
                         for _ in range(3)])
    rep = cs.report(bn, input_at(1.0, shape=(16, 32)), n_probes=2)
    assert rep.critical_point is None and "BatchNorm" in rep.critical_note
    assert rep.phase == "chaotic"


def test_report_is_callable_as_the_module_too():
    import critsym.report

    torch.manual_seed(5)
    rep = critsym.report(act_linear_mlp(nn.Tanh, 2, width=8), input_at(1.0, shape=(4, 8)),
                         n_probes=1)
    assert isinstance(rep, cs.Report)


def test_bad_input_is_a_critsym_error():
    with pytest.raises(cs.CritsymError, match="torch.Tensor"):
        cs.report(act_linear_mlp(nn.Tanh, 2, width=8), np.zeros((4, 8)))
    with pytest.raises(cs.CritsymError, match="shape"):
        cs.report(act_linear_mlp(nn.Tanh, 2, width=8), torch.zeros(4, 9))


class _Res(nn.Module):
    def __init__(self, act: nn.Module, width: int):
        super().__init__()
        self.act, self.fc = act, nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc(self.act(x))


class DifferingBlocks(nn.Module):
    """Residual blocks with different activations, applied by a loop over a ModuleList."""

    def __init__(self, width: int = 128):
        super().__init__()
        self.blocks = nn.ModuleList([_Res(a, width) for a in (nn.Tanh(), nn.ReLU(), nn.Tanh(),
                                                               nn.GELU())])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def test_a_body_of_differing_blocks_is_reported_block_by_block():
    x = input_at(1.0, shape=(32, 128))
    d = []
    for seed in range(5):
        torch.manual_seed(seed)
        model = DifferingBlocks()
        rep = cs.report(model, x, n_probes=4, seed=seed)
        assert rep.part.differing and rep.part.n_blocks == 3
        assert rep.part.inputs == "blocks.0" and rep.part.outputs[-1] == "blocks.3"
        assert rep.phase == "undetermined" and rep.critical_point is None
        assert "differ" in rep.critical_note and "differing" in repr(rep)
        d.append(rep.J_measured[1:] / rep.J_theory[1:] - 1)
    d = np.array(d)
    se = d.std(axis=0, ddof=1) / math.sqrt(len(d))
    assert np.all(se < 0.05) and np.all(np.abs(d.mean(axis=0)) <= 4 * se), (d.mean(0), se)


# ----------------------------------------------------------------------------- command line
MODELS = '''
import pathlib
from torch import nn


def make_mlp():
    return nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(16, 16)) for _ in range(4)])


def touched():
    pathlib.Path(__file__).with_name("called").write_text("yes")
    return make_mlp()


def not_a_model():
    return 3


def embedded_mlp():
    return nn.Sequential(nn.Embedding(50, 16),
                         *[nn.Sequential(nn.Tanh(), nn.Linear(16, 16)) for _ in range(3)])
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "cli_models.py"
    path.write_text(MODELS)
    return path


def test_cli_report_prints_and_writes_the_figure(models, tmp_path, capsys):
    out = tmp_path / "fig.png"
    code = cli.main(["report", f"{models}:make_mlp", "--input-shape", "8,16", "--out",
                     str(out), "--n-probes", "2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "phase:" in text and "critical initialization:" in text and f"wrote {out}" in text
    assert out.stat().st_size > 1000


def test_cli_report_draws_token_ids_for_a_model_with_an_embedding(models, capsys):
    code = cli.main(["report", f"{models}:embedded_mlp", "--input-shape", "4,8", "--vocab",
                     "50", "--eval", "--n-probes", "2"])
    assert code == 0
    text = capsys.readouterr().out
    # the embedding is a stem left out; the body's input is its output
    assert "skipped: 0 (stem: " in text and "J^(0,3)" in text, text


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("critsym: error: ") and err.count("\n") == 1, err
    return err


def test_cli_report_checks_the_output_path_before_building_the_model(models, tmp_path, capsys):
    code = cli.main(["report", f"{models}:touched", "--input-shape", "8,16", "--out",
                     str(tmp_path / "missing" / "fig.png")])
    assert code == 2 and "does not exist" in _one_line(capsys)
    assert not (tmp_path / "called").exists()


@pytest.mark.parametrize("spec, shape, message", [
    ("{m}:nope", "8,16", "no attribute"),
    ("{m}", "8,16", "MODULE:FACTORY"),
    ("{m}:not_a_model", "8,16", "not an nn.Module"),
    ("no_such_module_xyz:f", "8,16", "cannot import"),
    ("{m}:make_mlp", "8,x", "--input-shape"),
    ("{m}:make_mlp", "8,17", "does not accept"),
])
def test_cli_report_errors_are_one_line(models, capsys, spec, shape, message):
    code = cli.main(["report", spec.format(m=models), "--input-shape", shape])
    assert code == 2 and message in _one_line(capsys)


def test_cli_report_input_is_not_the_weight_stream(models, capsys):
    from critsym.cli.report import input_seed

    assert input_seed(0) != 0 and input_seed(0) != input_seed(1)
    with pytest.raises(SystemExit) as e:
        cli.main(["report", f"{models}:make_mlp", "--input-shape", "8,16", "--seed", "-1"])
    assert e.value.code == 2 and "--seed" in capsys.readouterr().err


def test_the_critical_search_stops_at_its_budget():
    torch.manual_seed(6)
    rep = cs.report(act_linear_mlp(nn.Tanh, 2, width=8), input_at(1.0, shape=(4, 8)),
                    n_probes=1, critical_budget=1e-4)
    assert rep.critical_point is None and "not computed" in rep.critical_note


def test_a_depth_scale_beyond_ten_thousand_blocks_is_called_marginal():
    """Off criticality with χ_J* − 1 ~ 1e-6 (BERT at its own initialization) the phase's side
    does not matter at any practical depth: the report prints χ_J* − 1 and says marginal."""
    from types import SimpleNamespace

    from critsym.report import Report

    part = SimpleNamespace(description="part", skipped=())

    def rep(chi):
        xi = -1 / np.log(chi)
        return Report(part=part, hyperparameters={}, K0=1.0, J_theory=np.ones(2),
                      J_measured=np.ones(2), J_measured_se=np.full(2, 0.1),
                      phase="chaotic" if chi > 1 else "ordered", chi_star=chi,
                      xi_J=float(xi), universality="", exponent=None, critical_point=None)

    near, far = rep(1 + 1.1e-6), rep(0.9)
    assert near.marginal and "marginal" in str(near) and "chi_J* - 1 = 1.1e-06" in str(near)
    assert not far.marginal and "marginal" not in str(far)
