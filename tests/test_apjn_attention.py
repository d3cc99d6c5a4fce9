"""critsym.apjn on attention models (nn.MultiheadAttention, nn.TransformerEncoder) in its
default forward mode, the two-part Jacobian (j, k) it measures with token_axis, its reverse-mode
fallback for models without forward-mode AD, and its progress bars."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
from critsym.torch.attention import MultiheadSelfAttention
from critsym.torch.estimators import token_norms

T, E = 5, 16


def _mha(seed=0, heads=2):
    torch.manual_seed(seed)
    attn = nn.MultiheadAttention(E, heads, batch_first=True, dtype=torch.float64)
    return MultiheadSelfAttention(attn, "standard").eval()


def _encoder(seed=0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(E, 2, 32, dropout=0.0, batch_first=True,
                                       dtype=torch.float64)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def _x(B=3, seed=1):
    return torch.randn(B, T, E, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _within(a, b, se, z=4.0):
    return np.all(np.abs(np.asarray(a) - np.asarray(b)) <= z * np.asarray(se))


def test_multihead_attention_default_mode_matches_exact():
    model = nn.Sequential(nn.Linear(E, E, dtype=torch.float64), _mha(), nn.Tanh())
    x = _x()
    exact = cs.apjn(model, x, ["0", "1", "2"], mode="exact")
    res = cs.apjn(model, x, ["0", "1", "2"], n_probes=64, seed=2)
    assert res.mode == "jvp" and res.note == ""
    assert _within(res.J[1:], exact.J[1:], res.J_se[1:])


def test_transformer_encoder_default_mode_matches_exact_and_vjp():
    model = _encoder()
    x = _x()
    layers = ["layers.0", "layers.1"]
    exact = cs.apjn(model, x, layers, mode="exact")
    fwd = cs.apjn(model, x, layers, n_probes=64, seed=3)
    rev = cs.apjn(model, x, layers, mode="vjp", n_probes=64, seed=3)
    assert fwd.note == ""
    assert _within(fwd.J[1], exact.J[1], fwd.J_se[1])
    assert _within(rev.J[0], exact.J[1], rev.J_se[0])  # J^{layers.0, layers.1} both ways


def _token_map(seed=0):
    """h ↦ M h on (T, E) with a fixed random (T·E) × (T·E) matrix M."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(T * E, T * E, generator=g, dtype=torch.float64) / math.sqrt(T * E)
    M = M + 0.5 * torch.eye(T * E, dtype=torch.float64)

    class Lin(nn.Module):
        def forward(self, h):
            return (h.reshape(h.shape[0], -1) @ M.T).reshape(h.shape)

    return nn.Sequential(nn.Identity(), Lin()), M


def _j_k_of(M):
    """j and k from the explicit Jacobian blocks M_a = rows of token a (d × T·E)."""
    blocks = M.reshape(T, E, T * E)
    j = float((M * M).sum()) / (T * E)
    gram = torch.einsum("aij,bij->ab", blocks, blocks)
    k = float(gram.sum() - gram.diagonal().sum()) / (T * T * E)
    return j, k


