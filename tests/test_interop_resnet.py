"""ResNets with the activation after the residual sum (torchvision and Hugging Face order), read
whole: every stage, projection shortcuts and strided convs, the stream's law carried through
the body (critsym.interop.stream).

Theory checks use closed forms; Monte Carlo checks compare the APJN measured on the model at
its initialization (BatchNorm in training mode, J over the whole batch) with the network
theory, the ratio extrapolated in 1/width, |z| <= 4."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _torch_models import TorchvisionBasicBlock
from torch import nn

import critsym as cs
from critsym.batchnorm import basic_block
from critsym.interop import run_blocks
from critsym.interop import stream as S
from critsym.interop.network import derive_block
from critsym.torch.validate import extrapolate

T = pytest.importorskip("transformers")
Z_MAX = 4.0
PI = math.pi


# ------------------------------------------------------------------ models used by the tests
def _bn(c: int) -> nn.BatchNorm2d:
    # batch statistics, no running-statistics update (cs.apjn's torch.func transforms refuse it)
    return nn.BatchNorm2d(c, track_running_stats=False)


def BasicBlock(cin: int, cout: int, stride: int = 1, padding_mode: str = "zeros",
               norm: bool = True) -> nn.Module:
    """torchvision's BasicBlock with batch-statistics BatchNorm (or none)."""
    return TorchvisionBasicBlock(cin, cout, stride, padding_mode,
                                 _bn if norm else (lambda c: nn.Identity()))


