"""The real torchvision and timm models (marked ``torchvision``: deselected by default; they
need both libraries, which do not import beside the CPU torch of the default environment).

Run them in a separate environment with a torch that torchvision imports with, e.g.::

    python3 -m venv /work/venv-tv
    /work/venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /work/venv-tv/bin/pip install -e '.[test]'
    /work/venv-tv/bin/python -m pytest -m torchvision tests/models/test_torchvision_timm.py

Theory against measurement: J^{0,L} across the imported blocks (each with its own estimated
σ's, from the measured input state) against ``critsym.apjn`` on the model itself over
independent initializations, |mean(measured − theory)| ≤ 4 SE.  The class-token gap (tokens of
unequal variance, which the exchangeable-token theory does not hold) is characterised by its
measured band.
"""

import math

import pytest

from critsym.repro import torchvision_models as TV

pytestmark = pytest.mark.torchvision


def compare(name: str, seeds: int = 8, stop: int | None = None):
    case = TV.CASES[name]
    if stop is not None:
        case = TV.Case(case.name, case.build, stop)
    th, me, res = TV.compare(case, seeds)
    return th, me, res


def z_score(th, me) -> float:
    d = me - th
    return float(d.mean() / (d.std(ddof=1) / math.sqrt(len(d))))


def ratio(th, me) -> tuple[float, float]:
    r = me / th
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))


def test_torchvision_mlp_theory_against_measured_and_critical_init():
    th, me, _ = compare("torchvision.ops.MLP")
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())
    m, se, n = TV.one_block_after_critical(TV.CASES["torchvision.ops.MLP"])
    assert n >= 8 and abs(m - 1) <= 4 * se, (m, se, n)


def test_torchvision_resnet18_imports_and_reports_its_stem():
    model, x, _ = TV.tv_resnet18(0)
    res = TV.imported(model, x)
    assert [b.path for b in res.blocks][-1] == "layer4.1"
    stem = " ".join(f"{s.path}: {s.reason}" for s in res.skipped if s.part == "stem")
    assert "maxpool: torch.nn.functional.max_pool2d" in stem


def test_torchvision_vit_imports_encoder_blocks_and_skips_stem_and_head():
    model, x, _ = TV.tv_vit(0)
    res = TV.imported(model, x)
    assert [b.path for b in res.blocks][:2] == ["encoder.layers.encoder_layer_0",
                                                 "encoder.layers.encoder_layer_1"]
    stem = " ".join(s.reason for s in res.skipped if s.part == "stem")
    assert "conv_proj" in " ".join(s.path for s in res.skipped)
    assert "torch.cat" in stem and "learned tensor" in stem
    head = " ".join(s.reason for s in res.skipped if s.part == "head")
    assert "indexing" in head


def test_torchvision_vit_layers_theory_against_measured():
    th, me, _ = compare("torchvision ViT encoder layers (Gaussian tokens)")
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())
    assert th.mean() > 1.5  # the layers amplify: the comparison has power


def test_torchvision_vit_class_token_gap_is_characterised():
    # measured band (8 seeds, width 64): measured/theory of J to the first layer's output
    # 15–20 (docs/models_torchvision.md); the class token (zero plus a position embedding
    # of std 0.02) has ~1e-3 of the patch tokens' second moment, so its LayerNorm amplifies a
    # perturbation ~30-fold, which the exchangeable-token theory averages away
    th, me, _ = compare("torchvision ViT", stop=1)
    r, se = ratio(th, me)
    assert 5 < r < 40 and r > 1 + 4 * se, (r, se)


def test_timm_vit_without_class_token_theory_against_measured():
    th, me, _ = compare("timm ViT, no class token (global_pool='avg')")
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())


def test_timm_vit_class_token_gap_is_characterised():
    # measured band (8 seeds, width 64): measured/theory of J across the two blocks ≈ 1.2
    th, me, _ = compare("timm ViT")
    r, se = ratio(th, me)
    assert 1.05 < r < 1.6 and r > 1 + 4 * se, (r, se)


def test_timm_mixer_theory_against_measured():
    th, me, res = compare("timm MLP-Mixer (ReLU, zero biases)")
    assert [b.path for b in res.blocks][:2] == ["blocks.0", "blocks.1"]
    assert abs(z_score(th, me)) <= 4, (th.mean(), me.mean())
    assert th.mean() > 1.5  # the blocks amplify: the comparison has power


def test_critical_init_refusals_name_the_reason():
    """The ViTs' layers are initialized with different σ_w (fan-in scaled), so no single σ_w
    describes a block: ``critical_`` refuses, saying so."""
    from critsym.errors import CritsymError
    from critsym.init import critical_

    for build in (TV.tv_vit, TV.timm_vit):
        model, x, _ = build(0)
        try:
            critical_(model, example_input=x)
        except CritsymError as e:
            assert "blocks" in str(e)
        else:
            raise AssertionError(f"{build.__name__}: critical_ found a critical point")
