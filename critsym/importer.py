r"""Torch models ↔ critsym architectures.

:func:`from_torch` maps a ``torch.nn`` model to a critsym architecture and estimates σ_w, σ_b
from its actual weights; :func:`to_torch_model` builds a plain torch model (standard
``nn.Linear``, ``nn.Conv2d``, ``nn.LayerNorm`` … modules) from an architecture, so that
build → torch → import → theory round-trips.

Estimators (weights assumed i.i.d. at initialization).  For a layer with n weights of fan-in f,
    σ̂_w² = f · mean(W²),   SE(σ̂_w) = σ̂_w / √(2n)      (Var σ̂_w² = 2σ_w⁴/n for Gaussian W),
    σ̂_b² = mean(b²),       SE(σ̂_b) = σ̂_b / √(2 n_b)   (0 when the layer has no bias).
Pooled over all layers of the repeating block (the same σ_w, σ_b everywhere):
    σ̂_w² = Σ_layers f·ΣW² / Σ n, and likewise for σ_b — only when the per-layer estimates agree
within their standard errors (a χ² test, :class:`LayerAgreement`); otherwise the result says so
and no single-σ block is returned.  (For non-Gaussian initializations, e.g.
torch's default uniform Kaiming, σ̂ is still the right second moment and the SE is
σ̂·√(Var(W²)/(n E[W²]²))/2, computed from the sample kurtosis.)

Mapping.  Every operator declares the torch module types it claims and how it reads them
(``Op.torch_types`` / ``Op.read_torch``) and the patterns it recognises by evaluation
(``Op.probe_torch``); this module only walks the model and asks the registries
(:mod:`critsym.ops.contract`).  Built in (channels-first torch conv nets map to critsym's
channels-last ops, which compute the same per-position maps):

* ``nn.Sequential`` → ``Sequential``; ``nn.Identity``, ``nn.Dropout`` (evaluation mode) and
  parameter-free modules returning their input → skipped;
* ``nn.Linear`` → ``Linear``; ``nn.Conv1d/2d/3d`` (odd square kernel, stride 1, dilation 1,
  groups 1, 'same' padding) → ``Conv`` with its padding mode;
* ``nn.LayerNorm``, ``nn.GroupNorm(1, C)`` (γ = 1, β = 0, as at initialization) → ``LayerNorm``;
* the activation table's modules (ReLU, LeakyReLU, Tanh, GELU, SiLU, Sigmoid, Softplus(β=1),
  ELU(α=1), SELU) → ``Act``;
* ``nn.AvgPool{1,2,3}d`` → ``AvgPool``; ``nn.AdaptiveAvgPool{1,2,3}d(1)`` → ``GlobalAvgPool``;
* a module with a child ``branch`` and a number ``mu`` → ``Residual``;
* a parameter-free module that transposes the last two axes (e.g. an einops ``Rearrange``)
  → ``Transpose``; with ``example_input``, a container whose output is μ·x + (its children
  applied in some order)(x) → ``Residual`` (e.g. a Mixer's ``PreNormResidual``), and a
  container equal to its children in order → ``Sequential``;
* ``nn.BatchNorm1d/2d/3d`` in training mode (γ = 1, β = 0) → ``BatchNorm()`` (the
  infinite-batch rule; evaluation mode is refused, see :mod:`critsym.ops.batchnorm`);
* anything else raises :class:`UnsupportedModuleError` naming the submodule.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SimulationError, UnsupportedModuleError
from .ops import Act, Sequential
from .ops.base import Op, as_op
from .ops.contract import claimant, contains, probe_leaf, torch_probes
from .torch.modules import (  # noqa: F401 - plain modules, importable from here as before
    ActModule,
    ChannelsFirstLayerNorm,
    ExportContext,
    OpModule,
    ResidualModule,
    SwapLastAxes,
)

#: modules that compute the identity in evaluation mode (skipped on import)
SKIPPED = (nn.Identity, nn.Dropout)
#: p-value below which per-layer σ estimates are taken to differ (not pooled)
POOL_P_MIN = 1e-4


class PoolingWarning(UserWarning):
    """Per-layer weight scales of an imported model differ beyond their sampling error."""


@dataclass(frozen=True)
class Estimate:
    """A σ estimate with its sampling standard error and the number of samples behind it."""

    value: float
    se: float
    n: int

    def __repr__(self) -> str:
        return f"{self.value:.5g} ± {self.se:.2g} (n={self.n})"


@dataclass
class _Layer:
    path: str
    kind: str
    fan_in: int
    w_sq: float  # Σ W² · fan_in
    n_w: int
    w4: float  # Σ (f W²)²
    b_sq: float
    n_b: int
    b4: float


@dataclass(frozen=True)
class LayerAgreement:
    """Whether per-layer estimates of one σ agree within their sampling errors.

    χ² = Σ_i ((σ̂_i − σ̂)/SE_i)² over the k layers with a positive SE (σ̂ the pooled estimate),
    ``p`` = P(χ²_{k−1} ≥ χ²); the estimates are pooled when ``p >= POOL_P_MIN``.
    """

    chi2: float
    dof: int
    p: float

    @property
    def agree(self) -> bool:
        return self.p >= POOL_P_MIN

    def __repr__(self) -> str:
        return f"χ²={self.chi2:.3g} (dof {self.dof}, p={self.p:.2g})"


@dataclass(frozen=True)
class ImportResult:
    """The imported architecture and the initialization it carries.

    ``arch``: the whole model with per-layer numeric σ's; ``block``: its repeating unit with
    symbolic σ_w, σ_b (None when the model is not a stack of identical blocks, or when the
    layers' σ's differ beyond their sampling errors); ``n_blocks``; ``sigma_w``, ``sigma_b``:
    pooled :class:`Estimate`; ``layers``: per-layer estimates {path: (σ̂_w, σ̂_b)};
    ``agreement``: {"sigma_w": LayerAgreement, "sigma_b": …} of the pooling check;
    ``values``: the numeric hyperparameters for ``block``.
    """

    arch: Op
    block: Op | None
    n_blocks: int
    sigma_w: Estimate
    sigma_b: Estimate
    layers: dict = field(default_factory=dict)
    mu: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)

    @property
    def pooled(self) -> bool:
        """True when every pooled σ agrees with its per-layer estimates."""
        return all(a.agree for a in self.agreement.values())

    @property
    def values(self) -> dict[str, float]:
        self._check_pooled()
        v = {"sigma_w": self.sigma_w.value, "sigma_b": self.sigma_b.value}
        if self.block is not None:
            names = {s.name for s in self.block.hyperparameters()}
            return {k: x for k, x in v.items() if k in names}
        return v

    def _check_pooled(self) -> None:
        bad = [k for k, a in self.agreement.items() if not a.agree]
        if bad:
            raise UnsupportedModuleError(_disagree_message(bad, self.layers, self.agreement))

    def theory(self):
        """``critsym.derive(block)`` (raises when the model has no repeating block)."""
        from .derive import derive

        self._check_pooled()
        if self.block is None:
            raise UnsupportedModuleError(
                "the model is not a stack of identical blocks; derive the blocks of "
                "result.arch yourself, or import the repeated part (e.g. model.blocks)"
            )
        return derive(self.block)

    def critical(self, solve_for: str = "sigma_w", **fixed):
        """The value of ``solve_for`` that makes the imported model critical (χ_J* = 1), the
        other hyperparameters at their estimates unless given in ``fixed``
        (:func:`critsym.critical_point`)."""
        from .criticality import critical_point

        hp = {k: v for k, v in self.values.items() if k != solve_for}
        hp.update(fixed)
        return float(critical_point(self.theory(), solve_for, **hp))

    def run(self, K0: float = 1.0, **kw):
        """The theory's trajectory over the model's ``n_blocks`` blocks at the estimated σ's."""
        return self.theory().run(self.n_blocks, K0=K0, **self.values, **kw)


