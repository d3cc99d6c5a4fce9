r"""The models people use, imported and measured: the table of ``docs/models.md``.

``python -m critsym.repro.models [--seeds N] [--widths W ...] [--only NAME ...] [--docs PAGE]``
prints the table (and writes it into PAGE between its markers); every number in it comes from
:func:`analyse`:

* **import**: ``critsym.from_torch(model, example_input)`` on the whole model (what it
  analyses and skips, or its refusal);
* **body**: the model's layers imported one by one with ``critsym.from_torch`` (each given
  the input it receives in the model), so that every layer is a block whose output
  ``critsym.apjn`` can measure from;
* **theory J^{0,L}**: :func:`critsym.interop.run_blocks` through every layer's blocks with
  their own estimates, from the state of the body input measured on the example
  (:func:`critsym.interop.network.body_input`); for a token body whose tokens are not
  exchangeable (a causal mask, tokens not alike) the token Gram recursion from each example's
  measured input Gram (:func:`body_theory_run`, the exchangeable value in "parts analysed");
* **measured J^{0,L}**: ``critsym.apjn`` from the stem's output to the last layer's output on
  the model itself, over ``seeds`` independent initializations (mean ± SE over them);
* **critical_**: ``critsym.init.critical_(model, example_input)`` on seed 0: the critical
  value it set, or its refusal with the reason;
* **after critical_**: where it set one, the measured APJN of each redrawn block (its input →
  its output) after ``critical_`` on every seed, mean ± SE over blocks and seeds, and
  extrapolated in 1/width.

Sizes are tiny (width 32–64, two layers) so that the table reruns on a CPU in about a minute;
theory and measurement then differ by the finite-width corrections O(1/width) on top of the
sampling error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CritsymError

#: hidden width of the tiny models (their MLPs are twice as wide)
WIDTH = 32
TOKENS = 8


@dataclass(frozen=True)
class Case:
    """A model to analyse: ``build(seed) -> (model, example_input)``; ``stem``: the submodule
    whose output enters the body (None: the model's input, through an identity the harness
    adds); ``blocks``: the body's layers, each (output submodule, submodules forming it)."""

    name: str
    build: Callable
    stem: str | None
    blocks: tuple[tuple[str, tuple[str, ...]], ...]
    note: str = ""


@dataclass
class Row:
    """One line of the table."""

    model: str
    status: str = ""
    reason: str = ""
    analysed: str = ""
    approximations: str = ""
    J_theory: float | None = None
    J_measured: float | None = None
    J_measured_se: float | None = None
    z: float | None = None
    ratio_inf: float | None = None
    ratio_inf_se: float | None = None
    critical: str = ""
    J_block_critical: float | None = None
    J_block_critical_se: float | None = None
    J_block_critical_inf: float | None = None
    J_block_critical_inf_se: float | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Row({self.model}: {self.status}; J theory {self.J_theory}, measured "
                f"{self.J_measured} ± {self.J_measured_se})")


# ----------------------------------------------------------------------------- models
#: Hugging Face settings for import: no key/value cache object in the outputs and plain tuple
#: outputs (the first one the features), which graph capture can read
HF_FLAGS = dict(use_cache=False, return_dict=False)

def _hf():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def _tokens(seed: int, vocab: int = 50):
    import torch

    g = torch.Generator().manual_seed(10_000 + seed)
    return torch.randint(0, vocab, (4, TOKENS), generator=g)


def gpt2(seed: int, width: int = WIDTH):
    import torch

    T = _hf()
    torch.manual_seed(seed)
    cfg = T.GPT2Config(n_embd=width, n_layer=2, n_head=2, vocab_size=50, n_positions=16,
                       bos_token_id=0, eos_token_id=0, **HF_FLAGS)
    return T.GPT2Model(cfg).double().eval(), _tokens(seed)


def bert(seed: int, width: int = WIDTH):
    import torch

    T = _hf()
    torch.manual_seed(seed)
    cfg = T.BertConfig(hidden_size=width, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=2 * width, vocab_size=50, max_position_embeddings=16,
                       **HF_FLAGS)
    return T.BertModel(cfg, add_pooling_layer=False).double().eval(), _tokens(seed)


def vit(seed: int, width: int = WIDTH):
    import torch

    T = _hf()
    torch.manual_seed(seed)
    cfg = T.ViTConfig(hidden_size=width, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=2 * width, image_size=8, patch_size=4, num_channels=3,
                      **HF_FLAGS)
    g = torch.Generator().manual_seed(10_000 + seed)
    return (T.ViTModel(cfg, add_pooling_layer=False).double().eval(),
            torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64))


