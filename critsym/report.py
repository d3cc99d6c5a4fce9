r"""One report for one torch model: theory beside Monte Carlo at its current initialization.

``cs.report(model, example_input)`` imports the model (:func:`critsym.from_torch`), takes the
longest run of blocks of one structure in its body (:func:`critsym.body.analysed_part`; each
hyperparameter by its role: σ_w, σ_b, σ_v, σ_o, σ_qk …, read from the weights), and gives

* the APJN across the part from theory, J^{0,l} = Π_{m<l} χ_J(K^m) with K^{m+1} = F_m(K^m)
  run through each block's own map (its own σ's) from the state measured at the part's input
  (K⁰ = mean(h⁰²); a token body's offsets too), :func:`critsym.interop.run_blocks`;
* the APJN measured on the model itself (:func:`critsym.apjn`, Hutchinson probes from its own
  generator) at the outputs of the same blocks, with its standard error;
* the phase ("critical" when χ_J* = 1 within σ̂_w ± 2 SE), χ_J*, the depth scale
  ξ_J = −1/log χ_J* and the universality class with the exponent p of J ~ (l/l₀)^p (where
  critical), at the pooled σ's;
* for a token body whose tokens are not exchangeable (a causal mask, or tokens not alike at
  the body input: :func:`critsym.attention.gram_theory.gram_kind`) J, the phase, χ_J* and
  ξ_J from the token Gram recursion instead (:func:`~critsym.attention.gram_theory.gram_phase`:
  χ_J* = ρ(L_K*) at the Gram's fixed point, or the limit of J^{l+1}/J^l where the state grows
  without bound, with the exponent p of J ∝ l^p), the exchangeable theory's values in the
  notes; where the Gram recursion cannot run the part, the exchangeable theory with a note
  saying why;
* the critical σ_w at the other values (:func:`critsym.init.solve_critical`), or why none.

``Report.plot(ax=None)`` draws J^{0,l} against l: the theory line over the measured points.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .errors import CritsymError

#: seconds the report spends searching for the critical σ_w (and for the exponents)
CRITICAL_BUDGET_S = 60.0
#: the phase is "critical" when χ_J* = 1 lies within σ̂_w ± SE_BAND standard errors
SE_BAND = 2.0
#: off criticality, a depth scale beyond this many blocks is reported as marginal
MARGINAL_DEPTH = 1e4


@dataclass(frozen=True, repr=False)
class Report:
    """Theory and measurement of one model (see the module doc).

    ``part``: the analysed part; ``hyperparameters``: the pooled σ estimates; ``K0``;
    ``J_theory``, ``J_measured``, ``J_measured_se``: J^{0,l} for l = 0..n_blocks;
    ``phase``, ``chi_star``, ``xi_J``, ``universality``, ``exponent`` (p, None off
    criticality); ``critical_point`` (:class:`critsym.init.CriticalPoint` of σ_w, or None)
    with ``critical_note`` saying why none; ``notes``."""

    part: object
    hyperparameters: dict
    K0: float
    J_theory: np.ndarray
    J_measured: np.ndarray
    J_measured_se: np.ndarray
    phase: str
    chi_star: float
    xi_J: float
    universality: str
    exponent: float | None
    critical_point: object | None
    critical_note: str = ""
    notes: tuple = field(default_factory=tuple)

    @property
    def analysed(self) -> str:
        """Which part of the model was analysed, and what was skipped."""
        skip = "; ".join(f"{p} ({why})" for p, why in self.part.skipped)
        return self.part.description + (f"; skipped: {skip}" if skip else "")

    @property
    def layers(self) -> np.ndarray:
        return np.arange(len(self.J_theory))

    @property
    def z(self) -> np.ndarray:
        """(measured − theory)/SE per block (NaN where the SE is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.J_measured_se > 0,
                            (self.J_measured - self.J_theory) / self.J_measured_se, np.nan)

    @property
    def marginal(self) -> bool:
        """True off criticality when the depth scale exceeds :data:`MARGINAL_DEPTH` blocks:
        the phase's sign of χ_J* − 1 is then too small to matter at any practical depth (and
        can flip between initializations)."""
        return self.phase in ("ordered", "chaotic") and np.isfinite(self.xi_J) and \
            abs(self.xi_J) > MARGINAL_DEPTH

    def _marginal_text(self) -> str:
        return (f" (marginal: depth scale beyond {MARGINAL_DEPTH:g} blocks)"
                if self.marginal else "")

    def _critical_text(self) -> str:
        if self.critical_point is None:
            return "none: " + self.critical_note
        cp = self.critical_point
        return f"{cp.solve_for} = {cp.value:.6g} (chi_J* {cp.chi_below:.4g} | {cp.chi_above:.4g})"

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:.4g}" for k, v in self.hyperparameters.items())
        n = len(self.J_theory) - 1
        crit = (f"critical {self.critical_point.solve_for}={self.critical_point.value:.4g}"
                if self.critical_point is not None else "no critical point")
        what = (f"{self.part.n_blocks} differing blocks" if self.part.differing else
                f"{self.part.n_blocks} x {self.part.block!r}")
        hp = hp or "sigmas per block"
        return (f"Report({what}; {hp}; {self.phase}, "
                f"chi_J*={self.chi_star:.4g}; J^(0,{n}) theory {self.J_theory[-1]:.4g}, "
                f"measured {self.J_measured[-1]:.4g} ± {self.J_measured_se[-1]:.2g}; {crit})")

    def __str__(self) -> str:
        n = len(self.J_theory) - 1
        lines = [
            f"analysed: {self.analysed}",
            ("hyperparameters (pooled over the body): "
             + ", ".join(f"{k} = {v:.6g}" for k, v in self.hyperparameters.items())
             if self.hyperparameters else "hyperparameters: each block's own")
            + f"; K0 = {self.K0:.6g}",
            f"phase: {self.phase}{self._marginal_text()}, chi_J* = {self.chi_star:.6g} "
            f"(chi_J* - 1 = {self.chi_star - 1:.3g}), depth scale xi_J = {self.xi_J:.4g} "
            "blocks",
            f"universality: {self.universality}"
            + (f"; J ~ (l/l0)^p with p = {self.exponent:.6g}" if self.exponent is not None
               else ""),
            f"J^(0,{n}): theory {self.J_theory[-1]:.6g}, measured {self.J_measured[-1]:.6g} "
            f"± {self.J_measured_se[-1]:.3g} (z = {self.z[-1]:.2f})",
            f"critical initialization: {self._critical_text()}",
        ]
        lines += [f"note: {t}" for t in self.notes]
        return "\n".join(lines)

    def plot(self, ax=None):
        """J^{0,l} against the block index l: the theory line over the measured points with
        their standard errors (log scale).  Returns the figure."""
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(5.5, 3.8)) if ax is None else ax.figure
        ax = fig.add_subplot(111) if ax is None else ax
        ln = self.layers
        ax.plot(ln, self.J_theory, "-", color="C0", label="theory")
        ax.errorbar(ln[1:], self.J_measured[1:], yerr=self.J_measured_se[1:], fmt="o",
                    ms=4, color="C1", capsize=2, label="measured (cs.apjn)")
        if np.all(self.J_theory > 0) and np.all(self.J_measured[1:] > 0):
            ax.set_yscale("log")
        ax.set_xlabel("block l")
        ax.set_ylabel(r"$J^{0,l}$")
        ax.set_title(f"{self.phase}, $\\chi_J^*$ = {self.chi_star:.4g}" if np.isfinite(
            self.chi_star) else self.universality, fontsize=10)
        ax.legend(frameon=False)
        fig.tight_layout()
        return fig