def _disagree_message(names, layers, agreement) -> str:
    idx = {"sigma_w": 0, "sigma_b": 1}
    parts = []
    for k in names:
        per = ", ".join(f"{p}: {v[idx[k]]:.4g}" for p, v in layers.items())
        parts.append(f"{k} differs between layers ({per}; {agreement[k]!r})")
    return ("; ".join(parts) + ". The layers are not initialized alike, so one σ does not "
            "describe the model: use result.arch (per-layer σ's) or result.layers")


# ----------------------------------------------------------------------------- import
class Reader:
    """Maps torch modules to operators through the operator registries and records the weight
    estimates; operators' ``read_torch`` / ``probe_torch`` receive it."""

    def __init__(self, inputs: dict[int, torch.Tensor]):
        self.layers: list[_Layer] = []
        self.inputs = inputs
        self.mus: dict[str, float] = {}

    @staticmethod
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    @staticmethod
    def label(path: str) -> str:
        return path or "<model>"

    def weights(self, path: str, kind: str, w: torch.Tensor, b: torch.Tensor | None
                ) -> tuple[float, float]:
        """Record one layer's weights (rows = outputs) and bias; return (σ̂_w, σ̂_b)."""
        w = w.detach().to(torch.float64)
        f = int(w[0].numel())
        sq = (w * w * f).flatten()
        layer = _Layer(path, kind, f, float(sq.sum()), sq.numel(), float((sq * sq).sum()),
                       0.0, 0, 0.0)
        if b is not None:
            bb = (b.detach().to(torch.float64) ** 2).flatten()
            layer.b_sq, layer.n_b, layer.b4 = float(bb.sum()), bb.numel(), float((bb * bb).sum())
        self.layers.append(layer)
        sw = math.sqrt(layer.w_sq / layer.n_w)
        sb = math.sqrt(layer.b_sq / layer.n_b) if layer.n_b else 0.0
        return sw, sb

    def map(self, m: nn.Module, path: str) -> Op | None:
        """The operator for ``m`` (``None``: skipped): the operator claiming its type, else the
        patterns operators recognise by evaluation, else an error naming the submodule."""
        if isinstance(m, OpModule):  # a stacked map that names its operator
            return m.op
        cls = claimant(m)
        if cls is not None:
            return cls.read_torch(m, self, path)
        if isinstance(m, SKIPPED):
            return None
        if self.is_identity(m):
            return None
        for cls in torch_probes():
            op = cls.probe_torch(m, self, path)
            if op is not None:
                return op
        return self.unmappable(m, path)

    @staticmethod
    def is_identity(m: nn.Module) -> bool:
        """A parameter-free leaf module that returns its input."""
        pair = probe_leaf(m)
        return pair is not None and pair[1].shape == pair[0].shape and torch.equal(*pair)

    def unmappable(self, m: nn.Module, path: str):
        name = self.label(path)
        children = list(m.named_children())
        for n, c in m.named_modules():  # name the first leaf that cannot be mapped
            if n and not list(c.children()):
                try:
                    Reader({}).map(c, self.join(path, n))
                except UnsupportedModuleError as e:
                    raise UnsupportedModuleError(
                        f"{e} (inside {name!r}, a {type(m).__name__})") from None
        hint = "" if self.inputs.get(id(m)) is not None or not children else (
            "; pass example_input=... so critsym can test whether it is a residual sum or a "
            "sequence of its children")
        raise UnsupportedModuleError(
            f"cannot map submodule {name!r} ({type(m).__name__}) to a critsym operator{hint}. "
            "Supported: " + ", ".join(sorted(_supported())) + ", residual and transpose patterns")

    def seq(self, ops):
        ops = [o for o in ops if o is not None]
        if not ops:
            return None
        return ops[0] if len(ops) == 1 else Sequential(*ops)

    def container(self, m: nn.Module, path: str):
        """With an example input: a container whose output is its children in some order
        (→ Sequential) or μ·x plus that (→ Residual); ``None`` otherwise."""
        from .ops.residual import Residual

        children = list(m.named_children())
        x = self.inputs.get(id(m))
        if not children or list(m.parameters(recurse=False)) or x is None:
            return None
        with torch.no_grad():
            y = m(x)
            if not isinstance(y, torch.Tensor):
                return None
            for perm in itertools.islice(itertools.permutations(children), 6):
                h = x
                try:
                    for _, c in perm:
                        h = c(h)
                except Exception:  # noqa: BLE001 - wrong order: shapes do not fit
                    continue
                if h.shape != y.shape:
                    continue
                if torch.allclose(h, y, rtol=1e-6, atol=1e-9):
                    return self.seq([self.map(c, self.join(path, n)) for n, c in perm])
                r = (y - h).flatten().to(torch.float64)
                xf = x.flatten().to(torch.float64)
                if x.shape != y.shape or float(xf @ xf) == 0:
                    continue
                mu = float(r @ xf / (xf @ xf))
                if torch.allclose(r, mu * xf, rtol=1e-5, atol=1e-7 * float(xf.abs().max())):
                    self.mus[self.label(path)] = mu
                    b = self.seq([self.map(c, self.join(path, n)) for n, c in perm])
                    return Residual(b if b is not None else Act("identity"), _round(mu))
        return None

    def pooled(self) -> tuple[Estimate, Estimate, dict]:
        """Pooled σ̂_w, σ̂_b over all layers and the per-layer agreement check."""
        w = self.layers
        if not w:
            return Estimate(float("nan"), float("nan"), 0), Estimate(0.0, 0.0, 0), {}
        nw = sum(la.n_w for la in w)
        m2 = sum(la.w_sq for la in w) / nw
        m4 = sum(la.w4 for la in w) / nw
        sw = Estimate(math.sqrt(m2), _se(m2, m4, nw), nw)
        agreement = {"sigma_w": _agreement(sw, [(la.w_sq, la.w4, la.n_w) for la in w])}
        with_b = [la for la in w if la.n_b and la.b_sq > 0]
        nb = sum(la.n_b for la in with_b)
        if nb == 0:
            return sw, Estimate(0.0, 0.0, 0), agreement
        b2 = sum(la.b_sq for la in with_b) / nb
        b4 = sum(la.b4 for la in with_b) / nb
        sb = Estimate(math.sqrt(b2), _se(b2, b4, nb), nb)
        agreement["sigma_b"] = _agreement(sb, [(la.b_sq, la.b4, la.n_b) for la in with_b])
        return sw, sb, agreement


