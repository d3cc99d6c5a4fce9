"""ResNets with GroupNorm(G, C): read as the mean field of GroupNorm(1, C) (labelled), measured
against the network theory in 1/width; too small groups refused.  Pre-activation blocks (a
Gaussian stream) and post-activation blocks (torchvision's BasicBlock with GroupNorm: the
stream's law, :mod:`critsym.interop.stream`, with branches normalised per example)."""

import math
import warnings

import numpy as np
import pytest
import torch
from _torch_models import TorchvisionBasicBlock
from torch import nn

import critsym as cs
from critsym.errors import UnsupportedModuleError
from critsym.torch.validate import extrapolate

GROUPS, SEEDS = 4, 16


class PreActBlock(nn.Module):
    """x + conv(tanh(GroupNorm(x))), written in forward."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.act = nn.Tanh()
        self.conv = nn.Conv2d(c, c, 3, padding=1, padding_mode="circular")

    def forward(self, x):
        return x + self.conv(self.act(self.norm(x)))


def _net(c: int, groups: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, padding_mode="circular"),
                          *[PreActBlock(c, groups) for _ in range(3)]).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 1.5 / math.sqrt(m.weight[0].numel()))
                m.bias.normal_(0.0, 0.3)
    return model


def _ratio(c: int, groups: int) -> tuple[float, float, dict]:
    """measured/theory of J from the first block's input to the last block's output, mean
    and SE over SEEDS initializations."""
    q, notes = [], {}
    for s in range(SEEDS):
        model = _net(c, groups, s)
        x = torch.randn(4, c, 8, 8, generator=torch.Generator().manual_seed(100 + s),
                        dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cs.from_torch(model, x)
        theory = float(res.J_theory(start=1)[-1])
        measured = float(cs.apjn(model, x, [res.outputs[0], res.outputs[-1]], n_probes=4,
                                 seed=s).J[-1])
        q.append(measured / theory)
        notes = res.approximations
    return float(np.mean(q)), float(np.std(q, ddof=1) / math.sqrt(len(q))), notes


def test_groupnorm_resnet_agrees_with_its_mean_field_in_one_over_width():
    widths = (16, 32)
    rows = [_ratio(c, GROUPS) for c in widths]
    ext, se, _ = extrapolate(widths, [r[0] for r in rows], [r[1] for r in rows])
    assert abs(ext - 1.0) <= 4 * se, (ext, se)
    notes = rows[-1][2]
    assert notes and all("GroupNorm(4, 32)" in v for v in notes.values())


def test_groupnorm_with_too_small_groups_is_refused_by_name():
    """2 channels per group: not analysed, and the reason names the submodule and the fix."""
    model = _net(16, 8, 0)
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = cs.from_torch(model, x)
        except UnsupportedModuleError as e:
            reasons = str(e)
        else:
            reasons = " ".join(s.reason for s in res.skipped)
    assert "'1.norm'" in reasons and "8 groups of 2 channels" in reasons
    assert "use fewer groups" in reasons


# --------------------------------------------------------------------- post-activation ResNets
PI = math.pi


def GNBasicBlock(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """torchvision's BasicBlock with ``norm_layer=lambda c: nn.GroupNorm(groups, c)``,
    circular padding."""
    return TorchvisionBasicBlock(cin, cout, stride, "circular",
                                 lambda c: nn.GroupNorm(groups, c))


class GNResNet(nn.Module):
    """torchvision's ResNet layout with GroupNorm: conv → GN → ReLU stem, a stage of two
    blocks and a stride-2 stage with a conv1×1 + GN projection (Kaiming normal, fan_out)."""

    def __init__(self, width: int, groups: int = 1, layers=(2, 1)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False, padding_mode="circular")
        self.bn1 = nn.GroupNorm(groups, width)
        self.relu = nn.ReLU(inplace=True)
        blocks, cin = [], width
        for i, n in enumerate(layers):
            cout = width * 2 ** i
            for j in range(n):
                blocks.append(GNBasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1, groups))
                cin = cout
        self.layer = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.layer(self.relu(self.bn1(self.conv1(x))))


def gn_resnet(width: int, seed: int, groups: int = 1, layers=(2, 1)):
    torch.manual_seed(seed)
    model = GNResNet(width, groups, layers).double()
    g = torch.Generator().manual_seed(10_000 + seed)
    return model, torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)


def _gn_branch(stride: int = 1):
    return (cs.Conv(3, stride=stride) >> cs.LayerNorm() >> cs.Act("relu") >> cs.Conv(3)
            >> cs.LayerNorm())


def test_groupnorm_branches_match_the_two_block_closed_form():
    """relu(x + GN(W₂ relu(GN(W₁ x)))) from x⁰ ~ N(0, K₀), a unit probe.  GN makes the branch
    y ~ N(0, 1) with APJN factor g = 1/E x² (σ_w cancels).  Block 1: u₁ ~ N(0, K₀+1),
    J¹ = ½(1 + 1/K₀), E x₁² = (K₀+1)/2.  Block 2: the tangent lives where u₁ > 0, so
    J² = (1 + 1/K₀)·P(u₁>0, u₁+y₂>0) + J¹·(2/(K₀+1))·P(x₁+y₂>0), with
    P(u₁>0, u₁+y₂>0) = ¼ + asin ρ/2π, ρ = √((K₀+1)/(K₀+2)), and P(x₁+y₂>0) = ¼ + that."""
    from critsym.interop import run_blocks
    from critsym.interop.network import derive_block

    K0 = 1.7
    blk = cs.Residual(_gn_branch(), 1) >> cs.Act("relu")
    r = run_blocks([(derive_block(blk), {"sigma_w": 1.3, "sigma_b": 0.0})] * 2, K0)
    J1 = 0.5 * (1 + 1 / K0)
    both = 0.25 + math.asin(math.sqrt((K0 + 1) / (K0 + 2))) / (2 * PI)
    J2 = (1 + 1 / K0) * both + J1 * 2 / (K0 + 1) * (0.25 + both)
    assert r.K[1] == pytest.approx((K0 + 1) / 2, rel=1e-4)
    assert r.J[1] == pytest.approx(J1, rel=1e-4) and r.J[2] == pytest.approx(J2, rel=1e-4)
    # the weight scale cancels in every GroupNorm-ended branch
    r10 = run_blocks([(derive_block(blk), {"sigma_w": 13.0, "sigma_b": 0.0})] * 2, K0)
    assert np.allclose(r10.J, r.J, rtol=1e-12)


def test_branches_that_need_the_stream_offset_are_refused():
    """A BatchNorm inside a GroupNorm-ended branch divides by K − O, an offset the stream does
    not carry past a per-example normalisation: refused with the reason, as is a BatchNorm
    branch after a GroupNorm one."""
    from critsym.interop import run_blocks
    from critsym.interop.network import derive_block

    hp = {"sigma_w": 1.0, "sigma_b": 0.0}
    mixed = (cs.Residual(cs.Conv(3) >> cs.BatchNorm() >> cs.Act("relu") >> cs.Conv(3)
                         >> cs.LayerNorm(), 1) >> cs.Act("relu"))
    with pytest.raises(cs.errors.DerivationError, match="depends on the stream's per-neuron"):
        run_blocks([(derive_block(mixed), hp)], 1.0, O_C0=0.1)
    gn = cs.Residual(_gn_branch(), 1) >> cs.Act("relu")
    bn = (cs.Residual(cs.Conv(3) >> cs.BatchNorm() >> cs.Act("relu") >> cs.Conv(3)
                      >> cs.BatchNorm(), 1) >> cs.Act("relu"))
    with pytest.raises(cs.errors.DerivationError, match="one kind of normalisation"):
        run_blocks([(derive_block(gn), hp), (derive_block(bn), hp)], 1.0)


def test_post_activation_groupnorm_resnet_reads_every_stage():
    model, x = gn_resnet(8, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.from_torch(model, x)
    assert [b.path for b in res.blocks] == ["layer.0", "layer.1", "layer.2"]
    assert [s.path for s in res.skipped] == ["conv1", "bn1..relu"]
    run = res.network_run()
    assert run.laws is not None and np.all(np.isfinite(run.J)) and run.J[2] > 1


def _gn_ratios(width: int, seeds, layers=(4, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: measured/theory of J across the body (stem output → last block) and
    measured/(the product of one-block theories, each restarted with a tangent independent of
    the stream)."""
    r, r_indep = [], []
    for s in seeds:
        model, x = gn_resnet(width, s, layers=layers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cs.from_torch(model, x)
        L = len(res.blocks)
        J = res.J_theory()[-1]
        indep = math.prod(res.J_theory(start=b)[1] for b in range(L))
        m = float(cs.apjn(model, x, ["relu", res.outputs[-1]], n_probes=4, seed=s,
                          progress=False).J[-1])
        r.append(m / J)
        r_indep.append(m / indep)
    return np.array(r), np.array(r_indep)


@pytest.mark.slow
def test_post_activation_groupnorm_resnet_matches_the_stream_theory():
    """Slow (~45 s).  Four basic blocks and a stride-2 projection block, GroupNorm(1, C),
    circular padding, 16 initializations per width: measured/theory extrapolated in 1/width
    within 4 SE (measured 1.014 ± 0.054); the product of one-block theories (the tangent
    taken independent of the stream) is rejected by the same data (1.36 ± 0.07)."""
    widths = (32, 128)
    runs = [_gn_ratios(w, range(16)) for w in widths]

    def ext(k):
        m = [float(r[k].mean()) for r in runs]
        se = [float(r[k].std(ddof=1) / math.sqrt(len(r[k]))) for r in runs]
        return extrapolate(widths, m, se)[:2]

    e, se = ext(0)
    assert abs(e - 1) <= 4 * se, (e, se)
    e_i, se_i = ext(1)
    assert abs(e_i - 1) > 4 * se_i, (e_i, se_i)


def test_critical_init_of_a_groupnorm_resnet_is_refused_as_everywhere_critical():
    """GroupNorm after every conv removes the weight scale: the theory is the same at every
    σ_w (so is the model: J measured at σ_w and 10·σ_w agree to rounding), the stream grows
    without bound and J as a power of depth: no critical point, the model untouched."""
    from critsym.init import EverywhereCriticalError, critical_

    model, x = gn_resnet(8, 0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(EverywhereCriticalError, match="does not depend on sigma_w") as err:
        critical_(model, example_input=x)
    assert "power of depth" in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = cs.report(model, x, n_probes=2)
    assert "does not depend on sigma_w" in rep.critical_note
    j = cs.apjn(model, x, ["relu", "layer.2"], n_probes=2, seed=0, progress=False).J[-1]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(10.0)
    j10 = cs.apjn(model, x, ["relu", "layer.2"], n_probes=2, seed=0, progress=False).J[-1]
    assert j10 == pytest.approx(j, rel=1e-4)  # GroupNorm's eps = 1e-5 is its only scale