def theory_J(part) -> np.ndarray:
    """J^{0,l} of the theory through the part's blocks from the state measured at the part's
    input (K⁰ = 1 without an example input), :func:`critsym.interop.run_blocks`: at the
    pooled σ of each role where the layers agree (:attr:`AnalysedPart.pooled`), else each
    block at its own numbers (every non-integer hyperparameter of a block its own symbol,
    :func:`critsym.body.numeric_form`, so blocks of one structure share one derivation)."""
    from .body import numeric_form
    from .interop import derive_block, run_blocks

    axes, tokens = part.axes or part.token_state, part.token_state
    if part.pooled:
        pairs = [(part.theory(), part.values)] * part.n_blocks
    else:
        pairs = []
        for op in part.ops:
            tpl, vals = numeric_form(op)
            pairs.append((derive_block(tpl, axes, tokens), vals))
    return np.asarray(run_blocks(pairs, **(part.state or {"K0": 1.0})).J, float)


def causal_J(part) -> np.ndarray | None:
    """J^{0,l} of the token Gram recursion (:mod:`critsym.attention.gram_theory`) through the
    part's blocks, for a body whose tokens are not exchangeable (a causal mask, or tokens not
    alike at the body input: labelled by the importer): the token Gram of each example at the
    body input is carried through the blocks before the part, and the tangent starts at the
    part's input (T = I, as :func:`measured_J` probes).  ``None`` for other bodies or without
    a measured token Gram."""
    from .attention.gram_theory import part_gram

    pg = part_gram(part)
    return None if pg is None else pg.J


