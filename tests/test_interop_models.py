"""Whole models in: stem → body → head, the body a sequence of blocks that may differ, and the
network theory J^{0,L} across the body against the APJN measured on the model itself.

Measured vs theory: for each width, independent models (seeds); per model the ratio
measured J / theory J between the first and last block outputs (the theory at that model's
own estimated σ's and body input); the mean ratio at each width is extrapolated in 1/N
(critsym.validate's rule) and must be 1 within 4 standard errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _indep import gauss_E, sech4, tanh2
from _torch_models import (
    Mixer,
    MixerBlock,
    PreLNResidual,
    RankDependent,
    ResNet,
    ViT,
    flat_mlp,
    nested_mlp,
)
from torch import nn

import critsym as cs
from critsym.importer import PoolingWarning
from critsym.torch.validate import extrapolate

Z_MAX = 4.0


def ratio_z(make, widths, seeds, batch_axis=0, theory=None, first=0):
    """(extrapolated mean of measured/theory J between the first and last block outputs, its
    SE, z against 1); ``theory(imp, start) -> J^{start, b}`` replaces the network theory;
    ``first``: the span starts at the output of that block (index among those with one)."""
    means, ses = [], []
    for n in widths:
        r = []
        for seed in seeds:
            torch.manual_seed(seed)
            model, x = make(n)
            model, x = model.double(), x.double()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PoolingWarning)
                imp = cs.from_torch(model, x)
            outs = imp.outputs
            idx = [i for i, o in enumerate(outs) if o is not None]
            i0, i1 = idx[first], idx[-1]
            J = imp.J_theory(start=i0 + 1) if theory is None else theory(imp, i0 + 1)
            meas = cs.apjn(model, x, [outs[i0], outs[i1]], n_probes=4, seed=seed,
                           batch_axis=batch_axis)
            r.append(meas.J[-1] / J[i1 - i0])
        means.append(np.mean(r))
        ses.append(np.std(r, ddof=1) / math.sqrt(len(r)))
    ext, se, _ = extrapolate(widths, means, ses)
    return ext, se, (ext - 1) / se


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("act,name", [(nn.ReLU, "relu"), (nn.Tanh, "tanh")])
def test_flat_mlp_is_an_ordinary_sequence(act, name):
    """Linear → act → Linear …: the input layer, then act → Linear blocks; a trailing
    activation is the head (it leaves no preactivation), reported by name."""
    torch.manual_seed(0)
    model = flat_mlp(16, act, depth=3, trailing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoolingWarning)  # the input layer's σ_b differs
        imp = cs.from_torch(model, torch.randn(8, 12))
    assert [b.path for b in imp.blocks] == ["0", "1..2", "3..4", "5..6"]
    assert imp.blocks[0].block == cs.Linear()
    assert all(b.block == cs.Act(name) >> cs.Linear() for b in imp.blocks[1:])
    assert imp.outputs == ["0", "2", "4", "6"]
    assert [b.width for b in imp.blocks] == [16] * 4
    (skip,) = imp.skipped
    assert skip.part == "head" and skip.path == "7" and "Gaussian preactivation" in skip.reason
    assert imp.capture == {"": "torch.fx"}


def test_nested_linear_act_stacks():
    torch.manual_seed(0)
    imp = cs.from_torch(nested_mlp(16, nn.Tanh, depth=3), torch.randn(8, 12))
    assert [b.path for b in imp.blocks] == ["0.0", "0.1..1.0", "1.1..2.0", "2.1..3"]
    assert imp.outputs == ["0.0", "1.0", "2.0", "3"] and not imp.skipped


def test_blocks_that_differ_run_with_their_own_values():
    """Layers of different widths and σ_w: each block keeps its own estimate, the pooling
    refusal is said (PoolingWarning, pooled False), and the network theory equals the closed
    form J = σ_0² Π_l σ_l²/2 (ReLU) and, for tanh, an independent quadrature of
    K' = σ_w² E[tanh²] + σ_b², χ = σ_w² E[sech⁴]."""
    torch.manual_seed(3)
    dims, sig = [10, 300, 200, 400, 300], [1.0, 1.6, 1.2, 1.4]
    model = nn.Sequential(nn.Linear(dims[0], dims[1], bias=False))
    for i in range(1, 4):
        model.append(nn.ReLU())
        model.append(nn.Linear(dims[i], dims[i + 1], bias=False))
    with torch.no_grad():
        for lin, s in zip(model[::2], sig):
            lin.weight.normal_(0, s / math.sqrt(lin.in_features))
    with pytest.warns(PoolingWarning, match="sigma_w differs"):
        imp = cs.from_torch(model, torch.randn(64, 10))
    assert not imp.pooled and imp.block is None
    est = [b.values["sigma_w"] for b in imp.blocks]
    for i, (b, s) in enumerate(zip(imp.blocks, sig)):
        se = s / math.sqrt(2 * dims[i] * dims[i + 1])  # Gaussian weights: σ/√(2n)
        assert abs(b.values["sigma_w"] - s) <= 4 * se
    assert [b.width for b in imp.blocks] == dims[1:]
    J = imp.J_theory()
    ref = np.cumprod([1.0, est[0] ** 2] + [e ** 2 / 2 for e in est[1:]])
    assert np.allclose(J, ref, rtol=1e-12)

    # tanh with biases: K-dependent χ, checked by quadrature block by block
    torch.manual_seed(4)
    model = nn.Sequential(nn.Tanh(), nn.Linear(50, 60), nn.Tanh(), nn.Linear(60, 70))
    with torch.no_grad():
        model[1].weight.normal_(0, 1.3 / math.sqrt(50))
        model[3].weight.normal_(0, 0.8 / math.sqrt(60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoolingWarning)
        imp = cs.from_torch(model, 1.5 * torch.randn(256, 50))
    run = imp.network_run()
    K, J = imp.body_input.K.value, 1.0
    for b, Kb, Jb in zip(imp.blocks, run.K[1:], run.J[1:]):
        sw, sb = b.values["sigma_w"], b.values["sigma_b"]
        J *= sw**2 * gauss_E(sech4, K)
        K = sw**2 * gauss_E(tanh2, K) + sb**2
        assert Kb == pytest.approx(K, rel=1e-9) and Jb == pytest.approx(J, rel=1e-9)


def test_pooling_within_a_block_only_where_estimates_agree():
    """A ViT-style MLP whose two Linear layers have σ_w 0.63 and 1.26: that block keeps its
    numbers (not pooled), a block whose layers agree gets the symbols; the theory runs."""
    torch.manual_seed(0)
    d = 64
    model = nn.Sequential(PreLNResidual(d), PreLNResidual(d))
    with torch.no_grad():
        model[0].fc1.weight.normal_(0, 0.63 / math.sqrt(d))
        model[0].fc2.weight.normal_(0, 1.26 / math.sqrt(d))
    with pytest.warns(PoolingWarning):
        imp = cs.from_torch(model, torch.randn(16, d))
    b0, b1 = imp.blocks
    assert not b0.pooled and b0.block == b0.arch and b0.values == {}
    assert not b0.agreement["sigma_w"].agree
    assert b1.pooled and b1.block.hyperparameters() == {cs.sigma_w, cs.sigma_b}
    assert np.isfinite(imp.J_theory()).all()


def test_resnet_like_with_stem_head_and_batchnorm():
    torch.manual_seed(0)
    imp = cs.from_torch(ResNet(8, depth=2), torch.randn(16, 3, 16, 16))
    stem = [s for s in imp.skipped if s.part == "stem"]
    head = [s for s in imp.skipped if s.part == "head"]
    assert stem == []  # the strided stem conv is a Gaussian map of the image: a body block
    assert [s.path for s in head] == ["bn2..pool", "<model>", "fc"]
    assert "pool_theory" in head[0].reason and "separates it from the body" in head[2].reason
    assert [b.path for b in imp.blocks] == ["conv1", "bn1..layer1.0", "layer1.1"]
    assert imp.outputs == ["conv1", "layer1.0", "layer1.1"]
    conv, first, second = (b.block for b in imp.blocks)
    assert conv.stride == 2 and conv.padding == "circular"
    assert first.ops[0] == cs.BatchNorm() and first.ops[1] == second
    assert second.branch.ops[0] == cs.BatchNorm() and second.mu == 1
    assert imp.body_input.source == "example_input" and imp.body_input.O_C is not None
    assert [b.width for b in imp.blocks] == [8, 8, 8]


def test_mixer_like_model_with_rearranges_in_forward():
    torch.manual_seed(0)
    imp = cs.from_torch(Mixer(16, 4, 16, depth=2), torch.randn(4, 3, 16, 16))
    reasons = {s.path: s.reason for s in imp.skipped}
    assert "odd square kernel" in reasons["stem"]
    assert [s.part for s in imp.skipped] == ["stem", "stem", "stem", "head", "head"]
    assert "regroups the features" in imp.skipped[1].reason
    assert "transpose at the body's input" in imp.skipped[2].reason
    assert "mean" in imp.skipped[3].reason
    ops = [b.block for b in imp.blocks]
    token = cs.Residual(cs.LayerNorm() >> cs.Transpose() >> cs.Linear() >> cs.Act("gelu")
                        >> cs.Linear() >> cs.Transpose(), 1)
    channel = cs.Residual(cs.LayerNorm() >> cs.Linear() >> cs.Act("gelu") >> cs.Linear(), 1)
    assert ops == [token, channel, token, channel, cs.LayerNorm()]
    assert imp.outputs == [None, "blocks.0", None, "blocks.1", "norm"]
    bi = imp.body_input
    assert bi.O_T is not None and bi.O_C is not None and 0 <= bi.O_T.value <= bi.K.value


class _TwoArguments(nn.Module):
    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(3, 3, 3)

    def forward(self, x):
        return self.bil(x, x)


def test_vit_like_model_with_attention_in_forward():
    """Patchify stem, rearrange and a position embedding (skipped, with reasons), pre-LN
    blocks written in forward around critsym's exported attention (a token body), a head."""
    torch.manual_seed(0)
    with pytest.warns(PoolingWarning):  # attention (σ 1) and torch-default MLP layers differ
        imp = cs.from_torch(ViT(16, 4, 16, depth=2), torch.randn(4, 3, 16, 16))
    assert [s.part for s in imp.skipped] == ["stem"] * 4 + ["head", "head"]
    assert "position embedding" in imp.skipped[3].reason
    assert "transpose outside the body" in imp.skipped[2].reason
    assert imp.blocks[0].block.branch.ops[1].n_tokens == 16
    assert imp.outputs == [None, "blocks.0", None, "blocks.1", "norm"]
    run = imp.network_run("exchangeable")
    assert run.k is not None and np.isfinite(run.J).all()
    if imp.gram_theory is not None:  # tokens not alike at this width: the Gram recursion
        assert np.isfinite(imp.network_run().J).all()


def test_model_without_analysable_part_is_refused_with_the_submodule():
    """A submodule called with its arguments (the same signal twice) is read as one call, and
    with no operator for it the refusal names it."""
    for x in (None, torch.randn(2, 3)):
        with pytest.raises(cs.errors.UnsupportedModuleError, match=r"'bil'.*Bilinear"):
            cs.from_torch(_TwoArguments(), x)


# ----------------------------------------------------------------------------- theory vs model
def _mlp(act):
    def make(n):
        return flat_mlp(n, act, depth=4), torch.randn(32, 12)
    return make


def _resid(mu):
    def make(n):
        return nn.Sequential(*[PreLNResidual(n, mu) for _ in range(4)]), torch.randn(32, n)
    return make


def _exported(n):
    return nn.Sequential(*[RankDependent(n) for _ in range(3)]), torch.randn(32, n)


def _nested(n):
    return nested_mlp(n, nn.Tanh, depth=4), torch.randn(32, 12)


def _mixer(n):
    return nn.Sequential(*[MixerBlock(n, n) for _ in range(2)]), torch.randn(16, n, n)


def _attention(n):
    """Exported critsym attention blocks (uniform regime) between pre-LN residual MLPs: a
    token body whose tangent (j, k) couples."""
    from critsym.ops.attention import Attention

    tokens = 8
    block = cs.Residual(cs.LayerNorm() >> Attention(tokens, "uniform", sigma_v="sigma_w",
                                                    sigma_o="sigma_w"), 1) \
        >> cs.Residual(cs.LayerNorm() >> cs.Linear() >> cs.Act("relu") >> cs.Linear(), 1)
    seed = int(torch.randint(0, 2**31 - 1, ()))
    model = cs.to_torch_model(block, n, 2, seed=seed, sigma_w=1.0, sigma_b=0.1)
    return model, torch.randn(16, tokens, n)


@pytest.mark.parametrize("make", [_mlp(nn.ReLU), _mlp(nn.Tanh), _nested, _resid(1.0),
                                  _resid(0.5), _exported, _mixer, _attention],
                         ids=["relu-mlp", "tanh-mlp", "nested-tanh", "residual",
                              "mu-residual", "torch.export", "mixer", "attention"])
def test_network_theory_matches_the_models_apjn(make):
    ext, se, z = ratio_z(make, (32, 128), range(8))
    assert abs(z) <= Z_MAX, (ext, se, z)


def test_network_theory_of_a_resnet_with_batchnorm():
    """BatchNorm mixes the examples, so J is measured over the whole batch (its O(1/B)
    cross-example terms are below the error here: B·H·W = 512 rows per channel).  The span
    starts after the first residual block: the stem conv reads 3 channels, so its fan-in (27)
    does not grow with the width, and the BatchNorm after it divides each channel by its own
    variance (E[1/σ_i²] > 1/E[σ_i²] by O(1/27), a finite fan-in effect, not mean field)."""
    def make(n):
        return ResNet(n, depth=3), torch.randn(32, 3, 16, 16)

    ext, se, z = ratio_z(make, (8, 32), range(6), batch_axis=None, first=1)
    assert abs(z) <= Z_MAX, (ext, se, z)


def test_mixer_model_with_stem_and_head_matches_between_blocks():
    def make(n):  # channels = tokens = n
        return Mixer(n, 4, 4 * math.isqrt(n), depth=2), torch.randn(8, 3, 4 * math.isqrt(n),
                                                                     4 * math.isqrt(n))

    ext, se, z = ratio_z(make, (16, 64), range(6))
    assert abs(z) <= Z_MAX, (ext, se, z)


def test_vit_model_matches_between_blocks():
    def make(n):
        return ViT(n, 4, 16, depth=2), torch.randn(8, 3, 16, 16)

    ext, se, z = ratio_z(make, (16, 64), range(6))
    assert abs(z) <= Z_MAX, (ext, se, z)


def test_sequence_theory_is_needed_where_blocks_differ():
    """The same measurements reject one repeated block at pooled σ's (what a single-block
    import would analyse) while the network theory passes: the check has power."""
    def make(n):
        model = flat_mlp(n, nn.Tanh, depth=4)
        with torch.no_grad():
            for i, lin in enumerate(model[::2]):
                lin.weight.normal_(0, (0.7 + 0.25 * i) / math.sqrt(lin.in_features))
        return model, torch.randn(32, 12)

    def one_block(imp, start):
        ws = [b.values["sigma_w"] for b in imp.blocks[start:]]
        bs = [b.values["sigma_b"] for b in imp.blocks[start:]]
        th = imp.blocks[start].theory
        return th.run(len(ws), K0=imp.network_run().K[start], sigma_w=float(np.mean(ws)),
                      sigma_b=float(np.mean(bs))).J

    _, _, z = ratio_z(make, (32, 128), range(8))
    assert abs(z) <= Z_MAX
    _, _, z_one = ratio_z(make, (32, 128), range(8), theory=one_block)
    assert abs(z_one) > Z_MAX, z_one
