"""Pre-activation ResNets with GroupNorm(G, C): read as the mean field of GroupNorm(1, C)
(labelled), measured against the network theory in 1/width; too small groups refused."""

import math
import warnings

import numpy as np
import torch
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