def _wrapped(model):
    """``model`` behind an ``nn.Identity`` named "input", whose output is the model input (so
    that the APJN can start there), and the path map from model paths to wrapper paths."""
    from torch import nn

    wrap = nn.Sequential(OrderedDict([("input", nn.Identity()), ("model", model)]))
    return wrap, (lambda p: "input" if p is None else ("model" if p == "" else f"model.{p}"))


def measured_J(model, example_input, part, *, n_probes: int = 16, seed: int = 0):
    """J^{0,l} measured with :func:`critsym.apjn` from the part's input to every block output
    of ``part``: (J, SE) arrays of length n_blocks + 1.  A model with BatchNorm in training
    mode is measured with the batch as one example (its statistics mix the rows)."""
    from .init import _batchnorm_modules
    from .torch.apjn import apjn
    from .torch.batch_stats import frozen_batch_stats

    wrap, name = _wrapped(model)
    layers = [name(part.inputs)] + [name(p) for p in part.outputs]
    mixes = any(getattr(dict(model.named_modules())[n], "training", False)
                for n in _batchnorm_modules(model))
    with frozen_batch_stats(model):
        res = apjn(wrap, example_input, layers, n_probes=n_probes, seed=seed,
                   batch_axis=None if mixes else 0)
    return np.asarray(res.J, float), np.asarray(res.J_se, float)


