r"""Torch models ↔ critsym architectures.

:func:`from_torch` maps a ``torch.nn`` model to a critsym architecture and estimates σ_w, σ_b
from its actual weights; :func:`to_torch_model` builds a plain torch model (standard
``nn.Linear``, ``nn.Conv2d``, ``nn.LayerNorm`` … modules) from an architecture, so that
build → torch → import → theory round-trips.

Estimators (weights assumed i.i.d. at initialization).  For a layer with n weights of fan-in f,
    σ̂_w² = f · mean(W²),   SE(σ̂_w) = σ̂_w / √(2n)      (Var σ̂_w² = 2σ_w⁴/n for Gaussian W),
    σ̂_b² = mean(b²),       SE(σ̂_b) = σ̂_b / √(2 n_b)   (0 when the layer has no bias).
Pooled over all layers of the repeating block (the same σ_w, σ_b everywhere):
    σ̂_w² = Σ_layers f·ΣW² / Σ n, and likewise for σ_b.  (For non-Gaussian initializations, e.g.
torch's default uniform Kaiming, σ̂ is still the right second moment and the SE is
σ̂·√(Var(W²)/(n E[W²]²))/2, computed from the sample kurtosis.)

Mapping (channels-first torch conv nets map to critsym's channels-last ops, which compute the
same per-position maps):

* ``nn.Sequential`` → ``Sequential``; ``nn.Identity``, ``nn.Dropout`` (evaluation mode) → skipped;
* ``nn.Linear`` → ``Linear``; ``nn.Conv1d/2d/3d`` (odd square kernel, stride 1, dilation 1,
  groups 1, 'same' padding) → ``Conv`` with its padding mode;
* ``nn.LayerNorm``, ``nn.GroupNorm(1, C)`` (γ = 1, β = 0, as at initialization) → ``LayerNorm``;
* activation modules (ReLU, LeakyReLU, Tanh, GELU, SiLU, Sigmoid, Softplus(β=1), ELU(α=1),
  SELU, Identity) → ``Act``;
* ``nn.AvgPool{1,2,3}d`` → ``AvgPool``; ``nn.AdaptiveAvgPool{1,2,3}d(1)`` → ``GlobalAvgPool``;
* a module with a child ``branch`` and a number ``mu`` (critsym's own) → ``Residual``;
* with ``example_input``: a parameter-free module that transposes the last two axes (e.g. an
  einops ``Rearrange``) → ``Transpose``, one that returns its input → skipped, and a container
  whose output is μ·x + (its children applied in some order)(x) → ``Residual`` (e.g. a Mixer's
  ``PreNormResidual``); a container equal to its children in order → ``Sequential``;
* ``nn.BatchNorm1d/2d/3d`` in training mode (γ = 1, β = 0) → ``BatchNorm()`` (infinite batch,
  train-mode batch statistics; see :func:`critsym.ops.batchnorm.import_batchnorm`);
* anything else raises :class:`UnsupportedModuleError` naming the submodule.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, field

import sympy as sp
import torch
from torch import nn

from .errors import SimulationError, UnsupportedModuleError
from .ops import Act, LayerNorm, Linear, Residual, Sequential
from .ops.axes import Transpose
from .ops.base import Op, as_op
from .ops.batchnorm import BatchNorm, conv_dim, import_batchnorm, torch_batchnorm
from .ops.conv import Conv
from .ops.pool import AvgPool, GlobalAvgPool
from .symbols import sigma_b as SB
from .symbols import sigma_w as SW

_ACTS = {
    nn.ReLU: "relu", nn.Tanh: "tanh", nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.SELU: "selu",
}


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
class ImportResult:
    """The imported architecture and the initialization it carries.

    ``arch``: the whole model with per-layer numeric σ's; ``block``: its repeating unit with
    symbolic σ_w, σ_b (None when the model is not a stack of identical blocks); ``n_blocks``;
    ``sigma_w``, ``sigma_b``: pooled :class:`Estimate`; ``layers``: per-layer estimates
    {path: (σ̂_w, σ̂_b)}; ``values``: the numeric hyperparameters for ``block``.
    """

    arch: Op
    block: Op | None
    n_blocks: int
    sigma_w: Estimate
    sigma_b: Estimate
    layers: dict = field(default_factory=dict)
    mu: dict = field(default_factory=dict)

    @property
    def values(self) -> dict[str, float]:
        v = {"sigma_w": self.sigma_w.value, "sigma_b": self.sigma_b.value}
        if self.block is not None:
            names = {s.name for s in self.block.hyperparameters()}
            return {k: x for k, x in v.items() if k in names}
        return v

    def theory(self):
        """``critsym.derive(block)`` (raises when the model has no repeating block)."""
        from .derive import derive

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


# ----------------------------------------------------------------------------- import
class _Importer:
    def __init__(self, inputs: dict[int, torch.Tensor]):
        self.layers: list[_Layer] = []
        self.inputs = inputs
        self.mus: dict[str, float] = {}

    def weights(self, path, kind, w, b):
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
        name = path or "<model>"
        own = self.critsym_module(m, path)
        if own is not False:
            return own
        if isinstance(m, nn.Sequential):
            return self.seq([self.map(c, _join(path, n)) for n, c in m.named_children()])
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return None
        if isinstance(m, nn.Linear):
            sw, sb = self.weights(path, "Linear", m.weight, m.bias)
            return Linear(sw, sb)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return self.conv(m, path)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return import_batchnorm(m, name)
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            return self.norm(m, name)
        if type(m) in _ACTS:
            return Act(_ACTS[type(m)])
        if isinstance(m, nn.GELU):
            if m.approximate != "none":
                raise UnsupportedModuleError(
                    f"submodule {name!r}: GELU(approximate={m.approximate!r}); critsym's gelu is "
                    "the exact xΦ(x): use nn.GELU() (approximate='none')")
            return Act("gelu")
        if isinstance(m, nn.LeakyReLU):
            return Act("leaky_relu", alpha=float(m.negative_slope))
        if isinstance(m, nn.ELU) and m.alpha == 1.0:
            return Act("elu")
        if isinstance(m, nn.Softplus) and m.beta == 1.0:
            return Act("softplus")
        if isinstance(m, ActModule):
            return m.act
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            st = m.stride if isinstance(m.stride, int) else m.stride[0]
            if st != k:
                raise UnsupportedModuleError(f"submodule {name!r}: AvgPool with stride {st} != "
                                             f"kernel {k}; use non-overlapping windows")
            return AvgPool(k, dim=int(type(m).__name__[-2]))
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
            out = m.output_size
            if out not in (1, (1,), (1, 1), (1, 1, 1)):
                raise UnsupportedModuleError(f"submodule {name!r}: adaptive pooling to {out}; "
                                             "only output size 1 (global pooling) is supported")
            return GlobalAvgPool(dim=int(type(m).__name__[-2]))
        branch = getattr(m, "branch", None)
        mu = getattr(m, "mu", None)
        if isinstance(branch, nn.Module) and isinstance(mu, numbers.Real):
            self.mus[name] = float(mu)
            b = self.map(branch, _join(path, "branch"))
            return Residual(b if b is not None else Act("identity"), float(mu))
        return self.probe(m, path, name)

    def critsym_module(self, m: nn.Module, path: str):
        """critsym's own stacked modules (from :func:`critsym.build` / ``simulate_shaped``);
        ``False`` when ``m`` is not one of them.  Stacked weights (n_nets, out, in, ...) pool
        the estimate over all networks."""
        from .torch.conv import ChannelsLastPool, StackedConv
        from .torch.modules import Elementwise, NeuronLayerNorm, StackedLinear

        if isinstance(m, StackedLinear):
            sw, sb = self.weights(path, "Linear", m.weight.reshape(-1, m.weight.shape[-1]),
                                  m.bias)
            return Linear(sw, sb)
        if isinstance(m, StackedConv):
            w = m.weight.reshape(-1, *m.weight.shape[2:])
            sw, sb = self.weights(path, "Conv", w, m.bias)
            return Conv(int(m.weight.shape[-1]), sw, sb, padding=m.padding, dim=m.dim)
        if isinstance(m, NeuronLayerNorm):
            return LayerNorm()
        if isinstance(m, ChannelsLastPool):
            return GlobalAvgPool(m.dim) if m.kernel is None else AvgPool(m.kernel, m.dim)
        if isinstance(m, Elementwise):
            return _act_from_repr(m.name, path or "<model>")
        return False

    def seq(self, ops):
        ops = [o for o in ops if o is not None]
        if not ops:
            return None
        return ops[0] if len(ops) == 1 else Sequential(*ops)

    def conv(self, m, path):
        name = path or "<model>"
        d = int(type(m).__name__[-2])
        k = set(m.kernel_size)
        if len(k) != 1 or min(k) % 2 == 0:
            raise UnsupportedModuleError(
                f"submodule {name!r}: kernel {m.kernel_size}; critsym's Conv needs an odd square "
                "kernel")
        (k,) = k
        pad = m.padding if isinstance(m.padding, str) else set(m.padding)
        if set(m.stride) != {1} or set(m.dilation) != {1} or m.groups != 1 or (
                pad != "same" and pad != {k // 2}):
            raise UnsupportedModuleError(
                f"submodule {name!r}: {m}; critsym's Conv is stride 1, dilation 1, groups 1 with "
                f"'same' padding ({k // 2})")
        if m.padding_mode not in ("circular", "zeros"):
            raise UnsupportedModuleError(
                f"submodule {name!r}: padding_mode {m.padding_mode!r}; use 'circular' (exact "
                "mean field) or 'zeros'")
        sw, sb = self.weights(path, "Conv", m.weight, m.bias)
        return Conv(k, sw, sb, padding=m.padding_mode, dim=d)

    def norm(self, m, name):
        if isinstance(m, nn.GroupNorm) and m.num_groups != 1:
            raise UnsupportedModuleError(
                f"submodule {name!r}: GroupNorm with {m.num_groups} groups; only GroupNorm(1, C) "
                "(a LayerNorm over the channels) is supported")
        w = getattr(m, "weight", None)
        b = getattr(m, "bias", None)
        if (w is not None and not torch.all(w == 1)) or (b is not None and not torch.all(b == 0)):
            raise UnsupportedModuleError(
                f"submodule {name!r}: {type(m).__name__} with γ != 1 or β != 0 (not at its "
                "initialization); the theory assumes γ = 1, β = 0")
        return LayerNorm()

    def probe(self, m, path, name):
        own = list(m.named_parameters(recurse=False))
        children = list(m.named_children())
        x = self.inputs.get(id(m))
        if not own and not children:
            t = torch.randn(2, 3, 5, dtype=torch.float64)
            try:
                with torch.no_grad():
                    y = m(t)
            except Exception:  # noqa: BLE001 - any failure means "cannot map"
                y = None
            if isinstance(y, torch.Tensor) and y.shape == t.shape and torch.equal(y, t):
                return None
            if isinstance(y, torch.Tensor) and y.shape == (2, 5, 3) and \
                    torch.equal(y, t.transpose(-1, -2)):
                return Transpose()
        if children and not own and x is not None:
            out = self.container(m, children, x, path)
            if out is not None:
                return out
        for n, c in m.named_modules():  # name the first leaf that cannot be mapped
            if n and not list(c.children()):
                try:
                    _Importer({}).map(c, _join(path, n))
                except UnsupportedModuleError as e:
                    raise UnsupportedModuleError(
                        f"{e} (inside {name!r}, a {type(m).__name__})") from None
        hint = "" if x is not None or not children else (
            "; pass example_input=... so critsym can test whether it is a residual sum or a "
            "sequence of its children")
        raise UnsupportedModuleError(
            f"cannot map submodule {name!r} ({type(m).__name__}) to a critsym operator{hint}. "
            "Supported: nn.Sequential, Linear, Conv1d/2d/3d, LayerNorm, GroupNorm(1, C), "
            "activation modules, AvgPool, AdaptiveAvgPool(1), residual and transpose patterns")

    def container(self, m, children, x, path):
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
                    return self.seq([self.map(c, _join(path, n)) for n, c in perm])
                r = (y - h).flatten().to(torch.float64)
                xf = x.flatten().to(torch.float64)
                if x.shape != y.shape or float(xf @ xf) == 0:
                    continue
                mu = float(r @ xf / (xf @ xf))
                if torch.allclose(r, mu * xf, rtol=1e-5, atol=1e-7 * float(xf.abs().max())):
                    self.mus[path or "<model>"] = mu
                    b = self.seq([self.map(c, _join(path, n)) for n, c in perm])
                    return Residual(b if b is not None else Act("identity"), _round(mu))
        return None

    def pooled(self):
        w = [la for la in self.layers]
        if not w:
            return Estimate(float("nan"), float("nan"), 0), Estimate(0.0, 0.0, 0)
        nw = sum(la.n_w for la in w)
        m2 = sum(la.w_sq for la in w) / nw
        m4 = sum(la.w4 for la in w) / nw
        sw = Estimate(math.sqrt(m2), _se(m2, m4, nw), nw)
        nb = sum(la.n_b for la in w)
        if nb == 0:
            return sw, Estimate(0.0, 0.0, 0)
        b2 = sum(la.b_sq for la in w) / nb
        b4 = sum(la.b4 for la in w) / nb
        return sw, Estimate(math.sqrt(b2), _se(b2, b4, nb), nb)


def _act_from_repr(text: str, name: str) -> Act:
    """Act('tanh'), Act('leaky_relu', alpha=0.1) or Act(<sympy expression>) from its repr."""
    import re

    m = re.fullmatch(r"Act\('(\w+)'((?:, \w+=[^,]+)*)\)", text)
    if m:
        params = dict(kv.split("=") for kv in m.group(2).split(", ")[1:])
        return Act(m.group(1), **{k: float(v) for k, v in params.items()})
    m = re.fullmatch(r"Act\((.+)\)", text)
    if m:
        try:
            return Act(sp.sympify(m.group(1)))
        except (sp.SympifyError, TypeError, ValueError):
            pass
    raise UnsupportedModuleError(f"submodule {name!r}: cannot read the activation {text!r}")


def _se(m2: float, m4: float, n: int) -> float:
    """SE of sqrt(mean of n samples with moments m2 = E[s], m4 = E[s²]) by the delta method."""
    if m2 <= 0 or n < 2:
        return 0.0
    var = max(m4 - m2 * m2, 0.0) / n
    return math.sqrt(var) / (2 * math.sqrt(m2))


def _round(mu: float) -> float:
    r = round(mu, 6)
    return float(int(r)) if r == int(r) else r


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _symbolic(op: Op) -> Op:
    """The architecture with every Linear / Conv σ replaced by the symbols σ_w, σ_b
    (σ_b = 0 kept for layers without a bias)."""
    if isinstance(op, Linear):
        return Linear(SW, SB if op.sigma_b != 0 else 0)
    if isinstance(op, Conv):
        return Conv(op.kernel_size, SW, SB if op.sigma_b != 0 else 0, padding=op.padding,
                    dim=op.dim)
    if isinstance(op, Sequential):
        return Sequential(*(_symbolic(o) for o in op.ops))
    if isinstance(op, Residual):
        return Residual(_symbolic(op.branch), op.mu)
    return op


def from_torch(module: nn.Module, example_input: torch.Tensor | None = None) -> ImportResult:
    """Map a torch model to a critsym architecture with σ_w, σ_b estimated from its weights.

    ``module``: an ``nn.Sequential`` of repeated blocks (→ ``result.block``, the repeating unit
    with symbolic σ's, and ``result.n_blocks``), or a single block.  ``example_input`` (one
    batch the model accepts) lets critsym recognise custom residual / transpose modules by
    evaluating them.  Raises :class:`UnsupportedModuleError` naming the first submodule it cannot
    map.
    """
    if not isinstance(module, nn.Module):
        raise UnsupportedModuleError(
            f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    inputs: dict[int, torch.Tensor] = {}
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise SimulationError("example_input must be a torch.Tensor the model accepts")
        hooks = [mod.register_forward_pre_hook(
            lambda mm, args: inputs.setdefault(id(mm), args[0].detach()) if args else None)
            for mod in module.modules()]
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
    named = list(module.named_modules())
    if any(isinstance(m, (nn.Linear, nn.LayerNorm)) for _, m in named):
        for n, m in named:
            if isinstance(m, nn.Conv1d) and m.kernel_size == (1,):
                raise UnsupportedModuleError(
                    f"submodule {n!r}: Conv1d(kernel_size=1) in a model that also applies "
                    "Linear/LayerNorm to the last axis is ambiguous (in an MLP-Mixer it mixes "
                    "tokens, not channels); write the token MLP as a transpose + nn.Linear")
    imp = _Importer(inputs)
    from .torch.build import CritsymNet

    if isinstance(module, CritsymNet):
        parts = [imp.map(c, f"blocks.{i}") for i, c in enumerate(module.blocks)]
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
    sw, sb = imp.pooled()
    per_layer = {la.path: (math.sqrt(la.w_sq / la.n_w),
                           math.sqrt(la.b_sq / la.n_b) if la.n_b else 0.0) for la in imp.layers}
    syms = [_symbolic(p) for p in parts]
    if len(syms) > 1 and all(x == syms[0] for x in syms):
        block, n = syms[0], len(syms)
    elif len(syms) > 1:
        block, n = None, len(syms)
    else:
        block, n = _symbolic(arch), 1
    return ImportResult(arch=arch, block=block, n_blocks=n, sigma_w=sw, sigma_b=sb,
                        layers=per_layer, mu=imp.mus)


# ----------------------------------------------------------------------------- export
class ActModule(nn.Module):
    """An elementwise activation given by a critsym :class:`Act` (for activations without a
    torch module, e.g. erf, sin)."""

    def __init__(self, act: Act):
        super().__init__()
        from .activations import torch_activation, torch_lambdify

        self.act = act
        if act.name == "custom":
            self.fn = torch_lambdify(act.phi())
        else:
            self.fn = torch_activation(act.name, **{k: float(v) for k, v in act.params})

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.act)


class ResidualModule(nn.Module):
    """x ↦ μ·x + branch(x)."""

    def __init__(self, branch: nn.Module, mu: float):
        super().__init__()
        self.branch, self.mu = branch, float(mu)

    def forward(self, x):
        return self.mu * x + self.branch(x)

    def extra_repr(self) -> str:
        return f"mu={self.mu:g}"


class SwapLastAxes(nn.Module):
    """(…, A, B) ↦ (…, B, A)."""

    def forward(self, x):
        return x.transpose(-1, -2)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis 1 of an (N, C, *spatial) map (γ = 1, β = 0)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        m = x.mean(1, keepdim=True)
        c = x - m
        return c / torch.sqrt((c * c).mean(1, keepdim=True) + self.eps)


_TORCH_ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU,
               "sigmoid": nn.Sigmoid, "selu": nn.SELU}


def to_torch_model(arch: Op, width: int, depth: int, *, seed: int = 0,
                   dtype=torch.float64, channels_first_norm: str = "groupnorm",
                   **hp: float) -> nn.Sequential:
    """A plain torch model of ``depth`` blocks ``arch`` with standard modules.

    Widths: every Linear / Conv outputs ``width`` features.  Conv maps are channels-first
    (N, C, *spatial), as torch expects; LayerNorm next to a Conv becomes ``nn.GroupNorm(1, C)``
    (``channels_first_norm="groupnorm"``) or a per-position channel LayerNorm ("channel") —
    the same mean-field map.  W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²).
    """
    arch = as_op(arch)
    needed = {s.name for s in arch.hyperparameters()}
    if needed - set(hp) or set(hp) - needed:
        raise SimulationError(f"hyperparameters of {arch!r} are {sorted(needed)}; got "
                              f"{sorted(hp)}")
    g = torch.Generator().manual_seed(int(seed))
    conv = _has(arch, Conv)

    def val(e):
        return float(sp.sympify(e).subs({s: hp[s.name] for s in sp.sympify(e).free_symbols}))

    def make(op, fan):
        if isinstance(op, Sequential):
            mods = []
            for o in op.ops:
                mod, fan = make(o, fan)
                mods.append(mod)
            return nn.Sequential(*mods), fan
        if isinstance(op, Residual):
            b, f2 = make(op.branch, fan)
            return ResidualModule(b, val(op.mu)), f2
        if isinstance(op, Linear):
            m = nn.Linear(fan, width, dtype=dtype)
            _init(m, val(op.sigma_w), val(op.sigma_b), fan, g)
            return m, width
        if isinstance(op, Conv):
            cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[op.dim]
            m = cls(fan, op.channels or width, op.kernel_size, padding=op.kernel_size // 2,
                    padding_mode=op.padding, dtype=dtype)
            _init(m, val(op.sigma_w), val(op.sigma_b), fan * op.taps, g)
            return m, op.channels or width
        if isinstance(op, LayerNorm):
            if not conv:
                return nn.LayerNorm(fan, eps=1e-12, dtype=dtype), fan
            if channels_first_norm == "groupnorm":
                return nn.GroupNorm(1, fan, eps=1e-12, dtype=dtype), fan
            return ChannelsFirstLayerNorm(1e-12), fan
        if isinstance(op, Act):
            if op.name in _TORCH_ACTS and not op.params:
                return _TORCH_ACTS[op.name](), fan
            if op.name == "leaky_relu":
                return nn.LeakyReLU(val(dict(op.params)["alpha"])), fan
            return ActModule(op.subs(hp) if op.hyperparameters() else op), fan
        if isinstance(op, Transpose):
            return SwapLastAxes(), fan
        if isinstance(op, BatchNorm):  # training mode, gamma = 1, beta = 0
            return torch_batchnorm(fan, conv_dim(arch), dtype), fan
        if isinstance(op, AvgPool):
            return {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[op.dim](op.kernel_size), fan
        if isinstance(op, GlobalAvgPool):
            return {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d,
                    3: nn.AdaptiveAvgPool3d}[op.dim](1), fan
        raise SimulationError(f"no plain torch module for {op!r}")

    blocks = []
    for _ in range(depth):
        m, f = make(arch, width)
        if f != width:
            raise SimulationError(f"block {arch!r} changes the width {width} -> {f}")
        blocks.append(m)
    return nn.Sequential(*blocks)


def _init(m, sw, sb, fan_in, g):
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64)
                       * (sw / math.sqrt(fan_in)))
        if m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * sb)


def _has(op: Op, cls) -> bool:
    return isinstance(op, cls) or any(_has(c, cls) for c in op.children())


