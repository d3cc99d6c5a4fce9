r"""Critical initialization of torch models, in the style of ``torch.nn.init``.

* :func:`critical_` re-initializes a model in place at its theory's critical point: the value
  x* of one hyperparameter (``solve_for``, default σ_w) at which χ_J* = 1, the others at the
  values read from the model's weights or given.  Every weight layer of the analysed body gets
  W ~ N(0, σ_w²/fan_in) (fan_in = in_features · kernel size, as torch computes it), every bias
  b ~ N(0, σ_b²) (zero when σ_b = 0).
* :func:`critical_gain` is a ``torch.nn.init.calculate_gain`` analogue: the critical σ_w of
  the block ``act >> Linear`` for an activation at a given σ_b.

The critical point is the continuous root of log χ_J*(x) = 0 nearest to the model's current
value (:func:`critsym.transitions`), verified on both sides: χ_J* < 1 on one side and > 1 on
the other at x*(1 ∓ 10⁻³).  Where no such point exists, both refuse with a
:class:`NoCriticalInitError` subclass that names the reason and what to do:

* :class:`BatchNormStackError`: a body with BatchNorm in training mode: its gradients explode
  with depth at every initialization (χ_J* > 1 for every σ_w; see ``docs/batchnorm.md``);
* :class:`EverywhereCriticalError`: χ_J* = 1 for every value along ``solve_for`` (e.g. a
  pre-LN residual block with μ = 1: J grows as a power of depth, never exponentially);
* :class:`DiscontinuousTransitionError`: χ_J* crosses 1 only by a jump (a first-order
  transition, e.g. gelu at small σ_b): no initialization sits at χ_J* = 1;
* :class:`NoCriticalInitError` itself: χ_J* stays on one side of 1 in the search range.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .criticality.critical import FirstOrderTransitionError
from .errors import HyperparameterError, NoCriticalPointError, UnsupportedModuleError

#: relative offset at which χ_J* is checked on both sides of the critical point
SIDE_OFFSET = 1e-3


class NoCriticalInitError(NoCriticalPointError):
    """No critical initialization exists along the requested hyperparameter."""

    reason = "no critical point in range"


class BatchNormStackError(NoCriticalInitError):
    """The analysed body normalises over the batch: gradients explode at every initialization."""

    reason = "batchnorm"


class EverywhereCriticalError(NoCriticalInitError):
    """χ_J* = 1 for every value along ``solve_for``: there is no isolated critical point."""

    reason = "everywhere critical"


class DiscontinuousTransitionError(NoCriticalInitError, FirstOrderTransitionError):
    """χ_J* crosses 1 only by a jump (first-order transition); ``transitions`` holds them
    (also a :class:`critsym.criticality.FirstOrderTransitionError`)."""

    reason = "first-order transition"

    def __init__(self, message: str, transitions: list):
        FirstOrderTransitionError.__init__(self, message, transitions)


@dataclass(frozen=True, repr=False)
class CriticalPoint:
    """The critical value ``value`` of ``solve_for`` at the other ``hyperparameters``, with
    χ_J* there and at value·(1 ∓ ``SIDE_OFFSET``) (``chi_below``, ``chi_above``)."""

    solve_for: str
    value: float
    hyperparameters: dict
    chi_star: float
    chi_below: float
    chi_above: float
    K0: float
    others: tuple = ()  # the other continuous critical points along solve_for

    @property
    def verified(self) -> bool:
        """χ_J* − 1 changes sign across the point."""
        return bool((self.chi_below - 1) * (self.chi_above - 1) < 0)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:.6g}" for k, v in self.hyperparameters.items())
        return (f"CriticalPoint({self.solve_for}={self.value:.8g} at {hp or 'no others'}; "
                f"chi_J*: {self.chi_below:.4g} | {self.chi_star:.6g} | {self.chi_above:.4g})")


@dataclass(frozen=True, repr=False)
class CriticalInit:
    """What :func:`critical_` set.

    ``point``: the :class:`CriticalPoint`; ``hyperparameters``: every block hyperparameter at
    it; ``previous``: the values read from the model before; ``layers``: {path: (σ_w, σ_b,
    fan_in)} set per layer; ``parameters``: {parameter name: standard deviation drawn}
    (σ_w/√fan_in for weights, σ_b for biases); ``part``: the analysed part
    (:class:`critsym.body.AnalysedPart`); ``notes``: what the user should know (pooled
    estimates that differed between layers, layers without bias)."""

    point: CriticalPoint
    hyperparameters: dict
    previous: dict
    layers: dict
    parameters: dict
    part: object
    notes: tuple = ()

    @property
    def solve_for(self) -> str:
        return self.point.solve_for

    @property
    def value(self) -> float:
        return self.point.value

    @property
    def chi_star(self) -> float:
        return self.point.chi_star

    @property
    def verified(self) -> bool:
        return self.point.verified

    def apply_to(self, model, generator=None) -> None:
        """Redraw another model of the same architecture at the same σ's (e.g. an ensemble
        of independently initialized copies), layer by layer as :func:`critical_` did."""
        sw = float(self.hyperparameters.get("sigma_w", self.part.sigma_w.value))
        sb = float(self.hyperparameters.get("sigma_b", 0.0))
        _draw(model, list(self.layers), sw, sb, generator)

    def __repr__(self) -> str:
        was = self.previous.get(self.solve_for)
        was = f" (was {was:.4g})" if was is not None else ""
        others = ", ".join(f"{k}={v:.4g}" for k, v in self.hyperparameters.items()
                           if k != self.solve_for)
        return (f"CriticalInit({self.solve_for}={self.value:.6g}{was}"
                f"{', ' + others if others else ''}; {len(self.layers)} layers in "
                f"{self.part.n_blocks} blocks; chi_J* {self.point.chi_below:.4g} | "
                f"{self.point.chi_star:.6g} | {self.point.chi_above:.4g})")


# ----------------------------------------------------------------------------- solving
def _chi_star(theory, K0, **hp) -> float:
    from .criticality import fixed_point

    return float(fixed_point(theory, K0=K0, **hp).chi_star)


def solve_critical(theory, solve_for: str = "sigma_w", *, current: float | None = None,
                   K0: float = 1.0, bracket: tuple[float, float] | None = None,
                   where: str = "", **hp) -> CriticalPoint:
    """The continuous critical point of ``theory`` along ``solve_for`` nearest to ``current``
    (the first one without it), the other hyperparameters at ``hp``; refusals as in the
    module doc (``where`` names the model part in their messages)."""
    from .criticality import everywhere_critical, transitions
    from .criticality.critical import DEFAULT_BRACKETS

    names = theory.hyperparameter_names
    if solve_for not in names:
        raise HyperparameterError(
            f"cannot solve for {solve_for!r}{where}: the theory's hyperparameters are "
            f"{list(names)}")
    unknown = sorted(set(hp) - set(names))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameters {unknown}{where}; the theory has {list(names)}")
    missing = sorted(set(names) - set(hp) - {solve_for})
    if missing:
        raise HyperparameterError(f"give values for {missing}{where}")
    hp = {k: float(v) for k, v in hp.items()}
    crossings = transitions(theory, solve_for, bracket=bracket, K0=K0, **hp)
    roots = [float(c) for c in crossings if not hasattr(c, "chi_below")]
    jumps = [c for c in crossings if hasattr(c, "chi_below")]
    lo, hi = bracket if bracket is not None else DEFAULT_BRACKETS.get(solve_for, (0.0, 1.0))
    at = f" at {hp}" if hp else ""
    if not roots:
        ev = everywhere_critical(theory, {solve_for: (lo, hi)}, K0=K0, **hp)
        if ev.everywhere:
            raise EverywhereCriticalError(
                f"no isolated critical point{where}: chi_J* = 1 for every {solve_for} in "
                f"[{lo:g}, {hi:g}]{at} (e.g. a pre-LN residual block with mu = 1), so the "
                "APJN grows as a power of depth at any initialization; keep the current "
                "initialization, or change the architecture (e.g. residual mu < 1) to get a "
                "critical point")
        if jumps:
            t = jumps[0]
            raise DiscontinuousTransitionError(
                f"no continuous critical point{where}: along {solve_for}{at} chi_J* crosses 1 "
                f"only by a jump (first-order transition at {solve_for} = {t.at:.6g}: chi_J* "
                f"{t.chi_below:.4g} -> {t.chi_above:.4g}); fix another hyperparameter to a "
                "value with a continuous transition (e.g. a larger sigma_b), see "
                "critsym.critical_line", jumps)
        grid = np.linspace(lo, hi, 33)
        chi = np.array([_chi_star(theory, K0, **{**hp, solve_for: x}) for x in grid])
        raise NoCriticalInitError(
            f"no critical point{where}: chi_J* stays in [{np.nanmin(chi):.4g}, "
            f"{np.nanmax(chi):.4g}] for {solve_for} in [{lo:g}, {hi:g}]{at}; solve for "
            "another hyperparameter, or pass bracket=(lo, hi)")
    ref = current if current is not None and np.isfinite(current) else roots[0]
    x = min(roots, key=lambda r: (abs(r - ref), r))
    d = SIDE_OFFSET * max(abs(x), 1e-12)
    return CriticalPoint(
        solve_for=solve_for, value=x, hyperparameters=dict(hp),
        chi_star=_chi_star(theory, K0, **{**hp, solve_for: x}),
        chi_below=_chi_star(theory, K0, **{**hp, solve_for: x - d}),
        chi_above=_chi_star(theory, K0, **{**hp, solve_for: x + d}),
        K0=float(K0), others=tuple(r for r in roots if r != x))


# ----------------------------------------------------------------------------- critical_
def _draw(model, paths, sw: float, sb: float, generator=None):
    """Redraw the weight layers ``paths`` of ``model``: W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²)
    (zeros at σ_b = 0).  Returns ({path: (σ_w, σ_b, fan_in)}, {parameter: std}, notes)."""
    import torch

    modules = dict(model.named_modules())
    layers, params, notes = {}, {}, []
    with torch.no_grad():
        for path in paths:
            m = modules.get(path)
            w = getattr(m, "weight", None)
            if not isinstance(w, torch.Tensor) or w.dim() < 2:
                raise UnsupportedModuleError(
                    f"cannot re-initialize layer {path!r}: it has no weight matrix of its own; "
                    "initialize it by hand at the returned point")
            fan_in = int(w[0].numel())
            std = sw / math.sqrt(fan_in)
            w.normal_(0.0, std, generator=generator)
            params[f"{path}.weight" if path else "weight"] = std
            b = getattr(m, "bias", None)
            if isinstance(b, torch.Tensor):
                if sb > 0:
                    b.normal_(0.0, sb, generator=generator)
                else:
                    b.zero_()
                params[f"{path}.bias" if path else "bias"] = sb
            elif sb > 0:
                notes.append(f"layer {path!r} has no bias: sigma_b = {sb:.4g} is not set there")
            layers[path] = (sw, sb if isinstance(b, torch.Tensor) else 0.0, fan_in)
    return layers, params, notes


def _refuse_batchnorm(part, where: str, K0: float = 1.0) -> None:
    """Refuse a body that normalises over the batch, with χ_J* of its infinite-batch theory
    at the current σ's."""
    from .ops.batchnorm import BatchNorm

    if not part.contains(BatchNorm):
        return
    from .derive import derive

    try:
        chi = f"{_chi_star(derive(part.block), K0, **part.values):.4g}"
    except NoCriticalPointError:  # pragma: no cover - reported without the number
        chi = "undetermined"
    raise BatchNormStackError(
        f"no critical initialization{where}: the body normalises over the batch (BatchNorm); "
        f"its infinite-batch theory gives chi_J* = {chi} at the current sigmas, and a plain "
        "BatchNorm stack makes gradients explode with depth at every initialization "
        "(chi_J* > 1 for every sigma_w; see critsym.batchnorm.explosion_report). Replace "
        "BatchNorm by LayerNorm or GroupNorm, or analyse a part without it")