def llama(seed: int, width: int = WIDTH):
    import torch

    T = _hf()
    torch.manual_seed(seed)
    cfg = T.LlamaConfig(hidden_size=width, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, intermediate_size=2 * width, vocab_size=50,
                        max_position_embeddings=16, **HF_FLAGS)
    return T.LlamaModel(cfg).double().eval(), _tokens(seed)


def resnet(seed: int, width: int = WIDTH):
    import torch

    T = _hf()
    torch.manual_seed(seed)
    cfg = T.ResNetConfig(embedding_size=width // 4, hidden_sizes=[width // 4, width // 2],
                         depths=[2, 1], num_channels=3, layer_type="basic", **HF_FLAGS)
    g = torch.Generator().manual_seed(10_000 + seed)
    return (T.ResNetModel(cfg).double().train(),
            torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64))


def _encoder(seed: int, norm_first: bool, width: int = WIDTH):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True,
                                       norm_first=norm_first, dtype=torch.float64)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    g = torch.Generator().manual_seed(10_000 + seed)
    return enc, torch.randn(4, TOKENS, width, generator=g, dtype=torch.float64)


def encoder_post(seed: int, width: int = WIDTH):
    return _encoder(seed, False, width)


def encoder_pre(seed: int, width: int = WIDTH):
    return _encoder(seed, True, width)


def flat_mlp(seed: int, width: int = WIDTH):
    """``nn.Sequential(Linear, ReLU, Linear, ReLU, …)``: torch's default initialization."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(16, 2 * width)]
    for _ in range(4):
        layers += [nn.ReLU(), nn.Linear(2 * width, 2 * width)]
    g = torch.Generator().manual_seed(10_000 + seed)
    return nn.Sequential(*layers).double(), torch.randn(64, 16, generator=g,
                                                        dtype=torch.float64)


def nested_mlp(seed: int, width: int = WIDTH):
    """``nn.Sequential`` of ``nn.Sequential(Linear, ReLU)`` blocks (Linear before the
    activation, each pair its own module): torch's default initialization."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    dims = [16] + [2 * width] * 5
    model = nn.Sequential(*[nn.Sequential(nn.Linear(a, b), nn.ReLU())
                            for a, b in zip(dims[:-1], dims[1:], strict=True)])
    g = torch.Generator().manual_seed(10_000 + seed)
    return model.double(), torch.randn(64, 16, generator=g, dtype=torch.float64)


