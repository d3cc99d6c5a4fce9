r"""torchvision's and timm's models, imported and measured: the table of
``docs/models_torchvision.md``.

``python -m critsym.repro.torchvision_models [--seeds N] [--only NAME ...]`` prints the table.
It needs torchvision and timm, which do not import beside every torch build: run it in an
environment where they do (the page says how).  Every number comes from :func:`analyse`:

* **import**: ``critsym.from_torch(model, example_input)`` on the whole model: the analysed
  blocks, what is skipped (stem, head) and why, the approximations;
* **theory J**: :func:`critsym.interop.run_blocks` through the imported blocks, each with its
  own estimated σ's (derived once per structure, :func:`critsym.repro.models.template`), from
  the state of the body input measured on the example (``ImportResult.body_input``), up to
  the output of block ``stop``;
* **measured J**: ``critsym.apjn`` on the model itself from the body's input (the output of the
  ``entry`` submodule) to that block's output; mean ± SE over ``seeds`` initializations, and
  the ratio measured / theory (mean ± SE over the seeds);
* **critical_**: ``critsym.init.critical_(model, example_input=x)``: what it set, or its
  refusal.

Sizes are small (width 64, two blocks, 32×32 images) so that the table reruns on a CPU in a
few minutes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import CritsymError

WIDTH = 64


@dataclass(frozen=True)
class Case:
    """A model: ``build(seed) -> (model, example_input, entry)``, ``entry`` the submodule
    whose output is the body's input; ``stop``: the number of body blocks J runs through
    (None: all)."""

    name: str
    build: Callable
    stop: int | None = None
    note: str = ""
    critical: bool = True
    #: in the table by default (False: only when named with ``--only``)
    default: bool = True


@dataclass
class Row:
    """One line of the table."""

    model: str
    imported: str = ""
    skipped: str = ""
    approximations: str = ""
    J_theory: float | None = None
    J_measured: float | None = None
    J_measured_se: float | None = None
    ratio: float | None = None
    ratio_se: float | None = None
    z: float | None = None
    critical: str = ""
    J_block_critical: float | None = None
    J_block_critical_se: float | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Row({self.model}: theory {self.J_theory}, measured {self.J_measured} ± "
                f"{self.J_measured_se}; critical_: {self.critical})")


# ----------------------------------------------------------------------------- models
def _harness(model):
    """``model`` with an identity named ``input`` in front (its input is then a module's
    output, where :func:`critsym.apjn` can start)."""
    from torch import nn

    class Harness(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.input = nn.Identity()
            self.model = m

        def forward(self, x):
            return self.model(self.input(x))

    return Harness(model)


def images(seed: int, batch: int = 4):
    """A batch of Gaussian 3×32×32 images (float64) from their own generator."""
    import torch

    g = torch.Generator().manual_seed(10_000 + seed)
    return torch.randn(batch, 3, 32, 32, generator=g, dtype=torch.float64)


def tv_mlp(seed: int):
    """``torchvision.ops.MLP(16, [64] * 5, activation_layer=nn.ReLU)``."""
    import torch
    from torch import nn
    from torchvision.ops import MLP

    torch.manual_seed(seed)
    model = _harness(MLP(16, [WIDTH] * 5, activation_layer=nn.ReLU)).double().eval()
    g = torch.Generator().manual_seed(10_000 + seed)
    return model, torch.randn(64, 16, generator=g, dtype=torch.float64), "input"


def tv_resnet18(seed: int):
    """``torchvision.models.resnet18()`` (training mode, its default), on 8×3×32×32."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    return resnet18().double(), images(seed, 8), "maxpool"


def tv_resnet18_groupnorm(seed: int, groups: int = 8):
    """``torchvision.models.resnet18(norm_layer=lambda c: nn.GroupNorm(groups, c))`` on
    4×3×32×32 (GroupNorm normalises per example: evaluation mode, any batch); 8 groups: 8
    channels per group in the first stage."""
    import torch
    from torch import nn
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    model = resnet18(norm_layer=lambda c: nn.GroupNorm(groups, c))
    return model.double().eval(), images(seed), "maxpool"


def tv_resnet18_layernorm(seed: int):
    """resnet18 with ``GroupNorm(1, C)``: the mean field the GroupNorm(8, C) model is read as."""
    return tv_resnet18_groupnorm(seed, groups=1)


