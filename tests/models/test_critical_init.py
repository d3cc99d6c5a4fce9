"""``critsym.init.critical_`` on the models people use: the analysed part read by the importer
(the longest run of layers of one structure, each weight layer with its role), every layer
redrawn at its own hyperparameter with its own fan-in, and either a critical point verified by
Monte Carlo (the measured one-block APJN extrapolated in 1/width is 1 within 4 SE) or the
refusal the theory gives."""

import functools
import math
import re
import warnings

import numpy as np
import pytest
import torch

import critsym as cs
import critsym.init as ci
from critsym.repro import models as M


def _part(name: str, seed: int = 0):
    model, x = M.CASES[name].build(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, x, ci.import_part(model, x)


@functools.cache
def _read_only_part(name: str):
    """:func:`_part` of seed 0, shared by the tests that do not change the model."""
    return _part(name)


def _sigma(w: torch.Tensor) -> tuple[float, float]:
    """(σ̂, SE) of a weight with rows = outputs: σ̂² = fan_in · mean(W²), SE = σ̂/√(2n)."""
    w = w.detach().double()
    s = math.sqrt(float((w * w).mean()) * w.shape[1])
    return s, s / math.sqrt(2 * w.numel())


def _assert_drawn(w_rows_out: torch.Tensor, sigma: float):
    s, se = _sigma(w_rows_out)
    assert abs(s - sigma) <= 4 * se, (s, sigma, se)


# ----------------------------------------------------------------------------- roles, redraw
@pytest.mark.parametrize("name, layers", [
    ("GPT-2", ("h.0", "h.1")), ("Llama", ("layers.0", "layers.1")),
    ("BERT", ("encoder.layer.0", "encoder.layer.1")), ("ViT", ("layers.0", "layers.1")),
    ("TransformerEncoder pre-norm", ("layers.0", "layers.1")),
    ("TransformerEncoder post-norm", ("layers.0", "layers.1")),
])
def test_transformer_layers_are_one_part_with_a_symbol_per_role(name, layers):
    model, x, part = _read_only_part(name)
    assert tuple(b.path for b in part.blocks) == layers, part
    names = {s.name for s in part.block.hyperparameters()}
    assert {"sigma_v", "sigma_o", "sigma_qk", "sigma_w"} <= names, names
    roles = {r.role for r in part.records}
    assert roles == {"sigma_q", "sigma_k", "sigma_v", "sigma_o", "sigma_w"}, roles
    # the part's input is a module the APJN can start from, its state measured there
    assert part.K0 is not None and part.K0 > 0
    assert all(o is not None for o in part.outputs)


def test_post_norm_encoder_is_read_with_its_example_input():
    """Regression: the second layer's attention read through torch.export had the batch size
    (4) as its number of tokens, and the part's reader ignored the example input."""
    model, x, part = _read_only_part("TransformerEncoder post-norm")
    assert part.n_blocks == 2 and not any("example_input" in r for _, r in part.skipped)
    for op in part.ops:
        att = op.ops[0].branch
        assert att.n_tokens == M.TOKENS == x.shape[1] != x.shape[0]


def test_vit_tuple_output_and_class_token_are_labelled():
    model, x, part = _read_only_part("ViT")
    assert part.result.output == "output[0]"
    assert any("class token" in r for _, r in part.skipped), part.skipped
    assert part.inputs == "embeddings"


def test_gpt2_layers_are_redrawn_at_their_roles_with_conv1d_fan_in():
    """Conv1D stores its weight (in, out): the fan-in is its first axis."""
    model, x, part = _part("GPT-2")
    d = M.WIDTH
    values = {**part.values, "sigma_w": 1.3, "sigma_v": 0.9, "sigma_o": 0.7, "sigma_qk": 0.25}
    layers, params, notes = ci._draw(model, part, values,
                                     torch.Generator().manual_seed(3))
    blk = model.h[1]
    _assert_drawn(blk.mlp.c_fc.weight.t(), 1.3)
    _assert_drawn(blk.mlp.c_proj.weight.t(), 1.3)
    assert layers["h.1.mlp.c_proj"][2] == 2 * 2 * d and layers["h.1.mlp.c_fc"][2] == d
    w = blk.attn.c_attn.weight.t()  # (3d, d): queries, keys, values
    _assert_drawn(w[2 * d:], 0.9)
    _assert_drawn(blk.attn.c_proj.weight.t(), 0.7)
    sq, _ = _sigma(w[:d])
    sk, _ = _sigma(w[d:2 * d])
    # σ̂_q σ̂_k: relative SE √2 · 1/√(2 d²) = 1/d
    assert abs(sq * sk - 0.25) <= 4 * 0.25 / d, (sq, sk)
    assert torch.count_nonzero(blk.attn.c_attn.bias) == 0  # sigma_b_v read as 0
    # the stem and the final norm are left as they were
    assert float(model.wte.weight.std()) == pytest.approx(0.02, rel=0.1)


def test_encoder_in_projection_slices_are_redrawn_in_place():
    model, x, part = _part("TransformerEncoder pre-norm")
    d = M.WIDTH
    ci._draw(model, part, {**part.values, "sigma_v": 1.7, "sigma_w": 0.4},
             torch.Generator().manual_seed(4))
    for layer in model.layers:
        w = layer.self_attn.in_proj_weight
        _assert_drawn(w[2 * d:], 1.7)
        _assert_drawn(layer.linear1.weight, 0.4)
        _assert_drawn(layer.linear2.weight, 0.4)


# ----------------------------------------------------------------------------- solved points
def _one_block_after_critical(name: str, width: int, seeds: int = 8):
    """The one-block APJN of each redrawn body block after ``critical_`` (its input → its
    output), mean and SE over blocks and seeds."""
    case = M.CASES[name]
    Js = []
    for s in range(seeds):
        model, x = case.build(s, width)
        res = ci.critical_(model, example_input=x, generator=torch.Generator().manual_seed(s))
        ends = [res.part.inputs, *res.part.outputs]
        for a, b in zip(ends[:-1], ends[1:], strict=True):
            Js.append(float(cs.apjn(model, x, [a, b], n_probes=8, seed=s).J[-1]))
    return float(np.mean(Js)), float(np.std(Js, ddof=1) / math.sqrt(len(Js))), res


@pytest.mark.parametrize("name", ["flat nn.Sequential MLP", "torchvision.ops.MLP (structure)"])
def test_mlp_critical_point_has_unit_one_block_apjn(name):
    from critsym.torch.validate import extrapolate

    widths = (32, 64)
    got = [_one_block_after_critical(name, w) for w in widths]
    res = got[0][2]
    assert res.value == pytest.approx(math.sqrt(2), abs=1e-9)  # relu: σ_w* = √2 at any σ_b
    assert res.part.n_blocks == 4 and res.verified
    J, se, _ = extrapolate(list(widths), [g[0] for g in got], [g[1] for g in got])
    assert 0 < se < 0.1, se
    assert abs(J - 1) <= 4 * se, (J, se, got)


# ----------------------------------------------------------------------------- refusals
def test_hf_resnet_is_refused_as_a_batchnorm_stack():
    model, x = M.resnet(0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ci.BatchNormStackError, match="BatchNorm"):
        ci.critical_(model, example_input=x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GPT-2", "Llama", "ViT", "TransformerEncoder pre-norm"])
def test_pre_norm_transformers_are_everywhere_critical(name):
    """Slow (~1 min each): pre-LN residual layers with μ = 1: the residual stream grows
    without bound and chi_J* = 1 at the current sigma_w and a decade on each side."""
    model, x = M.CASES[name].build(0)
    with pytest.raises(ci.EverywhereCriticalError, match="grows without bound") as e:
        ci.critical_(model, example_input=x)
    if name != "TransformerEncoder pre-norm":  # tokens not exchangeable: the Gram recursion
        assert "token Gram recursion" in str(e.value) and "agrees" in str(e.value), e.value


@pytest.mark.slow
@pytest.mark.parametrize("name, side", [("BERT", "chaotic"),
                                        ("TransformerEncoder post-norm", "ordered")])
def test_post_norm_transformers_have_no_critical_sigma_w(name, side):
    """Slow (2–4 min each): post-LN layers: chi_J* stays on one side of 1 along the whole
    sigma_w axis scanned, 0.01 to 10 (the encoder's Xavier-initialized layers below it; BERT's
    above it, where at small sigma_w the tokens collapse and chi_J* = 1 + sigma_w^6/2pi, within
    1e-9 of 1 below sigma_w ~ 0.04: marginal, no crossing)."""
    model, x = M.CASES[name].build(0)
    with pytest.raises(ci.NoCriticalInitError, match=side) as e:
        ci.critical_(model, example_input=x)
    assert type(e.value) is ci.NoCriticalInitError
    msg = str(e.value)
    assert "for sigma_w in [0.01, 10]" in msg and "no fixed point could be computed" not in msg
    if name == "BERT":
        # chi_J* - 1 at sigma_w = 0.01 against 1 + sigma_w^6/(2 pi) (next order 1e-17)
        end = re.search(r"chi_J\* - 1 = (\S+) at sigma_w = 0.01 ", msg)
        assert "marginal" in msg and end, msg
        assert abs(float(end.group(1)) - 0.01**6 / (2 * math.pi)) <= 1e-14


# ----------------------------------------------------------------------------- the report
def test_hf_resnet_report_gives_the_batchnorm_refusal():
    model, x = M.resnet(0)
    rep = cs.report(model, x, n_probes=2)
    assert rep.critical_point is None and "BatchNorm" in rep.critical_note
    assert len(rep.J_theory) == len(rep.J_measured) == rep.part.n_blocks + 1
    assert any("one example" in n for n in rep.notes), rep.notes


REPORT_ANSWERS = {
    "GPT-2": "grows without bound", "Llama": "grows without bound", "ViT": "grows without bound",
    "TransformerEncoder pre-norm": "grows without bound", "BERT": "chaotic",
    "TransformerEncoder post-norm": "ordered",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REPORT_ANSWERS))
def test_report_on_transformers(name):
    """Slow (1–3 min each): theory beside the measured APJN across the layers, the phase and
    the refusal of critical_, and the figure."""
    import matplotlib

    matplotlib.use("Agg")
    model, x = M.CASES[name].build(0)
    rep = cs.report(model, x, n_probes=4, critical_budget=600)
    assert rep.part.n_blocks == 2 and len(rep.J_theory) == 3
    assert np.all(np.isfinite(rep.J_theory)) and np.all(rep.J_measured_se[1:] > 0)
    assert rep.critical_point is None and REPORT_ANSWERS[name] in rep.critical_note
    assert rep.plot().axes[0].get_xlabel() == "block l"


@pytest.mark.slow
def test_report_on_bert_at_its_own_initialization_gives_phase_and_chi():
    """Slow (~3 min): BERT at its N(0, 0.02²) init (pooled sigma_w ~ 0.14): the token fixed
    point is the collapsed state, chi_J* = (1 + s_w^4 E phi'(z)^2) / (1 + s_w^2 E phi(z)^2),
    z ~ N(0, s_w^2), phi = GELU (scipy quadrature), so the phase is chaotic by ~1e-6."""
    from scipy import integrate, stats
    from scipy.special import erf

    model, x = M.CASES["BERT"].build(0)
    rep = cs.report(model, x, n_probes=4, critical_budget=600)
    sw = rep.hyperparameters["sigma_w"]

    def E(f):
        return integrate.quad(lambda z: f(z) * stats.norm.pdf(z, scale=sw), -12 * sw, 12 * sw,
                              epsabs=0, epsrel=1e-13)[0]

    cdf = lambda z: 0.5 * (1 + erf(z / math.sqrt(2)))  # noqa: E731
    e2 = E(lambda z: (z * cdf(z)) ** 2)
    d2 = E(lambda z: (cdf(z) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)) ** 2)
    chi = (1 + sw**4 * d2) / (1 + sw**2 * e2)
    assert rep.phase == "chaotic"
    assert rep.chi_star - 1 == pytest.approx(chi - 1, rel=1e-6)
    assert "for sigma_w in [0.01, 10]" in rep.critical_note
