"""A flat ``nn.Sequential(Linear, ReLU, Linear, …)`` at torch's default initialization: imported,
its body (ReLU >> Linear per layer, each with its own σ̂) analysed, theory J^{0,L} against the
APJN measured on the model itself."""

import warnings

from _model_cases import body, body_theory

import critsym as cs
from critsym.repro import models as M


def test_imports_and_reads_each_layer():
    case, model, x, blocks, approx, b = body("flat nn.Sequential MLP")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.from_torch(model, example_input=x)
    assert res.arch is not None
    assert len(blocks) == 4 and approx == {}
    for b in blocks:
        act, lin = b.ops
        assert act == cs.Act("relu") and isinstance(lin, cs.Linear)
        # torch's default Linear init: U(±1/√fan_in) → σ_w² = 1/3
        assert abs(float(lin.sigma_w) - 3 ** -0.5) < 0.03


def test_theory_against_measured_apjn():
    case, model, x, blocks, approx, b = body("flat nn.Sequential MLP")
    J = body_theory(b)
    # torch's default init is far from critical for ReLU: χ = σ_w²/2 ≈ 1/6 per layer
    assert 0.3 * 6.0 ** -4 < J < 3 * 6.0 ** -4
    c = M.compare(case, seeds=12)
    assert abs(c.z) <= 4, c