def tv_vit(seed: int):
    """torchvision's ``VisionTransformer(image_size=32, patch_size=8, num_layers=2,
    num_heads=2, hidden_dim=64, mlp_dim=128)``."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=WIDTH, mlp_dim=2 * WIDTH)
    return model.double().eval(), images(seed), "encoder.dropout"


def tv_vit_layers(seed: int):
    """The real torchvision ViT's two encoder layers alone, on 17 exchangeable Gaussian
    tokens."""
    import torch
    from torch import nn

    model, _, _ = tv_vit(seed)
    layers = nn.Sequential(nn.Identity(), *model.encoder.layers)
    g = torch.Generator().manual_seed(10_000 + seed)
    return layers, torch.randn(4, 17, WIDTH, generator=g, dtype=torch.float64), "0"


def timm_vit(seed: int, **kw):
    """timm's ``VisionTransformer(img_size=32, patch_size=8, depth=2, embed_dim=64,
    num_heads=2)`` (ViT-Tiny's structure, smaller), its own initialization."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(img_size=32, patch_size=8, depth=2, embed_dim=WIDTH, num_heads=2,
                              num_classes=10, **kw)
    return model.double().eval(), images(seed), "norm_pre"


def timm_vit_avg(seed: int):
    """timm's ViT without a class token, average-pooled (``class_token=False,
    global_pool="avg"``)."""
    return timm_vit(seed, class_token=False, global_pool="avg")


def timm_mixer(seed: int, act=None, zero_bias: bool = False):
    """timm's ``MlpMixer(img_size=32, patch_size=8, num_blocks=2, embed_dim=64)`` (GELU)."""
    import torch
    from timm.models.mlp_mixer import MlpMixer
    from torch import nn

    torch.manual_seed(seed)
    model = MlpMixer(img_size=32, patch_size=8, num_blocks=2, embed_dim=WIDTH, num_classes=10,
                     **({} if act is None else {"act_layer": act}))
    if zero_bias:
        with torch.no_grad():
            for m in model.blocks.modules():
                if isinstance(m, nn.Linear):
                    m.bias.zero_()
    return model.double().eval(), images(seed), "stem"


def timm_mixer_relu(seed: int):
    """timm's Mixer with ReLU and its blocks' biases zeroed (weights as timm draws them)."""
    from torch import nn

    return timm_mixer(seed, act=nn.ReLU, zero_bias=True)


CASES: dict[str, Case] = {c.name: c for c in [
    Case("torchvision.ops.MLP", tv_mlp),
    Case("torchvision resnet18", tv_resnet18),
    Case("torchvision resnet18, GroupNorm(8, C)", tv_resnet18_groupnorm),
    Case("torchvision resnet18, GroupNorm(1, C)", tv_resnet18_layernorm),
    Case("torchvision ViT", tv_vit, stop=2, note="J to the last encoder layer"),
    Case("torchvision ViT encoder layers (Gaussian tokens)", tv_vit_layers, critical=False),
    Case("timm ViT", timm_vit, stop=2, note="J to the last block"),
    Case("timm ViT, no class token (global_pool='avg')", timm_vit_avg),
    # the Mixer's body starts with the Transpose in its stem's forward (J = 1), whose output
    # is the stem's: J runs through it and the two Mixer blocks
    Case("timm MLP-Mixer (GELU)", timm_mixer, stop=3),
    Case("timm MLP-Mixer (ReLU, zero biases)", timm_mixer_relu, stop=3),
]}


# ----------------------------------------------------------------------------- pieces
def imported(model, x):
    """``critsym.from_torch(model, x)`` (per-layer σ's differ by design in these models — fan-in
    scaled initializations — so the pooling warning is silenced: each block keeps its own)."""
    from ..importer import from_torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_torch(model, example_input=x)


def body_theory(res, stop: int | None = None) -> float:
    """J^{0,stop} of the import's theory (:meth:`critsym.ImportResult.J_theory`: each block at
    its own estimates from the measured input state; the token Gram recursion for tokens not
    alike, the position-resolved theory for zero-padded conv bodies) through the first
    ``stop`` imported blocks (default all)."""
    J = res.J_theory()
    return float(J[len(res.blocks) if stop is None else stop])


def measured(model, x, entry: str, outputs, seed: int) -> float:
    """J from the output of ``entry`` to the last of ``outputs``, by :func:`critsym.apjn`."""
    from ..torch.apjn import apjn
    from ..torch.batch_stats import frozen_batch_stats
    from .models import _mixes_batch

    mixes = _mixes_batch(model)  # BatchNorm in training mode: the batch is one example
    with frozen_batch_stats(model):
        return float(apjn(model, x, [entry, *outputs], n_probes=8, seed=seed, progress=False,
                          batch_axis=None if mixes else 0).J[-1])