def test_token_norms_exact_probes_give_j_and_k():
    _, M = _token_map()
    j, k = _j_k_of(M)
    V = cs.torch.make_probes("exact", 0, (1, T, E))  # √F e_i, F = T·E
    t = (V.reshape(V.shape[0], -1) @ M.T).reshape(V.shape)
    js, ks = token_norms(t)
    assert float(js.mean()) == pytest.approx(j, rel=1e-12)
    assert float(ks.mean()) == pytest.approx(k, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("mode", ["jvp", "vjp", "exact"])
def test_apjn_token_axis_gives_k(mode):
    model, M = _token_map()
    j, k = _j_k_of(M)
    res = cs.apjn(model, _x(B=2), ["0", "1"], mode=mode, n_probes=200, token_axis=-2, seed=4)
    idx = 1 if mode != "vjp" else 0  # J^{0,1}
    if mode == "exact":
        assert res.J[idx] == pytest.approx(j, rel=1e-10)
        assert res.k[idx] == pytest.approx(k, rel=1e-8, abs=1e-12)
    else:
        assert _within(res.J[idx], j, res.J_se[idx]) and _within(res.k[idx], k, res.k_se[idx])
        assert res.k_se[idx] > 0
    if mode == "jvp":  # J^{0,0} is the identity: k = 0
        assert _within(res.k[0], 0.0, res.k_se[0])


def test_k_of_uniform_attention_is_measurable():
    """h ↦ h + mean_tokens(h) (uniform mixing, no weights): the Jacobian row blocks are
    J_a = (e_a + 1/n)ᵀ ⊗ I, so ‖J_a‖² = d(1 + 3/n) and ⟨J_a, J_b⟩ = 3d/n (a ≠ b):
    j = 1 + 3/n, k = 3(n − 1)/n² (exact mode)."""
    class Mix(nn.Module):
        def forward(self, h):
            return h + h.mean(-2, keepdim=True)

    model = nn.Sequential(nn.Identity(), Mix())
    res = cs.apjn(model, _x(B=2), ["0", "1"], mode="exact", token_axis=1)
    n = T
    assert res.J[1] == pytest.approx(1 + 3 / n, rel=1e-12)
    assert res.k[1] == pytest.approx(3 * (n - 1) / n**2, rel=1e-12)


class _NoJvp(torch.autograd.Function):
    """tanh with a reverse rule only (no jvp)."""

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class _Tanh(nn.Module):
    def forward(self, x):
        return _NoJvp.apply(x)


def test_model_without_forward_ad_falls_back_to_reverse_mode_with_a_note():
    model = nn.Sequential(nn.Linear(E, E, dtype=torch.float64), _mha(), _Tanh(),
                          nn.Linear(E, E, dtype=torch.float64))
    x = _x()
    layers = ["0", "2", "3"]
    exact = cs.apjn(model, x, layers, mode="exact", token_axis=-2)
    res = cs.apjn(model, x, layers, n_probes=64, token_axis=-2, seed=5)
    assert "reverse mode" in res.note and res.mode == "jvp"
    assert _within(res.J, exact.J, np.maximum(res.J_se, 1e-12))
    assert _within(res.k, exact.k, np.maximum(res.k_se, 1e-12))


def test_probe_chunks_give_the_same_numbers_and_progress_bar(capsys):
    model = nn.Sequential(nn.Linear(E, E, dtype=torch.float64), _mha(), nn.Tanh())
    x = _x()
    one = cs.apjn(model, x, ["0", "2"], n_probes=8, seed=6, token_axis=-2)
    chunked = cs.apjn(model, x, ["0", "2"], n_probes=8, seed=6, token_axis=-2, probe_chunk=3,
                      progress=True)
    np.testing.assert_allclose(chunked.J, one.J, rtol=1e-12)
    np.testing.assert_allclose(chunked.k, one.k, rtol=1e-10)
    assert "8/8" in capsys.readouterr().err
    cs.apjn(model, x, ["0", "2"], n_probes=8, seed=6, probe_chunk=3, progress=False)
    assert capsys.readouterr().err == ""


def test_token_axis_errors():
    model = nn.Sequential(nn.Identity(), nn.Tanh())
    with pytest.raises(cs.CritsymError, match="token_axis"):
        cs.apjn(model, _x(), ["0", "1"], token_axis=0)
    with pytest.raises(cs.CritsymError, match="batch_axis=0"):
        cs.apjn(model, _x()[0], ["0", "1"], token_axis=-2, batch_axis=None)


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_token_overlap_of_shards_merges_to_the_serial_run(mode):
    model = nn.Sequential(nn.Linear(E, E, dtype=torch.float64), _mha(), nn.Tanh())
    x = _x(B=5)

    def run(a, b):
        return cs.apjn(model, x[a:b], ["0", "2"], mode=mode, n_probes=3, seed=7,
                       token_axis=-2, networks=range(a, b))

    whole = run(0, 5)
    merged = cs.APJNResult.concat([run(2, 5), run(0, 2)])
    np.testing.assert_allclose(merged.J, whole.J, rtol=1e-12)
    np.testing.assert_allclose(merged.k, whole.k, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(merged.k_se, whole.k_se, rtol=1e-10, atol=1e-14)


def test_apjn_on_an_exported_critsym_transformer_stack():
    """cs.to_torch_model of pre-LN attention blocks (nn.MultiheadAttention inside) in apjn's
    default forward mode, with k; the forward-mode numbers agree with reverse mode."""
    blk = cs.Residual(cs.LayerNorm() >> cs.Attention(T, heads=2), 1) >> cs.Residual(
        cs.LayerNorm() >> cs.Linear() >> cs.Act("relu") >> cs.Linear(), 1)
    model = cs.to_torch_model(blk, E, 3, seed=1, sigma_v=1.0, sigma_o=1.0, sigma_w=1.2,
                              sigma_b=0.0)
    x = _x(B=4)
    fwd = cs.apjn(model, x, ["0", "2"], n_probes=32, token_axis=-2, seed=8)
    rev = cs.apjn(model, x, ["0", "2"], mode="vjp", n_probes=32, token_axis=-2, seed=8)
    assert fwd.note == "" and rev.note == ""
    se = math.hypot(fwd.J_se[1], rev.J_se[0])
    assert abs(fwd.J[1] - rev.J[0]) <= 4 * se
    se_k = math.hypot(fwd.k_se[1], rev.k_se[0])
    assert abs(fwd.k[1] - rev.k[0]) <= 4 * se_k