def _agreement(pooled: Estimate, layers) -> LayerAgreement:
    """χ² of the per-layer estimates (sums of s, s², count n) around the pooled one."""
    from scipy.stats import chi2 as _chi2

    total, k = 0.0, 0
    for s1, s2, n in layers:
        m2, m4 = s1 / n, s2 / n
        se = _se(m2, m4, n)
        if se > 0:
            total += ((math.sqrt(m2) - pooled.value) / se) ** 2
            k += 1
    dof = max(k - 1, 0)
    p = float(_chi2.sf(total, dof)) if dof else 1.0
    return LayerAgreement(total, dof, p)


def _supported() -> set[str]:
    from .ops.contract import torch_claims

    return {t.__name__ for t in torch_claims() if t.__module__.startswith("torch.")}


def _se(m2: float, m4: float, n: int) -> float:
    """SE of sqrt(mean of n samples with moments m2 = E[s], m4 = E[s²]) by the delta method."""
    if m2 <= 0 or n < 2:
        return 0.0
    var = max(m4 - m2 * m2, 0.0) / n
    return math.sqrt(var) / (2 * math.sqrt(m2))


def _round(mu: float) -> float:
    r = round(mu, 6)
    return float(int(r)) if r == int(r) else r


def _capture_inputs(module: nn.Module, example_input) -> dict[int, torch.Tensor]:
    inputs: dict[int, torch.Tensor] = {}
    if example_input is None:
        return inputs
    if not isinstance(example_input, torch.Tensor):
        raise SimulationError("example_input must be a torch.Tensor the model accepts")
    def record(mm, args):  # returns None: the module's own arguments are kept
        if args and isinstance(args[0], torch.Tensor):
            inputs.setdefault(id(mm), args[0].detach())

    hooks = [mod.register_forward_pre_hook(record) for mod in module.modules()]
    try:
        with torch.no_grad():
            module(example_input)
    except Exception as e:  # noqa: BLE001 - report as a shape problem
        raise SimulationError(
            f"the model does not accept example_input of shape "
            f"{tuple(example_input.shape)}: {e}") from None
    finally:
        for h in hooks:
            h.remove()
    return inputs