def compare(case: Case, seeds: int = 8) -> tuple[np.ndarray, np.ndarray, object]:
    """(theory, measured, the last seed's ImportResult): J per seed, see the module doc."""
    th, me, res = [], [], None
    for s in range(seeds):
        model, x, entry = case.build(s)
        res = imported(model, x)
        n = len(res.blocks) if case.stop is None else case.stop
        outs = res.outputs[:n]
        if any(o is None for o in outs):
            raise CritsymError(f"{case.name}: a block's output is no module's output ({outs})")
        th.append(body_theory(res, n))
        me.append(measured(model, x, entry, outs, s))
    return np.array(th), np.array(me), res


def one_block_after_critical(case: Case, seeds: int = 8) -> tuple[float, float, int]:
    """``critical_(model, example_input=x)``, then the APJN of each body block whose weights it
    changed (its input → its output; stem and head are left as they were), measured by
    :func:`critsym.apjn`: (mean, SE, number of block measurements) over blocks and seeds.  The
    first block is left out: it maps the body input, whose width may differ (an MLP's input
    layer), so its APJN is not the block map's χ."""
    import torch

    from ..init import critical_

    out = []
    for s in range(seeds):
        model, x, entry = case.build(s)
        res = imported(model, x)
        named = dict(model.named_modules())
        before = {p: [t.detach().clone() for t in named[p].parameters()]
                  for b in res.blocks for p in b.layers}
        critical_(model, example_input=x)
        starts = [entry, *res.outputs[:-1]]
        for b, a in zip(res.blocks[1:], starts[1:], strict=True):
            changed = any(not torch.equal(t0, t) for p in b.layers
                          for t0, t in zip(before[p], named[p].parameters(), strict=True))
            if changed and a is not None and b.output is not None:
                out.append(measured(model, x, a, [b.output], s))
    m, se = _mse(out) if out else (float("nan"), float("nan"))
    return m, se, len(out)


def _mse(v) -> tuple[float, float]:
    v = np.asarray(v, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def _short(e: Exception, n: int = 200) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= n else text[: n - 1] + "…"


def analyse(case: Case, seeds: int = 8) -> Row:
    """One row of the table (see the module doc)."""
    row = Row(case.name)
    model, x, _ = case.build(0)
    try:
        res = imported(model, x)
    except CritsymError as e:
        row.imported = "refused: " + _short(e)
        return row
    row.imported = f"analysed {res.analysed}"
    row.skipped = "; ".join(dict.fromkeys(f"{s.part} {s.path or '<model>'}"
                                          for s in res.skipped)) or "nothing"
    row.approximations = "; ".join(f"{k}: {v}" for k, v in res.approximations.items())
    try:
        th, me, _ = compare(case, seeds)
    except CritsymError as e:
        row.notes.append("not measured: " + _short(e))
    else:
        row.J_theory = float(th.mean())
        row.J_measured, row.J_measured_se = _mse(me)
        row.ratio, row.ratio_se = _mse(me / th)
        d, se = _mse(me - th)
        row.z = d / se if se > 0 else float("nan")
    if not case.critical:
        row.critical = "not tried (a check of the reader)"
        return row
    from ..init import critical_

    try:
        row.critical = repr(critical_(model, example_input=x))
    except CritsymError as e:
        row.critical = "refused: " + _short(e)
        return row
    row.J_block_critical, row.J_block_critical_se, _ = one_block_after_critical(case, seeds)
    return row


def _fmt(v, se=None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4g}" if se is None else f"{v:.4g} ± {se:.2g}"


def table(rows) -> str:
    """The markdown table of ``rows``."""
    lines = ["| model | import | skipped | J theory | J measured | measured/theory | z | "
             "critical_ | one-block APJN after critical_ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r.model, r.imported, r.skipped, _fmt(r.J_theory),
                 _fmt(r.J_measured, r.J_measured_se), _fmt(r.ratio, r.ratio_se),
                 _fmt(r.z), r.critical + ("; " + "; ".join(r.notes) if r.notes else ""),
                 _fmt(r.J_block_critical, r.J_block_critical_se)]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ")
                                        for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m critsym.repro.torchvision_models",
                                 description=__doc__)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args(argv)
    names = args.only or [n for n, c in CASES.items() if c.default]
    rows = []
    for n in names:
        rows.append(analyse(CASES[n], args.seeds))
        print(repr(rows[-1]), flush=True)
    text = table(rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
