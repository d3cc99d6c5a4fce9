r"""Critical initialization of torch models, in the style of ``torch.nn.init``.

* :func:`critical_` re-initializes a model in place at its theory's critical point: the value
  x* of one hyperparameter (``solve_for``, default σ_w) at which χ_J* = 1, the others at the
  values read from the model's weights or given.  Every weight layer of the analysed body
  (:func:`critsym.body.analysed_part`, from :func:`critsym.from_torch`) is redrawn at its own
  hyperparameter (its role: σ_w for MLP and convolution weights; σ_v, σ_o, and σ_q·σ_k = σ_qk
  for attention projections): W ~ N(0, σ²/fan_in) (fan_in as the importer read it, e.g.
  in_features · kernel size; the rows of a GPT-2 ``Conv1D`` weight are its inputs), every
  bias b ~ N(0, σ_b²) of its role (zero when σ_b = 0).
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
from dataclasses import dataclass, field

import numpy as np

from .criticality.critical import FirstOrderTransitionError
from .errors import (
    CritsymError,
    HyperparameterError,
    NoCriticalPointError,
    UnsupportedModuleError,
)

#: relative offset at which χ_J* is checked on both sides of the critical point
SIDE_OFFSET = 1e-3
#: |log χ_J*| at or below this is on neither side of 1 (marginal) in the scans
MARGINAL = 1e-9


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
    example_input: object = field(default=None, repr=False, compare=False)

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

    def apply_to(self, model, generator=None, example_input=None) -> None:
        """Redraw another model of the same architecture at the same σ's (e.g. an ensemble
        of independently initialized copies), layer by layer as :func:`critical_` did
        (``example_input``: as for :func:`critical_`, default the one it was given)."""
        x = example_input if example_input is not None else self.example_input
        part = import_part(model, x)
        if set(part.layers) != set(self.layers):
            raise UnsupportedModuleError(
                "apply_to needs a model of the same architecture: its analysed layers "
                f"{list(part.layers)[:4]}… differ from {list(self.layers)[:4]}…")
        _draw(model, part, self.hyperparameters, generator)

    def __repr__(self) -> str:
        was = self.previous.get(self.solve_for)
        was = f" (was {was:.4g})" if was is not None else ""
        others = ", ".join(f"{k}={v:.4g}" for k, v in self.hyperparameters.items()
                           if k != self.solve_for)
        return (f"CriticalInit({self.solve_for}={self.value:.6g}{was}"
                f"{', ' + others if others else ''}; {len(self.layers)} layers in "
                f"{self.part.n_blocks} blocks; chi_J* {self.point.chi_below:.4g} | "
                f"{self.point.chi_star:.6g} | {self.point.chi_above:.4g})")


#: points of the coarse scan of χ_J* along ``solve_for`` for token / multi-axis theories
COARSE_SCAN = 13


# ----------------------------------------------------------------------------- solving
def _chi_star(theory, K0, **hp) -> float:
    from .criticality import fixed_point

    return float(fixed_point(theory, K0=K0, **hp).chi_star)


def _chi_grid(theory, solve_for: str, grid, K0: float, hp: dict) -> np.ndarray:
    """χ_J* at every value of ``grid`` along ``solve_for`` (one vectorized fixed-point
    search)."""
    from .criticality import fixed_point

    fp = fixed_point(theory, K0=K0, **{**hp, solve_for: np.asarray(grid, float)})
    return np.broadcast_to(np.asarray(fp.chi_star, float), np.shape(grid)).copy()


def _chi_grid_robust(theory, solve_for: str, grid, K0: float, hp: dict
                     ) -> tuple[np.ndarray, str]:
    """:func:`_chi_grid`, point by point where the vectorized search fails; NaN at the
    points the theory cannot evaluate, and the first reason ("" when none failed)."""
    try:
        return _chi_grid(theory, solve_for, grid, K0, hp), ""
    except CritsymError:
        pass
    out, why = np.full(len(grid), np.nan), ""
    for i, x in enumerate(grid):
        try:
            out[i] = _chi_star(theory, K0, **{**hp, solve_for: float(x)})
        except CritsymError as e:
            why = why or f"{solve_for} = {x:.4g}: {str(e).splitlines()[0]}"
    return out, why


def _unbounded_everywhere(theory, solve_for: str, current, bracket, K0: float, hp: dict,
                          where: str) -> None:
    """Raise :class:`EverywhereCriticalError` when the state grows without bound with
    χ_J* = 1 (to 1e-6) at ``current`` and at ``current``·10^{∓1} (inside ``bracket``): e.g.
    pre-LN residual blocks with μ = 1, where K grows linearly with depth and χ_J → 1 whatever
    the weight scales."""
    from .criticality import fixed_point

    lo, hi = bracket
    if current is None or not np.isfinite(current) or current <= 0:
        return
    xs = np.array([x for x in (current / 10, current, current * 10) if lo <= x <= hi])
    if len(xs) < 2:
        return
    try:
        fp = fixed_point(theory, K0=K0, **{**hp, solve_for: xs})
    except CritsymError:
        return
    status = np.broadcast_to(np.asarray(fp.status), xs.shape)
    chi = np.broadcast_to(np.asarray(fp.chi_star, float), xs.shape)
    if np.all(status == "unbounded") and np.all(np.abs(chi - 1) <= 1e-6):
        at = ", ".join(f"{x:.4g}" for x in xs)
        raise EverywhereCriticalError(
            f"no isolated critical point{where}: at every sigma tried along {solve_for} "
            f"({at}) the state grows without bound and chi_J* = 1 (e.g. a pre-LN residual "
            "block with mu = 1: the residual stream grows linearly with depth and the APJN "
            "as a power of depth at any initialization); keep the current initialization, "
            "or change the architecture (e.g. residual mu < 1) to get a critical point")


def _sides(chi: np.ndarray, grid: np.ndarray, solve_for: str) -> str:
    """Where χ_J* lies along the scan, in words: one side of 1 at every value, or one side
    where it is more than :data:`MARGINAL` from 1 and marginal (χ_J* → 1, e.g. a block that
    tends to the identity) at the other values; with χ_J* − 1 at both ends."""
    ok = np.isfinite(chi)
    dev = chi - 1
    near = ok & (np.abs(np.log(np.where(ok, chi, 1.0))) <= MARGINAL)
    far = ok & ~near
    if far.any() and np.all(dev[far] < 0):
        side = "ordered (chi_J* < 1)"
    elif far.any() and np.all(dev[far] > 0):
        side = "chaotic (chi_J* > 1)"
    else:
        side = "on both sides of 1"
    ends = (f"; chi_J* - 1 = {dev[0]:.3g} at {solve_for} = {grid[0]:.4g} and {dev[-1]:.3g} at "
            f"{grid[-1]:.4g}")
    if not near.any() or not far.any():
        return f"{side} at every value{ends}"
    gf, gn = grid[far], grid[near]
    return (f"{side} for {solve_for} in [{gf.min():.4g}, {gf.max():.4g}] and marginal "
            f"(|chi_J* - 1| <= {MARGINAL:g}, no crossing) in [{gn.min():.4g}, {gn.max():.4g}]"
            f"{ends}")


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
    lo, hi = bracket if bracket is not None else DEFAULT_BRACKETS.get(solve_for, (0.0, 1.0))
    grid = chi = None
    skipped_at = ""
    if theory.multi_axis or getattr(theory, "token_state", False):
        # every fixed point costs seconds (token states, attention by quadrature): first the
        # current value and a decade on each side (a residual stream that grows without bound
        # at all three, chi_J* = 1: everywhere critical), else a coarse scan, then each sign
        # change of log chi_J* on its own sub-bracket
        _unbounded_everywhere(theory, solve_for, current, (lo, hi), K0, hp, where)
        grid = np.geomspace(max(lo, hi * 1e-3), hi, COARSE_SCAN) if lo >= 0 and hi > 0 \
            else np.linspace(lo, hi, COARSE_SCAN)
        chi, failed = _chi_grid_robust(theory, solve_for, grid, K0, hp)
        if failed:
            keep = np.isfinite(chi)
            skipped_at = (f"; no fixed point could be computed at {int((~keep).sum())} of the "
                          f"{len(grid)} values scanned ({failed})")
            grid, chi = grid[keep], chi[keep]
            if not keep.any():
                raise NoCriticalInitError(
                    f"no critical point could be computed{where} along {solve_for} in "
                    f"[{lo:g}, {hi:g}]: {failed}")
        lg = np.log(chi)
        sg = np.where(np.abs(lg) <= MARGINAL, 0, np.sign(lg))
        idx = [i for i in range(len(grid)) if sg[i] in (-1, 1) and np.isfinite(lg[i])]
        crossings = []
        for i0, i1 in zip(idx[:-1], idx[1:], strict=False):
            if sg[i0] != sg[i1]:
                crossings += transitions(theory, solve_for, bracket=(grid[i0], grid[i1]),
                                         K0=K0, scan=3, **hp)
    else:
        crossings = transitions(theory, solve_for, bracket=bracket, K0=K0, **hp)
    roots = [float(c) for c in crossings if not hasattr(c, "chi_below")]
    jumps = [c for c in crossings if hasattr(c, "chi_below")]
    at = f" at {hp}" if hp else ""
    if not roots:
        if chi is not None:
            everywhere = bool(np.all(np.abs(chi - 1) <= 1e-6))
        else:
            everywhere = everywhere_critical(theory, {solve_for: (lo, hi)}, K0=K0,
                                             **hp).everywhere
        if everywhere:
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
        if chi is None:
            grid = np.linspace(lo, hi, 33)
            chi = _chi_grid(theory, solve_for, grid, K0, hp)
        raise NoCriticalInitError(
            f"no critical point{where}: chi_J* stays in [{np.nanmin(chi):.4g}, "
            f"{np.nanmax(chi):.4g}] for {solve_for} in [{grid[0]:.4g}, {grid[-1]:.4g}]{at}, "
            f"{_sides(chi, grid, solve_for)}{skipped_at}; solve for another hyperparameter, or "
            "pass bracket=(lo, hi)")
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
def _role_sigma(part, values: dict, role: str) -> float | None:
    """The scale of a layer of ``role`` at ``values``: σ_q and σ_k split σ_qk keeping their
    ratio read from the model (σ_q/σ_k); None for a role the theory does not hold."""
    if role in ("sigma_q", "sigma_k") and "sigma_qk" in values:
        q, k = part.estimates.get("sigma_q"), part.estimates.get("sigma_k")
        r = q.value / k.value if q is not None and k is not None and k.value > 0 and \
            q.value > 0 else 1.0
        qk = float(values["sigma_qk"])
        return math.sqrt(qk * r) if role == "sigma_q" else math.sqrt(qk / r)
    v = values.get(role)
    return None if v is None else float(v)


def _draw(model, part, values: dict, generator=None):
    """Redraw the analysed part's weight layers, each at its role's scale in ``values``:
    W ~ N(0, σ²/fan_in), b ~ N(0, σ_b²) (zeros at σ_b = 0).  Layers of a role the theory
    does not hold keep their weights (noted).  Returns ({path: (σ, σ_b, fan_in)},
    {parameter: std}, notes)."""
    import torch

    model_storage = {p.untyped_storage().data_ptr() for p in model.parameters()}
    layers, params, notes = {}, {}, []
    todo = []
    for r in part.records:
        sw = _role_sigma(part, values, r.role)
        if sw is None:
            notes.append(f"layer {r.path!r} ({r.role}) is not part of the theory's "
                         "hyperparameters: left as it is")
            continue
        w = r.weight
        if not isinstance(w, torch.Tensor) or w.untyped_storage().data_ptr() not in \
                model_storage:
            raise UnsupportedModuleError(
                f"cannot re-initialize layer {r.path!r}: the importer read a transformed copy "
                "of its weight, not the model's parameter; initialize it by hand at the "
                "returned point")
        sb = float(values.get(r.bias_role, 0.0)) if r.bias_role else 0.0
        todo.append((r, sw, sb))
    with torch.no_grad():
        for r, sw, sb in todo:
            std = sw / math.sqrt(r.fan_in)
            r.weight.normal_(0.0, std, generator=generator)
            params[f"{r.path}.weight" if r.path else "weight"] = std
            b = r.bias
            if isinstance(b, torch.Tensor):
                if sb > 0:
                    b.normal_(0.0, sb, generator=generator)
                else:
                    b.zero_()
                params[f"{r.path}.bias" if r.path else "bias"] = sb
            elif sb > 0:
                notes.append(f"layer {r.path!r} has no bias: {r.bias_role} = {sb:.4g} is not "
                             "set there")
            layers[r.path] = (sw, sb if isinstance(b, torch.Tensor) else 0.0, r.fan_in)
    return layers, params, notes


def _refuse_batchnorm(part, where: str, K0: float = 1.0) -> None:
    """Refuse a body that normalises over the batch, with χ_J* of its infinite-batch theory
    at the current σ's."""
    from .ops.batchnorm import BatchNorm

    if not part.contains(BatchNorm):
        return
    try:
        chi = (f"its infinite-batch theory gives chi_J* = "
               f"{_chi_star(part.theory(), K0, **part.values):.4g} at the current sigmas, and ")
    except CritsymError:  # a block with a law state (post-activation): no scalar chi_J* here
        chi = ""
    raise BatchNormStackError(
        f"no critical initialization{where}: the body normalises over the batch (BatchNorm); "
        f"{chi}a plain "
        "BatchNorm stack makes gradients explode with depth at every initialization "
        "(chi_J* > 1 for every sigma_w; see critsym.batchnorm.explosion_report). Replace "
        "BatchNorm by LayerNorm or GroupNorm, or analyse a part without it")


