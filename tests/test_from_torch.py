"""from_torch: round trips build → torch → import → same theory, σ estimates with honest
standard errors, custom residual / transpose modules, and clear errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
from critsym.errors import UnsupportedModuleError

CASES = [
    (cs.mlp_block("tanh", "pre", True), dict(sigma_w=1.3, sigma_b=0.2, mu=1)),
    (cs.mlp_block("erf", None, None), dict(sigma_w=1.1, sigma_b=0.4)),
    (cs.two_layer_block("linear", "relu", "post"), dict(sigma_w=1.5, sigma_b=0.1, mu=0.5)),
    (cs.resnet_block(), dict(sigma_w=1.4, sigma_b=0.1, mu=1)),
    (cs.mixer_block(), dict(sigma_w=1.4, sigma_b=0.3, mu=0.5)),
]


@pytest.mark.parametrize("arch,hp", CASES, ids=lambda v: repr(v)[:30])
def test_round_trip(arch, hp):
    model = cs.to_torch_model(arch, 48, 3, seed=1, **hp)
    imp = cs.from_torch(model)
    mu = hp.get("mu")
    ref = arch.subs({"mu": mu}) if mu is not None else arch
    assert imp.block == ref and imp.n_blocks == 3
    for name in ("sigma_w", "sigma_b"):
        est = getattr(imp, name)
        assert abs(est.value - hp[name]) <= 4 * est.se + 1e-12, (name, est)
    th, th_ref = imp.theory(), cs.derive(ref)
    assert th.F == th_ref.F and th.chi == th_ref.chi
    vals = imp.values
    run = imp.run(K0=1.0)
    ref_run = th_ref.run(3, K0=1.0, **vals)
    assert np.allclose(run.J, ref_run.J, rtol=1e-12)


def test_standard_error_is_honest():
    """Over 40 independent models the spread of σ̂_w, σ̂_b matches the reported SE."""
    arch = cs.mlp_block("relu")
    ws, bs, se_w, se_b = [], [], [], []
    for seed in range(40):
        imp = cs.from_torch(cs.to_torch_model(arch, 24, 2, seed=seed, sigma_w=1.2, sigma_b=0.5))
        ws.append(imp.sigma_w.value)
        bs.append(imp.sigma_b.value)
        se_w.append(imp.sigma_w.se)
        se_b.append(imp.sigma_b.se)
    for xs, ses in ((ws, se_w), (bs, se_b)):
        ratio = np.std(xs, ddof=1) / np.mean(ses)
        assert 0.6 < ratio < 1.5, ratio  # the sample std of 40 values is within ±35 % at 4σ


def test_torch_default_uniform_init():
    """nn.Linear's default init is U(±1/√fan_in): σ_w² = 1/3, σ_b² = 1/(3 fan_in)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(200, 200)) for _ in range(3)])
    imp = cs.from_torch(model)
    assert abs(imp.sigma_w.value - math.sqrt(1 / 3)) <= 4 * imp.sigma_w.se
    assert abs(imp.sigma_b.value - math.sqrt(1 / 600)) <= 4 * imp.sigma_b.se
    assert imp.block == cs.Act("tanh") >> cs.Linear()


class PreNormResidual(nn.Module):
    """A Mixer-style residual: fn registered before norm, forward fn(norm(x)) + x."""

    def __init__(self, dim, fn):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.fn(self.norm(x)) + x


class Rearrange(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 1)


def test_user_mixer_with_custom_modules():
    T = C = 16
    torch.manual_seed(1)

    def mlp(n):
        return nn.Sequential(nn.Linear(n, n), nn.GELU(), nn.Dropout(0.0), nn.Linear(n, n))

    def block():
        return nn.Sequential(
            PreNormResidual(C, nn.Sequential(Rearrange(), mlp(T), Rearrange())),
            PreNormResidual(C, mlp(C)))

    model = nn.Sequential(block(), block())
    # the graph shows the sums and the permutes, so no example input is needed
    for x in (None, torch.randn(2, T, C)):
        imp = cs.from_torch(model, example_input=x)
        assert imp.block == cs.mixer_block(mu=1) and imp.n_blocks == 2
        assert not imp.skipped and imp.capture[""] == "torch.fx"