def report(model, example_input, *, n_probes: int = 16, seed: int = 0,
           critical_budget: float = CRITICAL_BUDGET_S) -> Report:
    """Theory and measured APJN of ``model`` at its current initialization (module doc).

    ``example_input``: one batch the model accepts (rows are independent examples); the
    measurement averages over its rows and ``n_probes`` Hutchinson probes per row.  The
    search for the critical σ_w stops after ``critical_budget`` seconds (expensive maps, e.g.
    softmax attention by quadrature), and the report then says it was not computed."""
    import torch

    from .body import NoRepeatedBlockError
    from .criticality import fixed_point
    from .criticality.exponents import within_budget
    from .errors import SimulationError
    from .init import (
        BatchNormStackError,
        EverywhereCriticalError,
        NoCriticalInitError,
        _refuse_batchnorm,
        _refuse_post_activation,
        import_part,
        solve_critical,
    )
    from .ops.batchnorm import BatchNorm

    if not isinstance(example_input, torch.Tensor):
        raise SimulationError("example_input must be a torch.Tensor batch the model accepts "
                              f"(rows = examples), got {type(example_input).__name__}")
    try:
        part = import_part(model, example_input)
    except NoRepeatedBlockError as err:
        return _network_report(model, example_input, err, n_probes=n_probes, seed=seed)
    except BatchNormStackError as err:
        if not isinstance(getattr(err, "cause", None), NoRepeatedBlockError):
            raise
        return _network_report(model, example_input, err, n_probes=n_probes, seed=seed,
                               why=str(err))
    notes: list[str] = []
    K0 = float(part.K0)
    values = part.values
    for k in part.disagreeing():
        notes.append(f"{k} differs between the body's layers beyond sampling error "
                     f"({part.agreement[k]!r}); pooled value {values.get(k, float('nan')):.4g}")
    if not part.pooled:
        notes.append("per-layer sigmas differ: the theory runs through each block's own "
                     "sigmas; phase and critical point are at the pooled sigmas of each role")
    if part.result.approximations:
        notes += [f"{p}: {t}" for p, t in part.result.approximations.items()]
    if part.result.output:
        notes.append(f"the model returns several outputs: {part.result.output} is analysed")
    J_th = theory_J(part)
    pg = _part_gram(part, notes)
    if pg is not None:
        notes.append(f"theory J: the {pg.label}; the exchangeable theory gives "
                     f"J^(0,{len(J_th) - 1}) = {J_th[-1]:.4g}")
        J_th = pg.J
    J_me, J_se = measured_J(model, example_input, part, n_probes=n_probes, seed=seed)
    theory = part.theory()
    gp = _gram_phase(part, pg, values, notes) if pg is not None else None
    try:
        fp = fixed_point(theory, K0=K0, **values)
    except CritsymError as e:  # e.g. a post-activation block: its state is a law, no K*
        fp = None
        chi = float(J_th[-1] / J_th[-2]) if len(J_th) > 1 and J_th[-2] > 0 else float("nan")
        phase = ("undetermined" if not np.isfinite(chi) else "chaotic" if chi > 1 else
                 "ordered" if chi < 1 else "critical")
        notes.append(f"no fixed point of this block's theory ({str(e).splitlines()[0][:160]}"
                     f"); phase and chi from the last block's theory chi_J = {chi:.4g}")
    else:
        phase, chi = str(fp.phase(1e-6)), float(fp.chi_star)
    if gp is not None:  # the Gram recursion's phase replaces the exchangeable one
        if fp is not None:
            notes.append(f"the exchangeable theory gives: {phase}, chi_J* = {chi:.6g}, "
                         f"xi_J = {float(fp.xi_J):.4g}")
        phase, chi, fp = gp.phase, gp.chi_star, None
    se = part.sigma_w.se
    if fp is not None and phase != "critical" and "sigma_w" in values and np.isfinite(se) \
            and se > 0:
        lo, hi = (float(fixed_point(theory, K0=K0, **{**values, "sigma_w": values["sigma_w"]
                                                      + s * SE_BAND * se}).chi_star)
                  for s in (-1, 1))
        if (lo - 1) * (hi - 1) <= 0:
            phase = "critical"
            notes.append(f"chi_J* = 1 within sigma_w ± {SE_BAND:g} SE ({se:.2g}) of the "
                         "estimate: critical within sampling error")
    cp, why = None, ""
    try:
        if part.contains(BatchNorm):
            notes.append("BatchNorm mixes the examples of a batch: the measured APJN is that "
                         "of the whole batch as one example")
            _refuse_batchnorm(part, "", K0)
        _refuse_post_activation(part, "sigma_w", "", {}, K0)  # a law state: no fixed point
        others = {k: v for k, v in values.items() if k != "sigma_w"}

        def search():
            try:
                return solve_critical(theory, "sigma_w", current=values.get("sigma_w"), K0=K0,
                                      **others)
            except CritsymError as e:
                return e

        found = within_budget(search, critical_budget)
        if found is None:
            why = (f"not computed: the search for the critical sigma_w took longer than "
                   f"{critical_budget:g} s for this theory; run critsym.init.critical_ (no "
                   "time limit) or pass critical_budget=")
        elif isinstance(found, CritsymError):
            raise found
        else:
            cp = found
    except EverywhereCriticalError as e:
        why = str(e)
        if fp is None and gp is None and phase != "critical":
            notes.append(f"phase: critical_ finds chi_J* = 1 at every sigma_w tried "
                         f"(everywhere critical); the last block's chi_J = {chi:.4g} "
                         f"(phase {phase} from it alone) is a finite-depth value")
            phase = "critical"
        if pg is not None:
            from .attention.gram_theory import confirm_everywhere_critical

            extra = confirm_everywhere_critical(part, "sigma_w", values.get("sigma_w"),
                                                {k: v for k, v in values.items()
                                                 if k != "sigma_w"})
            why = f"{why}. {extra}" if extra else why
    except NoCriticalInitError as e:
        why = str(e)
    except CritsymError as e:
        why = str(e)
    if cp is not None and pg is not None:
        at_cp = _gram_phase(part, pg, {**values, cp.solve_for: cp.value}, notes)
        if at_cp is not None:
            notes.append(f"critical point from the exchangeable theory; at it the {pg.label} "
                         f"gives chi_J* = {at_cp.chi_star:.6g} ({at_cp.phase})")
    at = values
    if gp is not None:
        unb = gp.status == "unbounded"
        universality = ("state grows without bound: J^(0,l) ~ l^p, p fitted on the token "
                        "Gram recursion" if unb else f"not computed for the {pg.label}")
        return Report(part=part, hyperparameters=values, K0=K0, J_theory=J_th,
                      J_measured=J_me, J_measured_se=J_se, phase=phase, chi_star=chi,
                      xi_J=gp.xi_J, universality=universality,
                      exponent=gp.exponent if unb else None, critical_point=cp,
                      critical_note=why, notes=tuple(notes))
    if fp is None:
        return Report(part=part, hyperparameters=values, K0=K0, J_theory=J_th,
                      J_measured=J_me, J_measured_se=J_se, phase=phase, chi_star=chi,
                      xi_J=float(-1 / np.log(chi)) if np.isfinite(chi) and chi > 0 and
                      chi != 1 and phase != "critical" else float("inf"),
                      universality="not computed (no fixed point)", exponent=None,
                      critical_point=cp, critical_note=why, notes=tuple(notes))
    if phase == "critical" and cp is not None and str(fp.phase(1e-6)) != "critical":
        at = {**values, "sigma_w": cp.value}
        notes.append(f"universality and exponent at the critical sigma_w = {cp.value:.6g}")
    universality, exponent = _exponents(theory, K0, at, critical_budget)
    return Report(part=part, hyperparameters=values, K0=K0, J_theory=J_th, J_measured=J_me,
                  J_measured_se=J_se, phase=phase, chi_star=chi, xi_J=float(fp.xi_J),
                  universality=universality, exponent=exponent, critical_point=cp,
                  critical_note=why, notes=tuple(notes))


