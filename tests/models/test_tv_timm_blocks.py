"""torchvision's and timm's transformer and Mixer blocks, read by critsym's import readers
(claimed by class name) — here on structural copies of the classes (``tests/_tv_copies.py``),
which run without either library; ``test_torchvision_timm.py`` (marked ``torchvision``) runs
the same checks on the real classes.

Each check compares the theory J^{0,L} across the imported blocks (every block with its own
estimated σ's, from the measured input state) with ``critsym.apjn`` on the model itself, over
independent initializations: |mean(measured − theory)| ≤ 4 SE."""

import math
import warnings

import numpy as np
import pytest
import torch
from _model_cases import sigma_hat
from _tv_copies import (
    Block,
    ClassTokenStem,
    EncoderBlock,
    MixerBlock,
    MlpMixer,
    as_library_classes,
    gaussian_tokens,
    timm_vit_init,
)
from torch import nn

import critsym as cs
from critsym.errors import UnsupportedModuleError
from critsym.ops.attention import Attention
from critsym.ops.residual import Residual
from critsym.ops.scale import Scale

DIM, TOKENS, BATCH = 32, 8, 4


def imported(model, x):
    with as_library_classes(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-layer σ's differ by design (fan-in scaled inits)
        return cs.from_torch(model, example_input=x)


def scaled_timm_init(model, gain: float = 1.0):
    """timm's initialization, with value/output/MLP weights of σ_w = ``gain`` (query and key
    stay at std 0.02, so the logits are small and the standard regime near uniform): J moves
    away from 1 and the comparison has power."""
    timm_vit_init(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and not name.endswith("qkv"):
            nn.init.normal_(m.weight, std=gain / math.sqrt(m.in_features))
        if name.endswith("qkv"):
            d = m.in_features
            nn.init.normal_(m.weight[2 * d:], std=gain / math.sqrt(d))
    return model


def timm_stack(seed: int, init_values=None, gain: float = 1.0):
    torch.manual_seed(seed)
    blocks = [Block(DIM, 2, init_values=init_values) for _ in range(2)]
    model = nn.Sequential(nn.Identity(), *blocks)
    with torch.no_grad():
        scaled_timm_init(model, gain)
    return model.double().eval(), gaussian_tokens(seed, BATCH, TOKENS, DIM)


def tv_stack(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Identity(), *[EncoderBlock(2, DIM, 2 * DIM) for _ in range(2)])
    return model.double().eval(), gaussian_tokens(seed, BATCH, TOKENS, DIM)


def mixer_stack(seed: int):
    """ReLU Mixer blocks, xavier weights (timm's Mixer initialization), zero biases."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Identity(), *[MixerBlock(DIM, TOKENS, act_layer=nn.ReLU)
                                           for _ in range(2)])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return model.double().eval(), gaussian_tokens(seed, BATCH, TOKENS, DIM)


def body_theory(res, blocks=None) -> float:
    """J^{0,L} of the theory through ``blocks`` (default: the imported ones), each derived once
    per structure (:func:`critsym.repro.models.template`) and run at its own estimates, from
    the measured input state."""
    from critsym.interop import derive_block, run_blocks
    from critsym.repro.models import template

    pairs = []
    for b, imp in zip(blocks or [b.arch for b in res.blocks], res.blocks, strict=True):
        tpl, values = template(b)
        pairs.append((derive_block(tpl, imp.axes, imp.tokens), values))
    return float(run_blocks(pairs, **res.body_input.state()).J[-1])


def compare(build, seeds: int = 8, theories=(body_theory,)):
    """(theory per function of ``theories``…, measured): J^{0,L} per seed, each
    ``theory(res)`` a theory of the import."""
    th, me = [[] for _ in theories], []
    for s in range(seeds):
        model, x = build(s)
        res = imported(model, x)
        for out, theory in zip(th, theories, strict=True):
            out.append(theory(res))
        layers = ["0", *res.outputs]
        me.append(float(cs.apjn(model, x, layers, n_probes=8, seed=s, progress=False).J[-1]))
    return (*(np.array(t) for t in th), np.array(me))


def z_score(th, me) -> float:
    d = me - th
    return float(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))))


# ----------------------------------------------------------------------------- structure
def test_timm_block_reads_as_one_pre_norm_block_per_module():
    model, x = timm_stack(0)
    res = imported(model, x)
    assert res.outputs == ["1", "2"] and not res.skipped
    for i, b in enumerate(res.blocks, start=1):
        r1, r2 = b.arch.ops
        assert isinstance(r1, Residual) and isinstance(r2, Residual)
        ln, att = r1.branch.ops
        assert ln == cs.LayerNorm() and isinstance(att, Attention) and att.n_tokens == TOKENS
        qkv = model[i].attn.qkv.weight
        sv, _ = sigma_hat(qkv[2 * DIM:])
        sq, _ = sigma_hat(qkv[:DIM])
        sk, _ = sigma_hat(qkv[DIM:2 * DIM])
        assert math.isclose(float(att.sigma_v), sv, rel_tol=1e-12)
        assert math.isclose(float(att.sigma_qk), sq * sk, rel_tol=1e-12)
        assert [type(o).__name__ for o in r2.branch.ops] == ["LayerNorm", "Linear", "Act",
                                                             "Linear"]


def test_layer_scale_reads_as_its_gain():
    model, x = timm_stack(0, init_values=0.5)
    res = imported(model, x)
    r1, r2 = res.blocks[0].arch.ops
    assert r1.branch.ops[-1] == Scale(0.5) and r2.branch.ops[-1] == Scale(0.5)


def test_torchvision_encoder_block_reads_multihead_attention():
    model, x = tv_stack(0)
    res = imported(model, x)
    assert res.outputs == ["1", "2"] and not res.skipped
    r1, r2 = res.blocks[0].arch.ops
    ln, att = r1.branch.ops
    w = model[1].self_attention.in_proj_weight
    sv, _ = sigma_hat(w[2 * DIM:])
    assert isinstance(att, Attention) and att.heads == 2
    assert math.isclose(float(att.sigma_v), sv, rel_tol=1e-12)
    assert [type(o).__name__ for o in r2.branch.ops] == ["LayerNorm", "Linear", "Act", "Linear"]


def test_mixer_block_is_one_block_with_its_transposes():
    model, x = mixer_stack(0)
    res = imported(model, x)
    assert res.outputs == ["1", "2"]
    r1, r2 = res.blocks[0].arch.ops
    names = [type(o).__name__ for o in r1.branch.ops]
    assert names[:2] == ["LayerNorm", "Transpose"] and names[-1] == "Transpose"


def test_class_token_and_position_embedding_are_a_skipped_stem():
    torch.manual_seed(0)
    model = ClassTokenStem(nn.Sequential(*[Block(DIM, 2) for _ in range(2)]), DIM, TOKENS)
    timm_vit_init(model)
    model = model.double().eval()
    res = imported(model, gaussian_tokens(0, BATCH, TOKENS, DIM))
    assert [b.path for b in res.blocks] == ["blocks.0", "blocks.1"]
    reasons = " ".join(s.reason for s in res.skipped if s.part == "stem")
    assert "concatenation" in reasons and "learned tensor" in reasons


# ----------------------------------------------------------------------------- refusals
def test_refusals_name_the_submodule_and_the_fix():
    torch.manual_seed(0)
    x = gaussian_tokens(0, BATCH, TOKENS, DIM)
    qk = timm_vit_init(nn.Sequential(Block(DIM, 2, qk_norm=True))).double().eval()
    with pytest.raises(UnsupportedModuleError, match=r"'0\.attn\.q_norm'.*qk_norm"):
        with as_library_classes():
            cs.from_torch(qk, example_input=x)
    dropping = timm_vit_init(nn.Sequential(Block(DIM, 2, drop_path=0.1))).double().train()
    with pytest.raises(UnsupportedModuleError, match=r"'0\.drop_path1'.*model\.eval\(\)"):
        with as_library_classes():
            cs.from_torch(dropping, example_input=x)
    trained = timm_vit_init(nn.Sequential(Block(DIM, 2, init_values=0.1))).double().eval()
    with torch.no_grad():
        trained[0].ls1.gamma[0] = 0.3
    with pytest.raises(UnsupportedModuleError, match=r"'0\.ls1'.*unequal"):
        with as_library_classes():
            cs.from_torch(trained, example_input=x)


# ----------------------------------------------------------------------------- theory vs MC
def test_timm_blocks_theory_against_measured():
    def no_scale(res):
        """Power: the same blocks read without their LayerScale."""
        blocks = []
        for b in res.blocks:
            r1, r2 = b.arch.ops
            blocks.append(Residual(cs.Sequential(*r1.branch.ops[:-1]), 1)
                          >> Residual(cs.Sequential(*r2.branch.ops[:-1]), 1))
        return body_theory(res, blocks)

    th, th0, me = compare(lambda s: timm_stack(s, init_values=0.5),
                          theories=(body_theory, no_scale))
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())
    assert abs(z_score(th0, me)) > 6, (th0.mean(), me.mean())


@pytest.mark.slow
def test_torchvision_blocks_theory_against_measured():
    """Slow (about a minute: the standard-attention theory at each initialization's σ_QK);
    the real-library tests measure the real ``EncoderBlock`` too."""
    th, me = compare(tv_stack)
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())
    assert th.mean() > 1.5  # the blocks amplify: the comparison has power


def test_mixer_blocks_theory_against_measured():
    th, me = compare(mixer_stack)
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())


# ----------------------------------------------------------------------------- critical_
@pytest.mark.slow
def test_critical_init_part_of_a_mixer_skips_its_patchify_stem():
    """Slow (~30 s on a loaded machine).  The part critical_ solves for is the importer's
    body: the patchify stem (an even 8×8 kernel critsym's Conv does not hold) is skipped with
    its reason, not refused."""
    from critsym.body import analysed_part

    torch.manual_seed(0)
    model = MlpMixer(16, 8, DIM, 2).double().eval()
    x = torch.randn(BATCH, 3, 16, 16, dtype=torch.float64)
    with as_library_classes(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = analysed_part(model, x)
    assert [b.path for b in part.blocks] == ["blocks.0", "blocks.1"]
    skipped = dict(part.skipped)
    assert "stem.proj" in skipped and "kernel" in skipped["stem.proj"]
    assert part.inputs == "stem" and part.K0 > 0


def test_mixer_with_its_patchify_stem_is_everywhere_critical():
    """critical_ analyses the Mixer body the importer reads (the skipped
    patchify stem, an even 8×8 kernel, and the final LayerNorm stay out of it): pre-LN
    residual blocks with μ = 1, whose stream grows without bound at every σ_w, so no
    critical point; the model is left as it was."""
    from critsym.init import EverywhereCriticalError, critical_

    torch.manual_seed(0)
    model = MlpMixer(16, 8, DIM, 2).double().eval()
    x = torch.randn(BATCH, 3, 16, 16, dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    with as_library_classes(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EverywhereCriticalError, match="grows without bound") as err:
            critical_(model, example_input=x)
    assert "blocks.0 … blocks.1" in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
def test_vit_with_class_token_stem_and_final_norm_is_everywhere_critical():
    """Slow (~1 min).  The ViT layout (class token and position embedding skipped as stem, a
    final LayerNorm after the blocks): the two blocks are the analysed part, pre-LN with
    μ = 1: everywhere critical."""
    from critsym.init import EverywhereCriticalError, critical_

    torch.manual_seed(0)
    blocks = nn.Sequential(*[Block(DIM, 2) for _ in range(2)], nn.LayerNorm(DIM))
    model = timm_vit_init(ClassTokenStem(blocks, DIM, TOKENS)).double().eval()
    x = gaussian_tokens(0, BATCH, TOKENS, DIM)
    with as_library_classes(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EverywhereCriticalError, match="grows without bound") as err:
            critical_(model, example_input=x)
    assert "blocks.0 … blocks.1" in str(err.value)