def torchvision_mlp(seed: int, width: int = WIDTH):
    """``torchvision.ops.MLP(16, [64]*5, activation_layer=nn.ReLU)`` when torchvision imports,
    else its structural copy: per hidden layer Linear, activation, Dropout; last Linear,
    Dropout."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    try:
        from torchvision.ops import MLP  # noqa: PLC0415 - optional

        model = MLP(16, [2 * width] * 5, activation_layer=nn.ReLU, dropout=0.0)
    except Exception:  # noqa: BLE001 - torchvision absent or unusable with this torch
        layers: list[nn.Module] = []
        d = 16
        for _ in range(4):
            layers += [nn.Linear(d, 2 * width), nn.ReLU(), nn.Dropout(0.0)]
            d = 2 * width
        layers += [nn.Linear(d, 2 * width), nn.Dropout(0.0)]
        model = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(10_000 + seed)
    return model.double().eval(), torch.randn(64, 16, generator=g, dtype=torch.float64)


CASES: dict[str, Case] = {c.name: c for c in [
    Case("GPT-2", gpt2, "drop", tuple((f"h.{i}", (f"h.{i}",)) for i in range(2))),
    Case("BERT", bert, "embeddings",
         tuple((f"encoder.layer.{i}", (f"encoder.layer.{i}",)) for i in range(2))),
    Case("ViT", vit, "embeddings", tuple((f"layers.{i}", (f"layers.{i}",)) for i in range(2))),
    Case("Llama", llama, "embed_tokens",
         tuple((f"layers.{i}", (f"layers.{i}",)) for i in range(2))),
    Case("ResNet (HF)", resnet, "embedder",
         (("encoder.stages.0.layers.0", ("encoder.stages.0.layers.0",)),
          ("encoder.stages.0.layers.1", ("encoder.stages.0.layers.1",)))),
    Case("TransformerEncoder post-norm", encoder_post, None,
         tuple((f"layers.{i}", (f"layers.{i}",)) for i in range(2))),
    Case("TransformerEncoder pre-norm", encoder_pre, None,
         tuple((f"layers.{i}", (f"layers.{i}",)) for i in range(2))),
    Case("flat nn.Sequential MLP", flat_mlp, "0",
         tuple((str(2 * i), (str(2 * i - 1), str(2 * i))) for i in range(1, 5))),
    Case("nested Linear → act stack", nested_mlp, "0.0",
         tuple((f"{i}.0", (f"{i - 1}.1", f"{i}.0")) for i in range(1, 5))),
    Case("torchvision.ops.MLP (structure)", torchvision_mlp, "0",
         tuple((str(3 * i), (str(3 * i - 2), str(3 * i - 1), str(3 * i)))
               for i in range(1, 5))),
]}


# ----------------------------------------------------------------------------- pieces
class _Harness:
    """The model with an identity in front (so the body's input is a module's output)."""

    def __new__(cls, model):
        from torch import nn

        class Harness(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.input = nn.Identity()
                self.model = m

            def forward(self, x):
                return self.model(self.input(x))

        return Harness(model)


def _names(case: Case, harness: bool) -> tuple[str, list[str]]:
    pre = "model." if harness else ""
    stem = "input" if case.stem is None else pre + case.stem
    return stem, [pre + out for out, _ in case.blocks]


def layer_inputs(model, x) -> tuple[dict, dict]:
    """Run ``model(x)`` once, recording for every submodule the tensor it receives (its first
    positional argument, or the ``hidden_states`` keyword: Hugging Face layers take their input
    by keyword) and its output: ({id(module): input}, {id(module): output})."""
    import torch

    ins, outs, hooks = {}, {}, []

    def pre(m, args, kwargs):
        t = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get(
            "hidden_states")
        if isinstance(t, torch.Tensor):
            ins.setdefault(id(m), t.detach())

    def post(m, args, out):
        if isinstance(out, torch.Tensor):
            outs.setdefault(id(m), out.detach())

    for m in model.modules():
        hooks.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(m.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return ins, outs


@dataclass(frozen=True)
class Body:
    """The body of one model, imported layer by layer with :func:`critsym.from_torch` (each
    layer given the input it receives in the model): ``results`` (one ImportResult per layer),
    ``blocks`` (their :class:`~critsym.interop.BodyBlock` s, in order), ``approximations``,
    ``h0`` (the body's input on the example)."""

    results: tuple
    blocks: tuple
    approximations: dict
    h0: object


def read_body(model, x, case: Case) -> Body:
    """Import the body of ``model`` layer by layer (``case.blocks``; a layer made of several
    sibling modules is imported as their ``nn.Sequential``).  Raises the importer's
    :class:`~critsym.errors.CritsymError` where a layer is not imported whole."""
    import warnings

    from torch import nn

    from ..errors import UnsupportedModuleError
    from ..importer import from_torch

    ins, outs = layer_inputs(model, x)
    named = dict(model.named_modules())
    results, blocks, approx = [], [], {}
    for _, parts in case.blocks:
        mods = [named[p] for p in parts]
        layer = mods[0] if len(mods) == 1 else nn.Sequential(*mods)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = from_torch(layer, example_input=ins[id(mods[0])])
        if res.skipped:
            raise UnsupportedModuleError(
                f"layer {parts[0]!r} is not imported whole: " +
                "; ".join(f"{s.path}: {s.reason}" for s in res.skipped))
        results.append(res)
        blocks += res.blocks
        approx.update({f"{parts[0]}.{k}" if k != "<model>" else parts[0]: v
                       for k, v in res.approximations.items()})
    h0 = x if case.stem is None else outs[id(named[case.stem])]
    return Body(tuple(results), tuple(blocks), approx, h0)


def template(op):
    """:func:`critsym.body.numeric_form`: ``op`` with each non-integer hyperparameter its own
    symbol, and the values (blocks of one structure share one derivation)."""
    from ..body import numeric_form

    return numeric_form(op)


_DERIVED: dict = {}


def _pair(block):
    """(Theory, values) of a :class:`~critsym.interop.BodyBlock`: its numeric ``arch`` as a
    :func:`template`, so that layers of one structure share one derivation, in the body's
    state kind (:func:`critsym.interop.derive_block`)."""
    from ..interop import derive_block

    tpl, values = template(block.arch)
    key = (tpl, block.axes, block.tokens)
    if key not in _DERIVED:
        _DERIVED[key] = derive_block(tpl, block.axes, block.tokens)
    return _DERIVED[key], values


def body_theory(body: Body) -> float:
    """J^{0,L} of the theory across the body (:func:`body_theory_run`)."""
    return body_theory_run(body)[0]


def body_theory_run(body: Body) -> tuple[float, str]:
    """(J^{0,L}, which theory) across the body.  A token body whose tokens are not
    exchangeable (a causal mask, or tokens not alike at the body input, labelled by the
    import: :func:`critsym.attention.gram_theory.gram_kind`) runs the token Gram recursion
    from each example's Gram measured at the body input
    (:func:`critsym.attention.causal.body_causal_theory`); where it cannot run the body, the
    exchangeable theory, labelled why.  Other bodies: :func:`critsym.interop.run_blocks`
    through every layer's blocks with their own estimates, from the state of the body input
    measured on the example (:func:`critsym.interop.network.body_input`)."""
    from ..attention.gram_theory import (
        GRAM_ERRORS,
        exchangeable_fallback,
        gram_kind,
        theory_label,
    )

    kind = gram_kind(body.approximations)
    fallback = ""
    if kind is not None:
        from ..attention.causal import body_causal_theory

        try:
            return float(body_causal_theory(body, causal=kind[0]).J[-1]), theory_label(*kind)
        except GRAM_ERRORS as e:
            fallback = exchangeable_fallback(e)
    return exchangeable_body_theory(body), fallback or "exchangeable"


def exchangeable_body_theory(body: Body) -> float:
    """J^{0,L} of the exchangeable theory across the body: :func:`critsym.interop.run_blocks`
    through every layer's blocks with their own estimates, from the state of the body input
    measured on the example (:func:`critsym.interop.network.body_input`)."""
    from ..interop import run_blocks
    from ..interop.network import body_input
    from ..ops.contract import contains

    def has(kind):
        return any(contains(b.arch, kind) for b in body.blocks)

    bn = has(lambda o: type(o).__name__ == "BatchNorm")  # rows: the batch (as the importer)
    start = body_input(body.h0, any(b.axes or b.tokens for b in body.blocks),
                       "batch" if bn else "tokens", has(lambda o: type(o).channels_first))
    return float(run_blocks([_pair(b) for b in body.blocks], **start.state()).J[-1])


def part_theory(result, K: float) -> float:
    """The APJN of an imported single-axis part (its ImportResult) from a Gaussian input of
    variance K: :func:`critsym.interop.run_blocks` from K⁰ = K."""
    from ..interop import run_blocks

    return float(run_blocks([_pair(b) for b in result.blocks], K0=K).J[-1])


@dataclass(frozen=True)
class Comparison:
    """Per-seed theory and measurement of one quantity: ``theory[s]`` from seed s's own
    estimated weight scales and measured input state, ``measured[s]`` by ``critsym.apjn`` on
    that same initialization; ``diff`` = mean and SE of measured − theory over the seeds."""

    theory: np.ndarray
    measured: np.ndarray

    @property
    def diff(self) -> tuple[float, float]:
        return _mse(self.measured - self.theory)

    @property
    def z(self) -> float:
        m, se = self.diff
        return m / se if se > 0 else float("nan")

    @property
    def ratio(self) -> tuple[float, float]:
        """Mean and SE over the seeds of measured / theory."""
        return _mse(self.measured / self.theory)

    def __repr__(self) -> str:
        t, (m, se) = float(self.theory.mean()), _mse(self.measured)
        return f"Comparison(theory {t:.4g}, measured {m:.4g} ± {se:.2g}, z = {self.z:.2f})"


def extrapolated_ratio(widths, comparisons) -> tuple[float, float, float]:
    """measured / theory extrapolated to infinite width (the weighted fit r = r_∞ + a/N of
    :func:`critsym.torch.validate.extrapolate`): (r_∞, SE, a)."""
    from ..torch.validate import extrapolate

    r = [c.ratio for c in comparisons]
    return extrapolate(list(widths), [m for m, _ in r], [se for _, se in r])


def _body_of(case: Case, seed: int, init=None, width: int = WIDTH):
    model, x = case.build(seed, width)
    if init is not None:
        init(model, x)
    return model, x, read_body(model, x, case)


def compare(case: Case, seeds: int, n_probes: int = 8, init=None, theory: bool = True,
            width: int = WIDTH) -> Comparison:
    """J^{0,L} (stem output → last body layer) of the theory and measured by ``critsym.apjn``,
    on ``seeds`` independent initializations (``init(model, x)`` re-initializes first)."""
    from ..torch.apjn import apjn

    th, me = [], []
    for s in range(seeds):
        model, x, body = _body_of(case, s, init, width)
        th.append(body_theory(body) if theory else float("nan"))
        net = _Harness(model) if case.stem is None else model
        stem, outs = _names(case, case.stem is None)
        r = apjn(net, x, [stem, *outs], n_probes=n_probes, seed=s,
                 batch_axis=None if _mixes_batch(model) else 0)
        me.append(float(r.J[-1]))
    return Comparison(np.array(th), np.array(me))


def compare_part(build_part, K: float, seeds: int, shape=(64, WIDTH), n_probes: int = 8
                 ) -> Comparison:
    """One single-axis part of a model (``build_part(seed)`` → the module), imported by
    :func:`critsym.from_torch`: its theory APJN at input variance ``K`` against the APJN
    measured with Gaussian inputs of variance K of ``shape``, per initialization."""
    import torch

    from ..importer import from_torch
    from ..torch.apjn import apjn

    th, me = [], []
    for s in range(seeds):
        part = build_part(s)
        g = torch.Generator().manual_seed(20_000 + s)
        x = math.sqrt(K) * torch.randn(*shape, generator=g, dtype=torch.float64)
        with warnings.catch_warnings():  # the part's layers differ: each keeps its own σ̂
            warnings.simplefilter("ignore")
            res = from_torch(part, example_input=x)
        th.append(part_theory(res, K))
        me.append(float(apjn(_Harness(part), x, ["input", "model"], n_probes=n_probes,
                             seed=s).J[-1]))
    return Comparison(np.array(th), np.array(me))


def _mixes_batch(model) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               for m in model.modules())


