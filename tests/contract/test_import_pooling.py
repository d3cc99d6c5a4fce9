"""from_torch pools per-layer σ estimates only where they agree within their sampling errors."""

import warnings

import pytest
import torch
from torch import nn

import critsym as cs
from critsym.errors import UnsupportedModuleError
from critsym.importer import PoolingWarning


def _mlp(sigmas, width=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for s in sigmas:
        lin = nn.Linear(width, width, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, width, generator=g, dtype=torch.float64)
                             * s / width**0.5)
            lin.bias.copy_(torch.randn(width, generator=g, dtype=torch.float64) * 0.1)
        layers.append(nn.Sequential(nn.Tanh(), lin))
    return nn.Sequential(*layers)


def test_layers_with_different_sigma_are_not_pooled():
    """σ_w = 0.63 and 1.26 in alternate layers: refused with a warning, not pooled to ~1.0."""
    model = _mlp([0.63, 1.26, 0.63, 1.26])
    with pytest.warns(PoolingWarning, match="sigma_w differs between layers"):
        imp = cs.from_torch(model)
    assert not imp.pooled and not imp.agreement["sigma_w"].agree
    assert imp.agreement["sigma_b"].agree
    assert imp.block is None
    per = [v[0] for v in imp.layers.values()]
    assert per[0] == pytest.approx(0.63, rel=0.05) and per[1] == pytest.approx(1.26, rel=0.05)
    with pytest.raises(UnsupportedModuleError, match="sigma_w differs"):
        imp.theory()
    with pytest.raises(UnsupportedModuleError, match="sigma_w differs"):
        _ = imp.values


def test_layers_alike_are_pooled_silently():
    model = _mlp([1.1] * 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolingWarning)
        imp = cs.from_torch(model)
    assert imp.pooled and imp.block == cs.Act("tanh") >> cs.Linear()
    assert abs(imp.sigma_w.value - 1.1) <= 4 * imp.sigma_w.se


def test_false_alarm_rate_is_small():
    """Over 40 models initialised alike, the χ² check (threshold p = 1e-4) never refuses."""
    refused = 0
    for seed in range(40):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PoolingWarning)
            imp = cs.from_torch(cs.to_torch_model(cs.mlp_block("relu"), 24, 3, seed=seed,
                                                  sigma_w=1.2, sigma_b=0.5))
        refused += not imp.pooled
    assert refused == 0


def test_a_small_difference_is_detected_at_large_width():
    """5 % apart at width 512 (SE per layer ≈ 0.3 %): refused."""
    with pytest.warns(PoolingWarning):
        imp = cs.from_torch(_mlp([1.0, 1.05], width=512))
    assert not imp.pooled