def from_torch(module: nn.Module, example_input: torch.Tensor | None = None) -> ImportResult:
    """Map a torch model to a critsym architecture with σ_w, σ_b estimated from its weights.

    ``module``: an ``nn.Sequential`` of repeated blocks (→ ``result.block``, the repeating unit
    with symbolic σ's, and ``result.n_blocks``), or a single block.  ``example_input`` (one
    batch the model accepts) lets critsym recognise custom residual / transpose modules by
    evaluating them.  Every module is mapped by the operator that claims its type
    (``Op.torch_types``) or recognises it (``Op.probe_torch``).  σ's are pooled over layers only
    when the per-layer estimates agree within their sampling errors (``result.agreement``);
    otherwise a :class:`PoolingWarning` is issued, ``result.block`` is None and ``theory()``
    explains.  Raises :class:`UnsupportedModuleError` naming the first submodule it cannot map.
    """
    if not isinstance(module, nn.Module):
        raise UnsupportedModuleError(
            f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    inputs = _capture_inputs(module, example_input)
    named = list(module.named_modules())
    if any(isinstance(m, (nn.Linear, nn.LayerNorm)) for _, m in named):
        for n, m in named:
            if isinstance(m, nn.Conv1d) and m.kernel_size == (1,):
                raise UnsupportedModuleError(
                    f"submodule {n!r}: Conv1d(kernel_size=1) in a model that also applies "
                    "Linear/LayerNorm to the last axis is ambiguous (in an MLP-Mixer it mixes "
                    "tokens, not channels); write the token MLP as a transpose + nn.Linear")
    imp = Reader(inputs)
    from .torch.build import CritsymNet

    if isinstance(module, CritsymNet):
        blocks = module.iter_blocks() if hasattr(module, "iter_blocks") else module.blocks
        parts = [imp.map(c, f"blocks.{i}") for i, c in enumerate(blocks)]
        parts = [p for p in parts if p is not None]
        arch = imp.seq(parts)
    elif isinstance(module, nn.Sequential) and len(module) > 1:
        parts = [imp.map(c, n) for n, c in module.named_children()]
        parts = [p for p in parts if p is not None]
        arch = imp.seq(parts)
    else:
        parts = []
        arch = imp.map(module, "")
    if arch is None:
        raise UnsupportedModuleError("the model contains no operators critsym can map "
                                     "(only identities)")
    sw, sb, agreement = imp.pooled()
    per_layer = {la.path: (math.sqrt(la.w_sq / la.n_w),
                           math.sqrt(la.b_sq / la.n_b) if la.n_b else 0.0) for la in imp.layers}
    syms = [p.symbolic() for p in parts]
    if len(syms) > 1 and all(x == syms[0] for x in syms):
        block, n = syms[0], len(syms)
    elif len(syms) > 1:
        block, n = None, len(syms)
    else:
        block, n = arch.symbolic(), 1
    bad = [k for k, a in agreement.items() if not a.agree]
    if bad:
        warnings.warn(_disagree_message(bad, per_layer, agreement) + "; not pooled",
                      PoolingWarning, stacklevel=2)
        block = None
    return ImportResult(arch=arch, block=block, n_blocks=n, sigma_w=sw, sigma_b=sb,
                        layers=per_layer, mu=imp.mus, agreement=agreement)


# ----------------------------------------------------------------------------- export
def to_torch_model(arch: Op, width: int, depth: int, *, seed: int = 0,
                   dtype=torch.float64, channels_first_norm: str = "groupnorm",
                   **hp: float) -> nn.Sequential:
    """A plain torch model of ``depth`` blocks ``arch`` with standard modules.

    Each operator exports itself (``Op.export``).  Widths: every Linear / Conv outputs
    ``width`` features.  Conv maps are channels-first (N, C, *spatial), as torch expects;
    LayerNorm next to a Conv becomes ``nn.GroupNorm(1, C)`` (``channels_first_norm=
    "groupnorm"``) or a per-position channel LayerNorm ("channel") — the same mean-field map.
    W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²).
    """
    arch = as_op(arch)
    needed = {s.name for s in arch.hyperparameters()}
    if needed - set(hp) or set(hp) - needed:
        raise SimulationError(f"hyperparameters of {arch!r} are {sorted(needed)}; got "
                              f"{sorted(hp)}")
    if channels_first_norm not in ("groupnorm", "channel"):
        raise SimulationError(f"channels_first_norm must be 'groupnorm' or 'channel', got "
                              f"{channels_first_norm!r}")
    ctx = ExportContext(width=int(width), values={k: float(v) for k, v in hp.items()},
                        generator=torch.Generator().manual_seed(int(seed)), dtype=dtype,
                        channels_first=contains(arch, lambda o: type(o).channels_first),
                        channels_first_norm=channels_first_norm)
    blocks = []
    for _ in range(depth):
        m, f = arch.export(ctx, width)
        if f != width:
            raise SimulationError(f"block {arch!r} changes the width {width} -> {f}")
        blocks.append(m)
    return nn.Sequential(*blocks)


__all__ = ["Estimate", "ImportResult", "LayerAgreement", "PoolingWarning", "Reader",
           "from_torch", "to_torch_model"]