#: blocks the post-activation stream theory is run through when checking for a critical point
STREAM_DEPTH = 32


def _refuse_post_activation(part, solve_for: str, where: str, fixed: dict, K0: float) -> None:
    """Refuse a body of post-activation residual blocks (a law state, :mod:`critsym.interop.
    stream`): J^{0,l} through ``STREAM_DEPTH`` blocks from x⁰ ~ N(0, K0) at the current
    ``solve_for`` and a decade on each side.  Where it is the same at all three (every conv
    followed by a per-example normalisation, GroupNorm, which removes its weight scale), no
    value is critical or more critical than another: :class:`EverywhereCriticalError` with
    the growth of J with depth; else the law state's critical point is not derived."""
    from .interop.stream import gaussian_law

    theory = part.theory()
    if not getattr(theory, "stream", False):
        return
    values = {**part.values, **{k: float(v) for k, v in fixed.items()}}
    x = values.get(solve_for)
    if x is None or not np.isfinite(x) or x <= 0:
        raise HyperparameterError(
            f"cannot solve for {solve_for!r}{where}: the blocks' hyperparameters are "
            f"{sorted(values)}")
    runs = []
    for s in (x / 10, x, x * 10):
        law, J = gaussian_law(K0), []
        for _ in range(STREAM_DEPTH):
            law = theory.step(law, {**values, solve_for: s})
            J.append(law.J)
        runs.append((np.array(J), law.K))
    J = runs[1][0]
    same = all(np.allclose(r[0], J, rtol=1e-9, atol=0) for r in runs)
    half = STREAM_DEPTH // 2
    growth = (f"J^{{0,l}} = {J[half - 1]:.4g} at l = {half} and {J[-1]:.4g} at l = "
              f"{STREAM_DEPTH} (per block x{J[-1] / J[-2]:.4f} at the last; exponent "
              f"log2(J^{{0,{STREAM_DEPTH}}}/J^{{0,{half}}}) = {np.log2(J[-1] / J[half - 1]):.3f})"
              f", E x^2 = {runs[1][1]:.4g} after {STREAM_DEPTH} blocks")
    if same:
        raise EverywhereCriticalError(
            f"no isolated critical point{where}: the post-activation residual blocks' theory "
            f"does not depend on {solve_for} (J through {STREAM_DEPTH} blocks is the same at "
            f"{solve_for} = {x / 10:.4g}, {x:.4g}, {x * 10:.4g}: each weight layer is followed by "
            "a per-example normalisation, GroupNorm, which removes its scale); the residual "
            f"stream grows without bound and the APJN changes as a power of depth ({growth}); "
            "no initialization is more critical than another: keep the current one")
    raise NoCriticalInitError(
        f"no critical point derived{where}: the post-activation residual blocks' state is the "
        f"law of a non-Gaussian stream, whose critical point critsym does not derive; "
        f"at the current {solve_for} = {x:.4g}: {growth}")


