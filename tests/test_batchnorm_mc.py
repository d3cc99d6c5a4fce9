"""BatchNorm networks by Monte Carlo over whole batches, against the theory after the 1/N (and,
for the infinite-batch rule, 1/B) extrapolation; tolerances are 4 measured standard errors."""

import pytest

import critsym as cs
from critsym.batchnorm import growth_rate
from critsym.batchnorm.simulate import simulate_batch, validate_batch, validate_batch_limit
from critsym.repro.batchnorm import measured_growth


def preact_resnet():
    return cs.Residual(cs.BatchNorm() >> cs.Act("relu") >> cs.Linear() >> cs.BatchNorm()
                       >> cs.Act("relu") >> cs.Linear(), cs.mu)


@pytest.mark.parametrize("act,B", [("relu", 8), ("tanh", 16), ("identity", 8)])
def test_finite_batch_mlp(act, B, single_thread):
    v = validate_batch(cs.BatchNorm(B) >> cs.Act(act) >> cs.Linear(), (128, 256), 4,
                       n_nets=12, sigma_w=1.2, sigma_b=0.3)
    assert v.passed, v.to_text()


def test_infinite_batch_mlp_growth(single_thread):
    """The per-layer growth of BatchNorm() -> relu -> W at B = 64, 128, extrapolated in 1/N and
    then in 1/B, against pi/(pi - 1)."""
    from critsym.torch.validate import extrapolate

    Bs = (64, 128)
    est = [measured_growth("relu", B, (128, 256), 4, 12, 0, infinite=True) for B in Bs]
    inf, se, _ = extrapolate(Bs, [e[0] for e in est], [e[1] for e in est])
    assert abs(inf - growth_rate("relu", None)) < 4 * se


def test_preactivation_resnet(single_thread):
    v = validate_batch_limit(preact_resnet(), (128, 256), 3, (32, 64), n_nets=12,
                             sigma_w=1.0, sigma_b=0.3, mu=1.0)
    assert v.passed, v.to_text()


def test_simulate_batch_checks():
    from critsym.errors import SimulationError

    with pytest.raises(SimulationError, match="pass batch_size"):
        simulate_batch(cs.BatchNorm() >> cs.Act("relu") >> cs.Linear(), 8, 1, sigma_w=1.0,
                       sigma_b=0.0)
    with pytest.raises(SimulationError, match="differs"):
        simulate_batch(cs.BatchNorm(8) >> cs.Act("relu") >> cs.Linear(), 8, 1, 16,
                       sigma_w=1.0, sigma_b=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("B", [4, 8, 16, 64])
def test_finite_batch_mlp_wide(act, B, single_thread):
    """Width 512 and 1024, layer by layer (K^l and J^{0,l})."""
    v = validate_batch(cs.BatchNorm(B) >> cs.Act(act) >> cs.Linear(), (512, 1024), 4,
                       n_nets=32, sigma_w=1.0, sigma_b=0.2)
    assert v.passed, v.to_text()


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
def test_infinite_batch_mlp_wide(act, single_thread):
    v = validate_batch_limit(cs.BatchNorm() >> cs.Act(act) >> cs.Linear(), (512, 1024), 4,
                             (64, 128, 256), n_nets=24, sigma_w=1.0, sigma_b=0.2)
    assert v.passed, v.to_text()


@pytest.mark.slow
def test_preactivation_resnet_wide(single_thread):
    v = validate_batch_limit(preact_resnet(), (512, 1024), 5, (64, 128, 256), n_nets=24,
                             sigma_w=1.0, sigma_b=0.3, mu=1.0)
    assert v.passed, v.to_text()


def _basic_block_check(widths, depth, batch_sizes, n_nets, mu):
    from critsym.batchnorm.resnet import BasicBlockTheory, basic_block

    hp = dict(sigma_w=1.0, sigma_b=0.3, mu=mu)
    th = BasicBlockTheory().run(depth, 1.0, **hp)
    return validate_batch_limit(basic_block(), widths, depth, batch_sizes, n_nets=n_nets,
                                theory=th, **hp)


def test_basic_block_resnet(single_thread):
    """torchvision order (conv -> BN -> relu -> conv -> BN, add, relu) as an MLP, mu = 1."""
    v = _basic_block_check((128, 256), 3, (32, 64), 12, 1.0)
    assert v.passed, v.to_text()


@pytest.mark.slow
@pytest.mark.parametrize("mu", [1.0, 0.5])
def test_basic_block_resnet_wide(mu, single_thread):
    v = _basic_block_check((512, 1024), 5, (64, 128, 256), 24, mu)
    assert v.passed, v.to_text()


def test_repro_parser_and_plot(tmp_path):
    import argparse

    from critsym.repro import batchnorm as rb

    p = argparse.ArgumentParser()
    rb.add_parser(p.add_subparsers())
    a = p.parse_args(["batchnorm", "--quick", "--out", str(tmp_path / "g.png")])
    assert a.quick and callable(a.func)
    res = {act: {"B": [8, 64], "mc": [growth_rate(act, 8), growth_rate(act, 64)],
                 "se": [0.01, 0.01], "inf_theory": growth_rate(act, None),
                 "inf_mc": growth_rate(act, None), "inf_se": 0.01} for act in rb.ACTS}
    fig = rb.plot(res)
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


@pytest.mark.slow
def test_repro_quick(tmp_path, single_thread):
    from critsym.repro import batchnorm as rb

    res = rb.run(quick=True, out=str(tmp_path / "g.png"))
    for e in res.values():
        assert all(abs(z) < 4 for z in e["z"]) and abs(e["inf_z"]) < 4


def test_conv_batchnorm_pools_batch_and_positions(single_thread):
    """BatchNorm() -> relu -> Conv(3) (circular) on white 8x8 maps with B = 4: at infinite width
    the B*H*W positions of a channel are exchangeable (distinct positions share only the
    per-channel offset), so the stack is the MLP block at batch size B*H*W = 256."""
    H, B = 8, 4
    hp = dict(sigma_w=1.0, sigma_b=0.2)
    th = cs.derive(cs.BatchNorm(B * H * H) >> cs.Act("relu") >> cs.Linear()).run(4, **hp)
    v = validate_batch(cs.BatchNorm() >> cs.Act("relu") >> cs.Conv(3), (64, 128), 4, B,
                       n_nets=8, theory=th, spatial=(H, H), **hp)
    assert v.passed, v.to_text()


def test_batch_validation_cannot_pass_unscored():
    """The rule of critsym.validate: nothing scored, or one entry that cannot be scored (no
    spread across the networks), fails the check."""
    from critsym.batchnorm.simulate import BatchValidation, _score

    only_inputs = BatchValidation(rows=[_score("K", 0, 1.0, (64, 128), [1.0, 1.0], [0.0, 0.0])],
                                  sims=[], z_max=4.0)
    assert not only_inputs.passed
    degenerate = _score("J", 3, 2.0, (64, 128), [2.0, 2.0], [0.0, 0.0])
    assert degenerate["z"] is None and "zero spread" in degenerate["reason"]
    good = _score("J", 3, 2.0, (64, 128), [2.1, 2.05], [0.05, 0.03])
    assert good["reason"] is None and abs(good["z"]) < 4
    assert BatchValidation(rows=[good], sims=[], z_max=4.0).passed
    assert not BatchValidation(rows=[good, degenerate], sims=[], z_max=4.0).passed