def test_errors_name_the_submodule():
    """Unsupported parts at the ends are skipped with the reason naming the submodule; a model
    with nothing analysable is refused, naming it."""
    imp = cs.from_torch(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)).eval())
    (skip,) = imp.skipped
    assert skip.part == "head" and skip.path == "1"
    assert "BatchNorm" in skip.reason and "evaluation mode" in skip.reason
    with pytest.raises(UnsupportedModuleError, match=r"'0.lstm'"):
        m = nn.Sequential(nn.Module())
        m[0].lstm = nn.LSTM(3, 3)
        cs.from_torch(m)
    imp = cs.from_torch(nn.Sequential(nn.GELU(approximate="tanh"), nn.Linear(3, 3)))
    assert imp.arch.ops[0] == cs.Act("gelu_tanh")  # the tanh approximation has its own entry
    imp = cs.from_torch(nn.Sequential(nn.Linear(3, 3), nn.Softmax(-1)))
    assert imp.skipped[0].path == "1" and "softmax" in imp.skipped[0].reason
    with pytest.raises(UnsupportedModuleError, match="equal strides, dilation 1"):
        cs.from_torch(nn.Conv2d(3, 3, 3, stride=2, padding=1, dilation=2))
    ln = nn.LayerNorm(3)
    with torch.no_grad():
        ln.weight.fill_(2.0)
    imp = cs.from_torch(nn.Sequential(ln, nn.Linear(3, 3)))
    assert imp.skipped[0].part == "stem" and "γ" in imp.skipped[0].reason
    with pytest.raises(UnsupportedModuleError, match=r"'0.1'.*mixes tokens"):
        cs.from_torch(nn.Sequential(nn.Sequential(nn.LayerNorm(4), nn.Conv1d(3, 3, 1))))
    with pytest.raises(UnsupportedModuleError, match="torch.nn.Module"):
        cs.from_torch("not a model")


def test_user_workflow_critical_initialization():
    """model → import → the σ_w that makes it critical (docs/theory.md#critical-lines: erf,
    σ_b = 0.5 → 1.3713304703)."""
    imp = cs.from_torch(cs.to_torch_model(cs.mlp_block("erf"), 64, 4, sigma_w=1.0, sigma_b=0.5))
    assert imp.critical("sigma_w", sigma_b=0.5) == pytest.approx(1.3713304703, abs=1e-7)


def test_conv_net_with_pooling_imports():
    """Pooling changes the spatial size, so the body ends before it; the skipped head says
    how to treat the pooling (pool_theory)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1))
    imp = cs.from_torch(model)
    ops = imp.arch.ops  # every part maps: arch is the whole model
    assert isinstance(ops[0], cs.Conv) and ops[0].padding == "circular"
    assert ops[2] == cs.AvgPool(2) and ops[3].padding == "zeros"
    assert ops[5] == cs.GlobalAvgPool()
    assert [b.path for b in imp.blocks] == ["0"] and imp.blocks[0].arch == ops[0]
    assert [(s.part, s.path) for s in imp.skipped] == [("head", "1..2"), ("head", "3"),
                                                       ("head", "4..5")]
    assert "AvgPool" in imp.skipped[0].reason and "pool_theory" in imp.skipped[0].reason
    assert "'1..2' separates it from the body" in imp.skipped[1].reason
    assert "GlobalAvgPool" in imp.skipped[2].reason


@pytest.mark.parametrize("arch,hp,shape", [
    (cs.mlp_block("leaky_relu", "post", True), dict(sigma_w=1.3, sigma_b=0.2, mu=0.8), None),
    (cs.resnet_block(), dict(sigma_w=1.4, sigma_b=0.1, mu=1), (5, 5, 16)),
    (cs.mixer_block(), dict(sigma_w=1.4, sigma_b=0.3, mu=1), (16, 16)),
], ids=["mlp", "resnet", "mixer"])
def test_round_trip_of_critsym_built_networks(arch, hp, shape):
    """critsym's own stacked networks (cs.build / build_maps) import back to the same block."""
    from critsym.torch.build import CritsymNet
    from critsym.torch.feature_maps import build_maps

    if shape is None:
        net = cs.build(arch, 32, 3, n_nets=2, **hp)
    else:
        blocks = build_maps(arch, shape, 3, n_nets=2, **hp)
        net = CritsymNet(list(blocks), arch=arch, width=shape[-1], n_nets=2, values=hp,
                         in_shape=shape)
    imp = cs.from_torch(net)
    assert imp.block == arch.subs({"mu": hp["mu"]}) and imp.n_blocks == 3
    assert abs(imp.sigma_w.value - hp["sigma_w"]) <= 4 * imp.sigma_w.se
    assert abs(imp.sigma_b.value - hp["sigma_b"]) <= 4 * imp.sigma_b.se


def test_unlike_tokens_at_the_body_input_are_labelled():
    """A near-zero first token (a class token at initialization) is not exchangeable with the
    others: the import says so; alike tokens get no such label."""
    import warnings

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True,
                                       norm_first=True)
    model = nn.Sequential(layer).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 16, generator=g, dtype=torch.float64)
    cls = x.clone()
    cls[:, 0] *= 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alike = cs.from_torch(model, x).approximations
        unlike = cs.from_torch(model, cls).approximations
    assert not any("tokens not alike" in v for v in alike.values())
    notes = [v for v in unlike.values() if "tokens not alike" in v]
    assert len(notes) == 1 and "(token 0)" in notes[0]
