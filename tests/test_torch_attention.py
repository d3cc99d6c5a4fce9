"""The torch maps of attention: stacked (n_nets networks) and exported (plain torch modules)
against direct computations from their own weights, torch's nn.MultiheadAttention, and the
deterministic regime's closed-form diagonal."""

import math

import pytest
import torch

import critsym as cs
from critsym.torch.attention import (
    GramSelfAttention,
    MultiheadSelfAttention,
    export_attention,
    stacked_attention,
)
from critsym.torch.build import network_generators
from critsym.torch.modules import BuildContext, ExportContext

D = torch.float64


def _attention(n, regime="uniform", **kw):
    """A numeric Attention operator (no hyperparameters left)."""
    kw = {"sigma_v": 1.0, "sigma_o": 1.0, **kw}
    if regime == "uniform":
        kw.pop("sigma_qk", None)
    return cs.Attention(n, regime, **kw)


def _ctx(n_nets=2, width=16, seed=0):
    return BuildContext(n_nets=n_nets, width=width, values={},
                        generators=network_generators(seed, 0, n_nets, torch.device("cpu")))


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_uniform_gives_every_token_the_token_mean_of_the_values():
    mod, out = stacked_attention(_attention(6, "uniform"), _ctx(), (6, 16))
    x = _x(2, 3, 6, 16)
    y = mod(x)
    assert out == (6, 16) and y.shape == x.shape
    v = torch.einsum("nbtc,noc->nbto", x, mod.value.weight)
    ref = torch.einsum("nbc,noc->nbo", v.mean(2), mod.output.weight)
    torch.testing.assert_close(y, ref[:, :, None].expand_as(y))


def test_deterministic_is_the_softmax_of_the_scaled_gram_matrix():
    op = _attention(5, "deterministic", sigma_qk=1.5, tau=2.0)
    mod, _ = stacked_attention(op, _ctx(), (5, 16))
    assert mod.beta == pytest.approx(1.5**2 / 2.0)
    x = _x(2, 1, 5, 16)
    A = torch.softmax((1.5**2 / 2.0) * (x @ x.transpose(-1, -2)) / 16, dim=-1)
    v = torch.einsum("nbtc,noc->nbto", x, mod.value.weight)
    ref = torch.einsum("nbtc,noc->nbto", A @ v, mod.output.weight)
    torch.testing.assert_close(mod(x), ref)


def test_deterministic_diagonal_closed_form_at_large_width():
    """Exchangeable tokens x_a = √p̃ m + √(q̃−p̃) e_a at width 20000: A_aa → 1/(1 + (n−1)
    e^{−β(q̃−p̃)}), the O(1/√C) Gram fluctuations being far below the tolerance."""
    n, C, q, p, beta = 4, 20000, 1.0, 0.3, 2.0
    op = _attention(n, "deterministic", sigma_qk=math.sqrt(beta), tau=1.0)
    mod, _ = stacked_attention(op, _ctx(n_nets=1, width=8), (n, C))
    g = torch.Generator().manual_seed(3)
    x = math.sqrt(p) * torch.randn(1, 1, 1, C, generator=g, dtype=D) + \
        math.sqrt(q - p) * torch.randn(1, 1, n, C, generator=g, dtype=D)
    A = mod.attention_matrix(x)[0, 0]
    ref = 1 / (1 + (n - 1) * math.exp(-beta * (q - p)))
    assert float(A.diagonal().mean()) == pytest.approx(ref, abs=0.01)
    torch.testing.assert_close(A.sum(-1), torch.ones(n, dtype=D))


@pytest.mark.parametrize("heads,tau", [(1, 1.0), (4, 0.5)])
def test_standard_equals_torch_multihead_attention_with_the_same_weights(heads, tau):
    """Logits (W_Q x_a)·(W_K x_b)/(τ√d_h) per head: torch's MHA with W_Q/τ."""
    op = _attention(7, "standard", sigma_qk=1.3, heads=heads, tau=tau)
    mod, _ = stacked_attention(op, _ctx(n_nets=2), (7, 16))
    x = _x(2, 3, 7, 16)
    y = mod(x)
    for i in range(2):
        mha = torch.nn.MultiheadAttention(16, heads, bias=False, batch_first=True, dtype=D)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([mod.query.weight[i] / tau, mod.key.weight[i],
                                                mod.value.weight[i]]))
            mha.out_proj.weight.copy_(mod.output.weight[i])
        torch.testing.assert_close(y[i], mha(x[i], x[i], x[i], need_weights=False)[0])


