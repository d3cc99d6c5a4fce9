"""Theory vs Monte Carlo of real torch networks: K^l, J^{0,l}, c^l at depth 10.

For tanh, relu, erf and gelu blocks in each of vanilla, LN-pre, LN-post and residual (μ = 1 and
μ = 0.7, with and without LN-pre) form.  The rule (documented in critsym.torch.validate): two
widths, linear extrapolation in 1/N with propagated Monte Carlo errors, every |z| ≤ 4.  No
hand-tuned slack.  Fixed seeds.
"""

from __future__ import annotations

import pytest
import torch

import critsym as cs
from critsym.torch.validate import validate

ACTS = ["tanh", "relu", "erf", "gelu"]
FORMS = {
    "vanilla": dict(layernorm=None, residual_mu=None),
    "ln_pre": dict(layernorm="pre", residual_mu=None),
    "ln_post": dict(layernorm="post", residual_mu=None),
    "res_mu1": dict(layernorm=None, residual_mu=1.0),
    "res_mu0.7": dict(layernorm=None, residual_mu=0.7),
    "res_mu1_ln_pre": dict(layernorm="pre", residual_mu=1.0),
    "res_mu0.7_ln_pre": dict(layernorm="pre", residual_mu=0.7),
}


def hyper(act: str, form: str) -> dict:
    """Near-critical settings where K and J stay O(1)-ish over 10 layers."""
    if form.startswith("res"):
        return dict(sigma_w=0.6, sigma_b=0.1)
    return dict(sigma_w=1.45 if act in ("relu", "gelu") else 1.3, sigma_b=0.2)


CASES = [(a, f) for f in FORMS for a in ACTS]


@pytest.mark.parametrize("act,form", CASES, ids=[f"{a}-{f}" for a, f in CASES])
def test_theory_matches_simulation(act, form):
    torch.manual_seed(0)
    arch = cs.mlp_block(act, **FORMS[form])
    res = validate(arch, widths=(64, 128), depth=10, n_nets=48, n_probes=2, seed=1,
                   device="cpu", **hyper(act, form))
    assert res.passed, res.to_text()