class TinyResNet(nn.Module):
    """torchvision's ResNet layout at small sizes: conv → BN → ReLU stem, stages of
    BasicBlocks (the first of a later stage strided with a conv1×1 + BN downsample), global
    average pool, classifier; convs initialised as torchvision does (Kaiming normal, fan_out)."""

    def __init__(self, width: int, padding_mode: str = "zeros", layers=(2, 1),
                 norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False, padding_mode=padding_mode)
        self.bn1 = _bn(width)
        self.relu = nn.ReLU(inplace=True)
        blocks, cin = [], width
        for i, n in enumerate(layers):
            cout = width * 2 ** i
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1, padding_mode,
                                         norm))
                cin = cout
        self.layer = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layer(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _no_running_stats(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return model


def hf_resnet(width: int, seed: int, kind: str = "basic", padding_mode: str = "zeros",
              image: int = 32, batch: int = 8, head: bool = False, depths=(2, 1)):
    """A Hugging Face ResNet from a tiny config (two stages), in training mode, and a batch."""
    torch.manual_seed(seed)
    cfg = T.ResNetConfig(embedding_size=width, hidden_sizes=[width, 2 * width],
                         depths=list(depths),
                         num_channels=3, layer_type=kind, num_labels=5)
    cls = T.ResNetForImageClassification if head else T.ResNetModel
    model = _no_running_stats(cls(cfg).double().train())
    if padding_mode != "zeros":
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.padding[0] > 0:
                m.padding_mode = padding_mode
    g = torch.Generator().manual_seed(10_000 + seed)
    return model, torch.randn(batch, 3, image, image, generator=g, dtype=torch.float64), \
        "embedder"


def tv_resnet(width: int, seed: int, padding_mode: str = "zeros", image: int = 16,
              batch: int = 8):
    torch.manual_seed(seed)
    model = TinyResNet(width, padding_mode).double()
    g = torch.Generator().manual_seed(10_000 + seed)
    return model, torch.randn(batch, 3, image, image, generator=g, dtype=torch.float64), "relu"


def _import(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # σ's differ between layers (Kaiming fan_out)
        return cs.from_torch(model, x)


def measure(make, widths, seeds):
    """Per width: the ratios measured/theory of J across the body (from the body input to the
    last block's output), measured/(tangent-independent product) for the power check, and
    measured/theory of the last block alone (a stage's first block: strided, projection)."""
    out = []
    for n in widths:
        r, r_indep, r_last = [], [], []
        for seed in seeds:
            model, x, start = make(n, seed)
            imp = _import(model, x)
            L = len(imp.blocks)
            J = imp.J_theory()[-1]
            indep = math.prod(imp.J_theory(start=b)[1] for b in range(L))
            m = cs.apjn(model, x, [start, imp.outputs[-1]], n_probes=4, seed=seed,
                        batch_axis=None).J[-1]
            m_last = cs.apjn(model, x, imp.outputs[-2:], n_probes=4, seed=seed,
                             batch_axis=None).J[-1]
            r.append(m / J)
            r_indep.append(m / indep)
            r_last.append(m_last / imp.J_theory(start=L - 1)[1])
        out.append((np.array(r), np.array(r_indep), np.array(r_last)))
    return out


def ratio(widths, runs, k=0):
    means = [float(np.mean(r[k])) for r in runs]
    ses = [float(np.std(r[k], ddof=1) / math.sqrt(len(r[k]))) for r in runs]
    ext, se, _ = extrapolate(widths, means, ses)
    return ext, se, (ext - 1) / se


# ------------------------------------------------------------------------------ the theory
def _run(block, n, law0=None, K0=1.0, O_C0=0.0, **hp):
    return run_blocks([(derive_block(block), hp)] * n, K0, O_C0=O_C0, law0=law0)


def test_post_activation_block_is_one_block_with_a_law_state():
    blk = basic_block(1.0)
    th = derive_block(blk)
    assert isinstance(th, S.PostActivationTheory) and th.parts.mu == 1
    with pytest.raises(cs.errors.DerivationError, match="not a Gaussian preactivation"):
        cs.derive(blk)  # the fold alone refuses it: its output is not Gaussian
    with pytest.raises(cs.errors.DerivationError, match="run_blocks"):
        th.chi_J(K=1.0)  # the single-block Theory API does not apply to a law state
    assert getattr(th, "fixed_point", None) is None


def test_identity_skip_at_mu_zero_matches_the_closed_form():
    """μ = 0: u = y ~ N(0, 1), x = relu(u); per block J' = P(u>0)·g·J with
    g = π/((π−1)(E x² − (E x)²)) = π/((π−1)(1/2 − 1/(2π))), i.e. χ = π²/(π−1)²."""
    r = _run(basic_block(0.0), 4, sigma_w=1.3, sigma_b=0.2)
    assert np.allclose(r.chi[1:], PI ** 2 / (PI - 1) ** 2, rtol=2e-5)
    assert np.allclose(r.K[1:], 0.5, rtol=1e-5)


def test_projection_shortcut_block_matches_the_closed_form():
    """φ(BN(W_s x) + BN(W_2 relu(BN(W_1 x)))): u ~ N(0, 2) whatever the input law, and
    J' = P(u>0)·(g_s + g_b)·J with g_s = 1/(m₂ − O), g_b = π/((π−1)(m₂ − O))."""
    conv = cs.Conv(3, stride=2)
    skip = cs.Conv(1, stride=2) >> cs.BatchNorm()
    branch = conv >> cs.BatchNorm() >> cs.Act("relu") >> cs.Conv(3) >> cs.BatchNorm()
    blk = cs.Parallel(branch, skip) >> cs.Act("relu")
    rng = np.random.default_rng(0)
    x0 = np.maximum(rng.normal(0.3, 1.0, 50_000), 0)  # a non-Gaussian input law
    m2, O = float(np.mean(x0 ** 2)), 0.05
    r = _run(blk, 1, law0=x0, O_C0=O, sigma_w=1.1, sigma_b=0.0)
    law = S.empirical_law(x0)
    assert r.K[0] == pytest.approx(law.K, rel=1e-12)
    assert r.K[1] == pytest.approx(1.0, rel=1e-5)  # E relu(N(0, 2))² = 1
    want = 0.5 * (1 / (m2 - O) + PI / ((PI - 1) * (m2 - O)))
    assert r.J[1] == pytest.approx(want, rel=1e-4)


def test_stream_runner_equals_the_basic_block_recursion_from_a_gaussian_input():
    from critsym.batchnorm import BasicBlockTheory

    for mu in (1.0, 0.5):
        r = _run(basic_block(mu), 5, K0=1.3, sigma_w=1.0, sigma_b=0.3)
        ref = BasicBlockTheory().run(5, 1.3, sigma_w=1.0, sigma_b=0.3, mu=mu)
        assert np.allclose(r.J, ref.J, rtol=1e-4) and np.allclose(r.K, ref.K, rtol=1e-4)


def test_grid_spacing_is_converged(monkeypatch):
    coarse = _run(basic_block(1.0), 4, K0=1.0, sigma_w=1.0, sigma_b=0.3)
    monkeypatch.setattr(S, "H", S.H / 2)
    fine = _run(basic_block(1.0), 4, K0=1.0, sigma_w=1.0, sigma_b=0.3)
    assert np.allclose(coarse.J, fine.J, rtol=1e-4) and np.allclose(coarse.K, fine.K, rtol=1e-4)


def test_branch_without_batchnorm_is_refused_with_the_reason():
    blk = cs.Residual(cs.Conv(3) >> cs.Act("relu") >> cs.Conv(3), 1) >> cs.Act("relu")
    with pytest.raises(cs.errors.DerivationError, match="does not end in BatchNorm"):
        derive_block(blk)
    model, x, _ = tv_resnet(8, 0)
    model = TinyResNet(8, norm=False).double()
    imp = _import(model, x)
    reasons = " ".join(s.reason for s in imp.skipped)
    assert "does not end in BatchNorm" in reasons


# ------------------------------------------------------------------------------ the import
@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_hugging_face_resnet_reads_every_stage(kind):
    model, x, _ = hf_resnet(8, 0, kind, head=True)
    imp = _import(model, x)
    stages = "resnet.encoder.stages"
    assert [b.path for b in imp.blocks] == [f"{stages}.0.layers.0", f"{stages}.0.layers.1",
                                            f"{stages}.1.layers.0"]
    assert imp.outputs == [f"{b.path}.activation" for b in imp.blocks]
    assert [b.width for b in imp.blocks] == ([8, 8, 16] if kind == "basic" else [8, 8, 16])
    parts = [S.post_activation(b.block) for b in imp.blocks]
    assert [p.mu for p in parts] == [1, 1, 0]  # the last: a projection shortcut, no identity
    (proj_skip,) = [b for b in parts[2].branches if len(b.ops) == 2]
    assert proj_skip.ops[0].kernel_size == 1 and proj_skip.ops[0].stride == 2
    assert any(getattr(o, "stride", 1) == 2 for b in parts[2].branches for o in b.ops[:3])
    skipped = {(s.part, s.path): s.reason for s in imp.skipped}
    assert "max_pool2d" in skipped[("stem", "resnet.embedder.pooler")]
    assert ("stem", "resnet.embedder.embedder.convolution") in skipped
    relu = skipped[("stem", "resnet.embedder.embedder.normalization..resnet.embedder.embedder"
                            ".activation")]
    assert "measured law" in relu
    assert "GlobalAvgPool" in skipped[("head", "resnet.pooler")]
    assert ("head", "classifier.1") in skipped
    assert imp.body_input.source == "example_input" and imp.body_input.samples is not None
    run = imp.network_run()
    assert run.laws is not None and np.all(np.isfinite(run.J)) and run.J[-1] > 1


def test_torchvision_style_resnet_reads_every_stage():
    model, x, _ = tv_resnet(8, 0)
    imp = _import(model, x)
    assert [b.path for b in imp.blocks] == ["layer.0", "layer.1", "layer.2"]
    assert imp.outputs == ["layer.0", "layer.1", "layer.2"]  # the block's shared ReLU ends it
    assert [s.path for s in imp.skipped] == ["conv1", "bn1..relu", "avgpool", "<model>", "fc"]
    last = S.post_activation(imp.blocks[-1].block)
    assert last.mu == 0 and len(last.branches) == 2


# ------------------------------------------------------------------------------ Monte Carlo
def test_hugging_face_resnet_body_matches_the_network_theory():
    """Circular padding: the theory is the exact mean field per position (zero padding makes
    the border positions differ; see the characterisation below).  The same measurements
    reject the tangent-independent product of one-block APJNs (the skip keeps the tangent
    correlated with the stream over the four blocks of the first stage)."""
    def make(n, seed):
        return hf_resnet(n, seed, padding_mode="circular", depths=(4, 1))

    runs = measure(make, (16, 64), range(6))
    ext, se, z = ratio((16, 64), runs)
    assert abs(z) <= Z_MAX, (ext, se, z)
    ext_i, se_i, z_i = ratio((16, 64), runs, 1)
    assert abs(z_i) > Z_MAX, (ext_i, se_i, z_i)


def test_torchvision_style_resnet_body_matches_the_network_theory():
    """Also the stride-2 projection block alone (its strided convs have the per-position map
    of unstrided ones)."""
    def make(n, seed):
        return tv_resnet(n, seed, "circular")

    runs = measure(make, (16, 64), range(6))
    ext, se, z = ratio((16, 64), runs)
    assert abs(z) <= Z_MAX, (ext, se, z)
    ext, se, z = ratio((16, 64), runs, 2)
    assert abs(z) <= Z_MAX, (ext, se, z)


@pytest.mark.slow
def test_hugging_face_bottleneck_resnet_body_matches_the_network_theory():
    def make(n, seed):
        return hf_resnet(n, seed, "bottleneck", padding_mode="circular")

    runs = measure(make, (16, 64), range(8))
    ext, se, z = ratio((16, 64), runs)
    assert abs(z) <= Z_MAX, (ext, se, z)


@pytest.mark.slow
def test_zero_padded_hugging_face_resnet_matches_the_position_resolved_theory():
    """The models' zero padding (32×32 images: maps 8×8 and 4×4): the importer runs the
    position-resolved theory (critsym.interop.padded), which agrees in 1/width; the bulk
    theory of the same bodies (the stream law of circular padding) is rejected."""
    def make(n, seed):
        return hf_resnet(n, seed, image=32)

    runs = measure(make, (16, 64), range(6))
    ext, se, z = ratio((16, 64), runs)
    assert abs(z) <= Z_MAX, (ext, se, z)
    bulk = []
    for seed in range(3):
        model, x, start = make(64, seed)
        imp = _import(model, x)
        st = imp.body_input.state()
        del st["maps0"]
        m = cs.apjn(model, x, [start, imp.outputs[-1]], n_probes=4, seed=seed,
                    batch_axis=None).J[-1]
        bulk.append(m / imp.network_run(**{**st, "maps0": None}).J[-1])
    assert np.mean(bulk) < 0.8  # the bulk theory: 0.66 ± 0.01 at this map size


def test_zero_padded_body_runs_the_position_resolved_theory():
    from critsym.interop import padded as PD

    model, x, _ = hf_resnet(8, 0, image=16)
    imp = _import(model, x)
    run = imp.network_run()
    assert all(isinstance(m, PD.MapLaw) for m in run.laws)
    assert run.laws[0].shape == (4, 4) and run.laws[-1].shape == (2, 2)
    notes = imp.approximations
    body = [p for p in notes if p.startswith("encoder")]
    assert body == [f"{imp.blocks[0].path} (zero padding)",
                    f"{imp.blocks[2].path} (BatchNorm rows)"]  # 2×2 maps, 8 examples
    assert "position-resolved" in notes[body[0]]
    J = imp.J_theory()
    assert np.isclose(imp.J_theory(start=2)[1], J[3] / J[2], rtol=0.2)  # a restart: new probe
    model, x, _ = tv_resnet(8, 0, image=4)  # maps 4×4, then 2×2: 8 × 4 rows in the last block
    notes = _import(model, x).approximations
    assert notes["layer.2 (BatchNorm rows)"].startswith("BatchNorm over 32 rows")
    model, x, _ = hf_resnet(8, 0, image=16, padding_mode="circular")
    imp = _import(model, x)
    assert not any("zero padding" in t for t in imp.approximations.values())
    assert imp.network_run().laws[0].__class__.__name__ == "StreamLaw"


def test_strided_conv_builds_exports_and_imports():
    from critsym.torch.build import network_generators
    from critsym.torch.modules import BuildContext

    conv = cs.Conv(3, 1.2, 0.1, stride=2)
    assert cs.from_json(conv.to_json()) == conv and "stride" not in cs.Conv(3).to_json()
    ctx = BuildContext(n_nets=2, width=6, values={},
                       generators=network_generators(0, 0, 2, torch.device("cpu")))
    mod, out = conv.to_torch(ctx, (9, 8, 4))
    assert out == (5, 4, 6)
    assert tuple(mod(torch.randn(2, 3, 9, 8, 4, dtype=torch.float64)).shape) == (2, 3, 5, 4, 6)
    model = cs.to_torch_model(cs.Act("relu") >> conv.symbolic(), 16, 1, sigma_w=1.2,
                              sigma_b=0.1)
    assert model[0][1].stride == (2, 2)
    assert cs.from_torch(model).arch.ops[1].stride == 2


def test_a_body_is_of_one_kind():
    """A Linear straight before post-activation blocks: the body is the blocks, the Linear is
    skipped with the reason (the law state does not start from a Gaussian block's output)."""
    class Block(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(n, n), nn.Linear(n, n)
            self.bn1, self.bn2 = nn.BatchNorm1d(n), nn.BatchNorm1d(n)

        def forward(self, x):
            return torch.relu(x + self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x))))))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), Block(16), Block(16)).double()
    imp = _import(model, torch.randn(64, 6, dtype=torch.float64))
    assert [b.path for b in imp.blocks] == ["1", "2"]
    assert "one kind" in imp.skipped[0].reason and imp.skipped[0].path == "0"
    assert np.all(np.isfinite(imp.J_theory()))