def _batchnorm_modules(model) -> list[str]:
    from torch.nn.modules.batchnorm import _BatchNorm

    return [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]


def _first_clause(e: Exception, n: int = 160) -> str:
    text = str(e).split(" (blocks ")[0].split("; ")[0]
    return text if len(text) <= n else text[:n - 1] + "…"


def import_part(model, example_input=None):
    """:func:`critsym.body.analysed_part` (the longest run of agreeing blocks of
    :func:`critsym.from_torch`'s body), with a model holding BatchNorm modules that cannot be
    imported refused as a :class:`BatchNormStackError`."""
    from .body import analysed_part
    from .torch.batch_stats import frozen_batch_stats
    from .torch.build import CritsymNet

    if isinstance(model, CritsymNet):
        raise UnsupportedModuleError(
            "a CritsymNet (cs.build) stacks many networks drawn at the sigmas given to "
            "cs.build: build it at the critical point (cs.critical_point(cs.derive(arch), "
            "...)), or export one plain torch model with cs.to_torch_model")
    try:
        with frozen_batch_stats(model):
            part = analysed_part(model, example_input)
    except UnsupportedModuleError as e:
        bn = _batchnorm_modules(model)
        if bn:
            err = BatchNormStackError(
                f"no critical initialization: submodule {bn[0]!r} normalises over the batch "
                f"(BatchNorm) and the model cannot be analysed ({_first_clause(e)}); "
                "BatchNorm makes "
                "gradients explode with depth at every initialization: replace it by "
                "LayerNorm or GroupNorm")
            err.cause = e  # what the analysis found (e.g. blocks that differ)
            raise err from None
        raise
    return part


