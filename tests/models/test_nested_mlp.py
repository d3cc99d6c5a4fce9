"""``nn.Sequential`` of ``nn.Sequential(Linear, ReLU)`` blocks (Linear before its activation,
each pair its own module) at torch's default initialization: read as the ordinary sequence
ReLU >> Linear per layer (the input layer a stem, the last ReLU a skipped head), theory
J^{0,L} against the APJN measured on the model itself, and ``critical_``."""

import math
import warnings

import torch
from _model_cases import body, body_theory

import critsym as cs
from critsym.repro import models as M

NAME = "nested Linear → act stack"


def test_nested_pairs_read_as_one_sequence():
    case, model, x, blocks, approx, b = body(NAME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.from_torch(model, example_input=x)
    assert [s.path for s in res.skipped] == ["4.1"]  # the last ReLU: a head
    assert len(blocks) == 4 and approx == {}
    for blk in blocks:
        act, lin = blk.ops
        assert act == cs.Act("relu") and isinstance(lin, cs.Linear)
        assert abs(float(lin.sigma_w) - 3 ** -0.5) < 0.03  # U(±1/√fan_in): σ_w² = 1/3


def test_theory_against_measured_and_critical_init():
    case, model, x, blocks, approx, b = body(NAME)
    J = body_theory(b)
    assert 0.3 * 6.0 ** -4 < J < 3 * 6.0 ** -4  # χ = σ_w²/2 ≈ 1/6 per layer
    c = M.compare(case, seeds=12)
    assert abs(c.z) <= 4, c
    from critsym.init import critical_

    point = critical_(model, example_input=x, generator=torch.Generator().manual_seed(0))
    assert abs(point.value - math.sqrt(2)) < 1e-6  # ReLU: σ_w* = √2
    m, se = M.after_critical(case, seeds=8)
    assert abs(m - 1) <= 4 * se, (m, se)