def _batchnorm_modules(model) -> list[str]:
    from torch.nn.modules.batchnorm import _BatchNorm

    return [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]


@contextmanager
def frozen_batch_stats(model):
    """BatchNorm modules in training mode normalise with the batch statistics but do not update
    their running statistics (the model's buffers are left as they were)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    changed = [m for m in model.modules()
               if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in changed:
            m.track_running_stats = True


def import_part(model, example_input=None):
    """:func:`critsym.body.analysed_part`, with a model holding BatchNorm modules that
    cannot be imported refused as a :class:`BatchNormStackError`."""
    from .body import analysed_part
    from .torch.build import CritsymNet

    if isinstance(model, CritsymNet):
        raise UnsupportedModuleError(
            "a CritsymNet (cs.build) stacks many networks drawn at the sigmas given to "
            "cs.build: build it at the critical point (cs.critical_point(cs.derive(arch), "
            "...)), or export one plain torch model with cs.to_torch_model")
    try:
        with frozen_batch_stats(model):
            return analysed_part(model, example_input)
    except UnsupportedModuleError as e:
        bn = _batchnorm_modules(model)
        if bn:
            raise BatchNormStackError(
                f"no critical initialization: submodule {bn[0]!r} normalises over the batch "
                f"(BatchNorm) and the model cannot be analysed ({e}); BatchNorm makes "
                "gradients explode with depth at every initialization: replace it by "
                "LayerNorm or GroupNorm") from None
        raise


def critical_(model, solve_for: str = "sigma_w", example_input=None, *, K0: float | None = None,
              bracket: tuple[float, float] | None = None, generator=None,
              **fixed: float) -> CriticalInit:
    r"""Re-initialize ``model`` in place at the critical point of its theory; return what was set.

    The analysed body (:func:`critsym.body.analysed_part`: the repeated blocks of a top-level
    ``nn.Sequential``, or the whole model as one block) gives the theory; ``solve_for``
    ("sigma_w" or "sigma_b") is solved for χ_J* = 1 with the other hyperparameters at
    ``fixed`` or, where not given, at their pooled estimates from the body's weights.  Every
    weight layer of the body is redrawn W ~ N(0, σ_w²/fan_in) and its bias b ~ N(0, σ_b²)
    (zeros at σ_b = 0), under ``torch.no_grad`` with ``generator`` (default: torch's global
    stream, as ``torch.nn.init``).  Stem and head layers are left as they are.

    ``example_input`` (one batch the model accepts) lets the importer recognise residual
    modules written in ``forward`` and sets K⁰ = mean(h⁰²) of the body input (default
    ``K0`` = 1).  Refusals: see the module doc.
    """

    part = import_part(model, example_input)
    where = f" for {part.description}"
    _refuse_batchnorm(part, where, part.K0 if part.K0 is not None else 1.0)
    from .derive import derive

    theory = derive(part.block)
    names = theory.hyperparameter_names
    if solve_for not in names:
        raise HyperparameterError(
            f"cannot solve for {solve_for!r}{where}: its hyperparameters are {list(names)}"
            + ("" if part.has_bias or solve_for != "sigma_b" else
               " (its layers have no bias)"))
    measured = part.values
    notes = []
    for k in part.disagreeing():
        if k in names and k != solve_for and k not in fixed:
            per = ", ".join(f"{p}: {v[0 if k == 'sigma_w' else 1]:.4g}"
                            for p, v in part.layer_sigmas.items())
            notes.append(f"{k} differs between layers ({per}); set to the pooled "
                         f"{measured[k]:.6g} in every layer (pass {k}=... to choose)")
    hp = {k: v for k, v in measured.items() if k != solve_for}
    hp.update({k: float(v) for k, v in fixed.items()})
    if K0 is None:
        K0 = part.K0 if part.K0 is not None else 1.0
    point = solve_critical(theory, solve_for, current=measured.get(solve_for), K0=K0,
                           bracket=bracket, where=where, **hp)
    values = {**hp, solve_for: point.value}
    sw = float(values.get("sigma_w", part.sigma_w.value))
    sb = float(values.get("sigma_b", 0.0))
    layers, params, more = _draw(model, part.layers, sw, sb, generator)
    notes += more
    return CriticalInit(point=point, hyperparameters=values, previous=measured, layers=layers,
                        parameters=params, part=part, notes=tuple(notes))


# ----------------------------------------------------------------------------- critical_gain
def _functional_names() -> dict:
    import torch
    import torch.nn.functional as F

    return {torch.tanh: "tanh", F.tanh: "tanh", torch.relu: "relu", F.relu: "relu",
            torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu", F.silu: "silu",
            F.elu: "elu", F.selu: "selu", F.softplus: "softplus", torch.erf: "erf",
            torch.sin: "sin"}


def activation_op(activation):
    """The critsym ``Act`` for a name, an ``Act``, a torch activation module, or a torch
    function critsym knows (``torch.tanh``, ``F.relu``, ``F.gelu`` …)."""
    from .ops import Act

    if isinstance(activation, Act):
        return activation
    if isinstance(activation, str):
        return Act(activation)
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - torch is a dependency
        nn = None
    if nn is not None and isinstance(activation, nn.Module):
        from .importer import Reader

        op = Reader({}).map(activation, type(activation).__name__)
        if not isinstance(op, Act):
            raise UnsupportedModuleError(
                f"{type(activation).__name__} is not an activation critsym knows; pass an "
                "activation module such as nn.Tanh() or a name from critsym.activation_names()")
        return op
    if callable(activation):
        name = _functional_names().get(activation)
        if name is not None:
            return Act(name)
        label = getattr(activation, "__name__", repr(activation))
        raise UnsupportedModuleError(
            f"critsym does not know the function {label}: pass an activation name (one of "
            f"{', '.join(_activation_names())}), an Act, or a torch activation module")
    raise UnsupportedModuleError(
        f"activation must be a name, an Act, an nn.Module or a function, got "
        f"{type(activation).__name__}")


def _activation_names() -> list[str]:
    from .activations import activation_names

    return activation_names()


def critical_gain(activation, sigma_b: float = 0.0, *, K0: float = 1.0,
                  bracket: tuple[float, float] | None = None) -> float:
    r"""The critical σ_w of ``activation``: the gain g such that W ~ N(0, g²/fan_in),
    b ~ N(0, σ_b²) puts the block ``act >> Linear`` at χ_J* = 1,

        χ_J* = σ_w² E[φ'(√K* z)²] = 1,   K* = σ_w² E[φ(√K* z)²] + σ_b²,   z ~ N(0, 1).

    (relu: √2 for every σ_b; tanh: 1 at σ_b = 0.)  Unlike ``torch.nn.init.calculate_gain``
    (which keeps the forward variance, e.g. 5/3 for tanh), this is the gain of the
    edge of chaos.  Refuses with :class:`DiscontinuousTransitionError` where χ_J* crosses 1
    only by a jump (gelu, silu at small σ_b) and with :class:`NoCriticalInitError` where it
    never does (identity)."""
    from .derive import derive
    from .ops import mlp_block

    act = activation_op(activation)
    theory = derive(mlp_block(act))
    sb = float(sigma_b)
    if not (np.isfinite(sb) and sb >= 0):
        raise HyperparameterError(f"sigma_b must be a finite number >= 0, got {sigma_b!r}")
    return solve_critical(theory, "sigma_w", K0=K0, bracket=bracket, sigma_b=sb,
                          where=f" for {act!r}").value


__all__ = ["BatchNormStackError", "CriticalInit", "CriticalPoint", "DiscontinuousTransitionError",
           "EverywhereCriticalError", "NoCriticalInitError", "activation_op", "critical_",
           "critical_gain", "import_part", "solve_critical"]