def critical_(model, solve_for: str = "sigma_w", example_input=None, *, K0: float | None = None,
              bracket: tuple[float, float] | None = None, generator=None,
              **fixed: float) -> CriticalInit:
    r"""Re-initialize ``model`` in place at the critical point of its theory; return what was set.

    The analysed part (:func:`critsym.body.analysed_part`: the longest run of blocks of one
    structure in the body :func:`critsym.from_torch` reads, their current σ's aside) gives the
    theory, each hyperparameter a role (σ_w, σ_b, and for attention σ_v, σ_o, σ_qk, σ_b_v,
    σ_b_o); ``solve_for`` is solved for χ_J* = 1 with the other hyperparameters at ``fixed``
    or, where not given, at their pooled estimates from the part's layers.  Every weight layer
    of the part is redrawn W ~ N(0, σ²/fan_in) at its role's σ and its bias b ~ N(0, σ_b²)
    (zeros at σ_b = 0), under ``torch.no_grad`` with ``generator`` (default: torch's global
    stream, as ``torch.nn.init``).  Stem, head and the blocks outside the part are left as
    they are.

    ``example_input`` (one batch the model accepts) lets the importer read what only a run
    shows (token counts, residual sums written in ``forward``, a stem fx cannot trace) and
    sets K⁰ = mean(h⁰²) of the part's input (default ``K0`` = 1).  Refusals: see the module
    doc.
    """

    part = import_part(model, example_input)
    where = f" for {part.n_blocks} blocks {part.blocks[0].path} … {part.blocks[-1].path}"
    _refuse_batchnorm(part, where, part.K0 if part.K0 is not None else 1.0)
    _refuse_post_activation(part, solve_for, where, fixed,
                            K0 if K0 is not None else part.K0 if part.K0 is not None else 1.0)
    theory = part.theory()
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
            per = ", ".join(f"{r.path}: {math.sqrt(r.w_sq / r.n_w):.4g}"
                            for r in part.records if r.role == k)
            notes.append(f"{k} differs between layers ({per}); set to the pooled "
                         f"{measured[k]:.6g} in every layer (pass {k}=... to choose)")
    hp = {k: v for k, v in measured.items() if k != solve_for}
    hp.update({k: float(v) for k, v in fixed.items()})
    if K0 is None:
        K0 = part.K0 if part.K0 is not None else 1.0
    try:
        point = solve_critical(theory, solve_for, current=measured.get(solve_for), K0=K0,
                               bracket=bracket, where=where, **hp)
    except EverywhereCriticalError as e:  # tokens not exchangeable: checked by the Gram theory
        from .attention.gram_theory import confirm_everywhere_critical

        extra = confirm_everywhere_critical(part, solve_for, measured.get(solve_for), hp)
        if not extra:
            raise
        raise EverywhereCriticalError(f"{e}. {extra}") from None
    values = {**hp, solve_for: point.value}
    layers, params, more = _draw(model, part, values, generator)
    notes += more
    return CriticalInit(point=point, hyperparameters=values, previous=measured, layers=layers,
                        parameters=params, part=part, notes=tuple(notes),
                        example_input=example_input)


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
