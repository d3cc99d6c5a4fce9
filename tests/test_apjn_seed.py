"""critsym.apjn draws its probes from its own generator: the default seed does not replay the
stream that ``torch.manual_seed(0)`` gave the model's weights, and the global stream is left
untouched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import critsym as cs
from critsym.errors import SimulationError
from critsym.torch.apjn import probe_seed

N, P = 64, 32


def _model_from_global_stream() -> nn.Module:
    """Identity then one Linear whose weights are the first N² draws of torch.manual_seed(0)."""
    torch.manual_seed(0)
    W = torch.randn(N, N, dtype=torch.float64) / math.sqrt(N)
    m = nn.Sequential(nn.Identity(), nn.Linear(N, N, bias=False, dtype=torch.float64))
    with torch.no_grad():
        m[1].weight.copy_(W)
    return m


def test_default_seed_is_unbiased_after_manual_seed_0():
    # With probes from a generator seeded 0 each probe was a row of W: J came out ≈ 2, not 1.
    m = _model_from_global_stream()
    x = torch.linspace(-1, 1, N, dtype=torch.float64)[None]
    est = cs.apjn(m, x, ["0", "1"], n_probes=P)
    exact = cs.apjn(m, x, ["0", "1"], mode="exact")
    z = (est.J[1] - exact.J[1]) / est.J_se[1]
    assert abs(z) < 4, (est.J, est.J_se, exact.J)


def test_probes_leave_the_global_stream_alone():
    m = _model_from_global_stream()
    x = torch.ones(1, N, dtype=torch.float64)
    torch.manual_seed(123)
    cs.apjn(m, x, ["0", "1"], n_probes=4)
    after = torch.randn(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.randn(3))


def test_probe_seed_is_a_hash_not_the_seed():
    seeds = [probe_seed(s) for s in range(50)]
    assert len(set(seeds)) == 50
    assert all(ps not in range(1000) for ps in seeds)
    assert probe_seed(7) == probe_seed(7)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    m = _model_from_global_stream()
    with pytest.raises(SimulationError, match="seed"):
        cs.apjn(m, torch.ones(1, N, dtype=torch.float64), ["0", "1"], seed=seed)