def _part_gram(part, notes: list):
    """:func:`critsym.attention.gram_theory.part_gram`, or None with a note where the Gram
    recursion cannot run the part (the exchangeable theory then stays, labelled)."""
    from .attention.gram_theory import GRAM_ERRORS, exchangeable_fallback, part_gram

    try:
        return part_gram(part)
    except GRAM_ERRORS as e:
        notes.append(exchangeable_fallback(e))
        return None


def _gram_phase(part, pg, values: dict, notes: list):
    """The phase of the part's repeated block (its role form at ``values``) under the token
    Gram recursion from the part's input Gram (:func:`critsym.attention.gram_theory.gram_phase`),
    or None with a note where it cannot be computed."""
    from .attention.gram_theory import GRAM_ERRORS, gram_phase

    try:
        gp = gram_phase(part.block.subs(values), pg.K, pg.causal)
    except (*GRAM_ERRORS, CritsymError) as e:
        notes.append(f"phase from the exchangeable theory: the {pg.label} found none "
                     f"({str(e).splitlines()[0]})")
        return None
    what = (f"the state grows without bound; the per-block ratio J^(l+1)/J^l = "
            f"{gp.chi[-1]:.6g} after {len(gp.chi)} blocks, fitted limit chi_J* = "
            f"{gp.chi_star:.6g}, J ~ l^p with p = {gp.exponent:.4g}" if gp.status == "unbounded"
            else f"fixed point of the Gram, chi_J* = rho(L_K*) = {gp.chi_star:.6g}")
    notes.append(f"phase and chi_J* from the {pg.label} of the repeated block: {what}"
                 + (f"; standard attention taken as uniform, largest logit variance "
                    f"{gp.max_logit_var:.3g}" if gp.max_logit_var else ""))
    return gp