def test_weight_scales_follow_the_sigmas():
    """Per-entry variances times fan_in: σ_Q² = σ_K² = σ_QK (σ_Q = σ_K = √σ_QK), σ_v², σ_o²."""
    op = _attention(4, "standard", sigma_qk=2.25, sigma_v=0.7, sigma_o=1.6)
    mod, _ = stacked_attention(op, _ctx(n_nets=4, width=64), (4, 64))
    for w, var in ((mod.query.weight, 2.25), (mod.key.weight, 2.25), (mod.value.weight, 0.49),
                   (mod.output.weight, 1.6**2)):
        est = float((w * w).mean() * 64)
        assert est == pytest.approx(var, rel=4 * math.sqrt(2 / w.numel()))


def test_forward_mode_runs_through_the_stacked_map():
    for regime in ("uniform", "deterministic", "standard"):
        mod, _ = stacked_attention(_attention(5, regime, sigma_qk=1.0, heads=2), _ctx(),
                                   (5, 16))
        x = _x(2, 1, 5, 16)
        _, t = torch.func.jvp(mod, (x,), (torch.ones_like(x),))
        assert torch.isfinite(t).all()


def _export(op, width=16, seed=0):
    ctx = ExportContext(width=width, values={}, generator=torch.Generator().manual_seed(seed))
    return export_attention(op, ctx, width)


def test_export_uniform_is_multihead_attention_with_zero_query_and_key():
    mod, fan = _export(_attention(6, "uniform", heads=2))
    assert isinstance(mod, MultiheadSelfAttention) and fan == 16 and mod.heads == 2
    parts = mod.parts()
    assert float(parts["query"].abs().max()) == 0 and float(parts["key"].abs().max()) == 0
    x = _x(3, 6, 16)
    v = x @ parts["value"].T
    ref = (v.mean(1, keepdim=True) @ parts["output"].T).expand(3, 6, 16)
    torch.testing.assert_close(mod(x), ref)


def test_export_deterministic_is_scaled_dot_product_attention_on_the_gram_matrix():
    op = _attention(6, "deterministic", sigma_qk=1.2, tau=0.5)
    mod, _ = _export(op)
    assert isinstance(mod, GramSelfAttention)
    x = _x(3, 6, 16)
    A = torch.softmax((1.2**2 / 0.5) * (x @ x.transpose(-1, -2)) / 16, dim=-1)
    ref = (A @ (x @ mod.value.weight.T)) @ mod.output.weight.T
    torch.testing.assert_close(mod(x), ref)


def test_export_standard_weight_scales_and_biases():
    op = _attention(6, "standard", sigma_qk=2.0, sigma_v=0.8, sigma_o=1.1, heads=4,
                         sigma_b_v=0.3, sigma_b_o=0.2)
    mod, _ = _export(op, width=64)
    parts = mod.parts()
    for name, var in (("query", 2.0), ("key", 2.0), ("value", 0.64), ("output", 1.21)):
        w = parts[name]
        assert float((w * w).mean() * 64) == pytest.approx(var, rel=4 * math.sqrt(2 / w.numel()))
    assert float(parts["query_bias"].abs().max()) == 0
    assert float(parts["value_bias"].std()) == pytest.approx(0.3, rel=0.5)
    assert torch.isfinite(mod(_x(2, 6, 64))).all()


def test_exported_modules_work_with_apjn_in_forward_mode():
    for regime in ("uniform", "deterministic", "standard"):
        mod, _ = _export(_attention(6, regime, sigma_qk=1.0, heads=2))
        model = torch.nn.Sequential(torch.nn.Identity(), mod)
        res = cs.apjn(model, _x(2, 6, 16), ["0", "1"], n_probes=4, token_axis=-2)
        assert res.note == "" and res.k is not None


def test_bad_settings_are_clear_errors():
    with pytest.raises(cs.CritsymError, match="heads"):
        stacked_attention(_attention(4, "standard", sigma_qk=1.0, heads=3), _ctx(), (4, 16))
    with pytest.raises(cs.CritsymError, match="tokens, channels"):
        stacked_attention(_attention(4), _ctx(), (16,))
    with pytest.raises(cs.CritsymError, match="n_tokens=4"):
        stacked_attention(_attention(4), _ctx(), (5, 16))
    with pytest.raises(cs.CritsymError, match="MultiheadAttention"):
        ctx = ExportContext(width=16, values={}, generator=torch.Generator())
        export_attention(_attention(4), ctx, 8)