def _mse(v):
    v = np.asarray(v, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def _grouped(approx: dict) -> str:
    """'path, path: text' per distinct approximation text (each path's texts split on '; ')."""
    by: dict[str, list[str]] = {}
    for path, text in approx.items():
        for t in text.split("; "):
            by.setdefault(t, []).append(path)
    return "; ".join(f"{', '.join(p)}: {t}" for t, p in by.items())


def _short(e: Exception, n: int = 220) -> str:
    text = str(e).split(". Supported:")[0]
    return text if len(text) <= n else text[: n - 1] + "…"


# ----------------------------------------------------------------------------- analysis
def analyse(case: Case, seeds: int = 8, widths: tuple[int, ...] = (WIDTH,)) -> Row:
    """One row of the table (see the module docstring)."""
    from .. import importer

    row = Row(case.name)
    model, x = case.build(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = importer.from_torch(model, example_input=x)
            row.status = "imported"
            skipped = ", ".join(dict.fromkeys(f"{k.part} {k.path}" for k in res.skipped))
            row.reason = f"analysed {res.analysed}" + (f"; skipped {skipped}" if skipped else "")
        except CritsymError as e:
            row.status, row.reason = "refused", _short(e)
    try:
        body = read_body(model, x, case)
    except CritsymError as e:
        row.analysed = f"body not read: {_short(e)}"
        _critical_answer(case, row)
        return row
    row.approximations = _grouped(body.approximations)
    theory = True
    try:
        _, which = body_theory_run(body)
        row.analysed = f"{len(case.blocks)} body layers ({case.blocks[0][0]} … " \
                       f"{case.blocks[-1][0]})"
        if which != "exchangeable":
            row.analysed += f"; theory: {which}"
            if which.startswith("token Gram recursion"):
                row.analysed += (f" (exchangeable token theory, seed 0: "
                                 f"{exchangeable_body_theory(body):.4g})")
    except CritsymError as e:
        theory = False
        row.analysed = f"body read, theory not available: {_short(e)}"
    try:
        comps = [compare(case, seeds, theory=theory, width=w) for w in widths]
    except (CritsymError, RuntimeError) as e:  # e.g. torch.func refusing an in-place sum
        row.analysed += f"; not measured: {_short(e, 160)}"
        _critical_answer(case, row)
        return row
    c = comps[0]
    row.J_measured, row.J_measured_se = _mse(c.measured)
    if theory:
        row.J_theory, row.z = float(c.theory.mean()), c.z
        if len(widths) > 1:
            r, se, _ = extrapolated_ratio(widths, comps)
            row.ratio_inf, row.ratio_inf_se = r, se
    if not _critical_answer(case, row):
        return row
    per_width = []
    for w in widths:
        per_width.append(after_critical(case, seeds, width=w))
    row.J_block_critical, row.J_block_critical_se = per_width[0]
    if len(widths) > 1:
        from ..torch.validate import extrapolate

        r, se, _ = extrapolate(list(widths), [m for m, _ in per_width],
                               [s for _, s in per_width])
        row.J_block_critical_inf, row.J_block_critical_inf_se = r, se
    return row


def _critical_answer(case: Case, row: Row) -> bool:
    """``critsym.init.critical_`` on seed 0 (a refusal does not depend on the seed): the value
    it set or its refusal into ``row.critical``; True when it set one."""
    from ..init import critical_

    model, x = case.build(0)
    try:
        point = critical_(model, example_input=x)
    except CritsymError as e:
        row.critical = f"refused ({type(e).__name__}): {_short(e)}"
        return False
    row.critical = f"{point.solve_for} = {point.value:.6g}"
    return True


def after_critical(case: Case, seeds: int, n_probes: int = 8, width: int = WIDTH):
    """The one-block APJN after ``critsym.init.critical_`` (each redrawn block's input → its
    output, the blocks critical_ analysed), over ``seeds`` initializations: (mean, SE) over
    blocks and seeds."""
    import torch

    from ..init import critical_
    from ..torch.apjn import apjn

    out = []
    for s in range(seeds):
        model, x = case.build(s, width)
        res = critical_(model, example_input=x, generator=torch.Generator().manual_seed(s))
        net = _Harness(model)
        ends = ["input" if p is None else f"model.{p}" for p in
                (res.part.inputs, *res.part.outputs)]
        for a, b in zip(ends[:-1], ends[1:], strict=True):
            out.append(float(apjn(net, x, [a, b], n_probes=n_probes, seed=s,
                                  batch_axis=None if _mixes_batch(model) else 0).J[-1]))
    return _mse(out)


def _fmt(v, se=None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4g}" if se is None else f"{v:.4g} ± {se:.2g}"


def table(rows) -> str:
    """The markdown table of ``rows``."""
    head = ("| model | import | parts analysed | approximations | J^{0,L} theory | "
            "J^{0,L} measured | measured/theory, 1/width → 0 | critical_ | one-block APJN "
            "after critical_ (1/width → 0) |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        imp = r.status + (f": {r.reason}" if r.reason else "")
        crit = _fmt(r.J_block_critical, r.J_block_critical_se)
        if r.J_block_critical_inf is not None:
            crit += f" ({_fmt(r.J_block_critical_inf, r.J_block_critical_inf_se)})"
        if crit == "—" and r.notes:
            crit = "— (" + "; ".join(r.notes) + ")"
        lines.append(" | ".join([
            f"| {r.model}", imp.replace("|", "/"), r.analysed.replace("|", "/"),
            r.approximations or "none", _fmt(r.J_theory),
            _fmt(r.J_measured, r.J_measured_se), _fmt(r.ratio_inf, r.ratio_inf_se),
            (r.critical or "—").replace("|", "/"), crit]) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m critsym.repro.models", description=__doc__)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--widths", type=int, nargs="*", default=[WIDTH, 2 * WIDTH])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--docs", default=None,
                    help="also write the table into this page, between its markers "
                         f"{START!r} and {END!r}")
    args = ap.parse_args(argv)
    if args.docs is not None:
        _check_page(args.docs)
    names = args.only or list(CASES)
    text = table([analyse(CASES[n], args.seeds, tuple(args.widths)) for n in names])
    print(text)
    if args.docs is not None:
        page = Path(args.docs).read_text()
        i, j = page.index(START) + len(START), page.index(END)
        Path(args.docs).write_text(page[:i] + "\n" + text + "\n" + page[j:])
    return text


START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def _check_page(path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise CritsymError(f"--docs {path}: no such file")
    page = p.read_text()
    if START not in page or END not in page or page.index(START) > page.index(END):
        raise CritsymError(f"--docs {path}: the page has no {START!r} … {END!r} markers")


if __name__ == "__main__":
    main()