def _exponents(theory, K0: float, at: dict, budget: float) -> tuple[str, float | None]:
    """(universality class, exponent p or None) of :func:`critsym.analytic_exponents`, or
    "not computed" when it takes longer than ``budget`` seconds."""
    from .criticality import analytic_exponents
    from .criticality.exponents import within_budget

    def run():
        try:
            return analytic_exponents(theory, K0=K0, **at)
        except CritsymError as e:
            return e

    ex = within_budget(run, budget)
    if ex is None:
        return f"not computed (longer than {budget:g} s)", None
    if isinstance(ex, CritsymError):
        return f"not computed: {str(ex).splitlines()[0]}", None
    return str(ex.universality), None if ex.p is None else float(ex.p)


def _network_report(model, x, err, *, n_probes: int, seed: int, why: str = "") -> Report:
    """A body of differing blocks (a whole-network import): the importer's network theory
    J^{1,b} (from the first block's output, through each block's own map) beside the APJN
    measured between the same outputs; no single χ_J*, phase or critical point exists."""
    import warnings

    from .body import AnalysedPart, role_block
    from .importer import from_torch
    from .init import _batchnorm_modules
    from .torch.apjn import apjn
    from .torch.batch_stats import frozen_batch_stats

    with warnings.catch_warnings(), frozen_batch_stats(model):
        warnings.simplefilter("ignore")
        res = from_torch(model, x)
    blocks, outs = list(res.blocks), list(res.outputs)
    if len(blocks) < 2 or any(o is None for o in outs):
        raise err
    named = dict(model.named_modules())
    mixes = any(named[n].training for n in _batchnorm_modules(model))
    with frozen_batch_stats(model):
        meas = apjn(model, x, outs, n_probes=n_probes, seed=seed,
                    batch_axis=None if mixes else 0)
    J_th = np.asarray(res.J_theory(start=1), float)
    run = res.network_run()
    part = AnalysedPart(
        result=res, blocks=tuple(blocks[1:]), block=role_block(blocks[1].arch),
        ops=tuple(b.arch for b in blocks[1:]), inputs=outs[0], outputs=tuple(outs[1:]),
        layers=tuple(p for b in blocks[1:] for p in b.layers),
        skipped=tuple((s.path, f"{s.part}: {s.reason}") for s in res.skipped)
        + ((blocks[0].path, "reference: J is measured from its output"),),
        state={"K0": float(run.K[1])}, differing=True)
    differ = ("the body's blocks differ, so there is no single chi_J*, phase or critical "
              "point; J runs through each block's own map (import the repeated part by itself "
              "for them)")
    notes = (differ,) + (("the whole batch is one example (BatchNorm mixes its rows)",)
                         if mixes else ())
    why = why or differ
    return Report(part=part, hyperparameters={}, K0=float(run.K[1]), J_theory=J_th,
                  J_measured=np.asarray(meas.J, float), J_measured_se=np.asarray(meas.J_se,
                                                                                float),
                  phase="undetermined", chi_star=float("nan"), xi_J=float("nan"),
                  universality="blocks differ", exponent=None, critical_point=None,
                  critical_note=why, notes=notes)


class _CallableModule(types.ModuleType):
    """``critsym.report`` is both this module and the function :func:`report`: once the
    module is imported as ``critsym.report`` (which binds the name on the package), calling
    it still runs the report."""

    def __call__(self, *args, **kwargs) -> Report:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Report", "measured_J", "report"]
