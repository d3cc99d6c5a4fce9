"""Hugging Face GPT-2 from a tiny config: Conv1D (a Linear with its weight transposed) read
with the initialization's σ̂'s (N(0, 0.02²), the residual projections c_proj scaled by
1/√(2·n_layer)), the fused query/key/value weight split, the causal mask labelled; its
tanh-approximate GELU (``gelu_new``) is read when critsym's activation table has it and
refused naming the submodule otherwise."""

import math
import warnings

import pytest
from _model_cases import body, sigma_hat

import critsym as cs
from critsym.activations import REGISTRY
from critsym.errors import UnsupportedModuleError
from critsym.importer import Reader
from critsym.repro import models as M


def test_conv1d_reads_as_linear_with_the_initialization():
    model, _ = M.gpt2(0)
    reader = Reader({})
    for name, std in (("h.0.mlp.c_fc", 0.02), ("h.0.mlp.c_proj", 0.02 / math.sqrt(2 * 2))):
        conv = dict(model.named_modules())[name]
        lin = reader.map(conv, name)
        s, se = sigma_hat(conv.weight.t())  # Conv1D stores (in, out)
        assert float(lin.sigma_w) == pytest.approx(s, rel=1e-12)
        assert abs(s - std * math.sqrt(conv.nx)) <= 4 * se


def test_layers_read_or_refused_at_the_tanh_gelu():
    if "gelu_tanh" not in REGISTRY:
        model, x = M.gpt2(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cs.from_torch(model, example_input=x)
        reasons = " ".join(s.reason for s in res.skipped)
        assert "'h.0.mlp.act'" in reasons and "activation table" in reasons, res.skipped
        with pytest.raises(UnsupportedModuleError, match=r"'mlp\.act'.*activation table"):
            body("GPT-2")
        return
    case, model, x, blocks, approx, b = body("GPT-2")
    assert "causal" in approx["h.0.attn"]
    att = blocks[0].ops[0].branch.ops[1]
    d = M.WIDTH
    w = model.h[0].attn.c_attn.weight.t()  # (3d, d): queries, keys, values
    sv, _ = sigma_hat(w[2 * d:])
    assert float(att.sigma_v) == pytest.approx(sv, rel=1e-12)
    assert blocks[0].ops[1].branch.ops[2].name == "gelu_tanh"
