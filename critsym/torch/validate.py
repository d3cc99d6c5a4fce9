r"""Theory against simulation, layer by layer, with z-scores and an honest finite-width rule.

For each quantity X ∈ {K^l, J^{0,l}, c^l} and layer l, the simulation at width N estimates
X_N = X_∞ + a_l/N + O(l²/N²) (finite-width corrections are O(l/N)).  The rule:

* with two or more widths, X_∞ is the weighted-least-squares intercept of X_N against 1/N
  (weights 1/SE²), with its standard error propagated from the Monte Carlo errors — the O(1/N)
  term is removed, not tolerated;
* with one width, X_N is compared directly (no finite-width correction: use only when l/N is
  negligible against the Monte Carlo error);
* z = (X_∞ − X_theory)/SE(X_∞); the check passes when every |z| ≤ ``z_max`` (default 4).  The
  neglected O(l²/N²) remainder is why the widths should satisfy depth ≤ min(widths)/4.

Entries known exactly at the input (K^0, c^0, which the inputs fix) have no error and are not
scored.  Every other entry must be scored: one whose standard error is zero or not finite at
some width (no spread across the networks, an overflow) or whose theory value is not finite
makes the check fail, with the reason in :attr:`ValidationResult.unscored`; the check cannot
pass with nothing scored.  At least two widths (the 1/N rule) and :data:`MIN_NETS` networks per
width are required.

:func:`power` measures what a passing check is worth: the smallest relative deviation of a
hyperparameter (σ_w by default) at which the *same* simulations reject the theory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import line_fit
from .simulate import SimulationResult, simulate

QUANTITIES = ("K", "J", "c")
#: Fewest networks per width: the standard error of fewer is too noisy for a z-test.
MIN_NETS = 8
#: A standard error below this fraction of the mean is rounding, not Monte Carlo spread.
DEGENERATE = 1e-6


def extrapolate(widths: Sequence[float], y: Sequence[float], se: Sequence[float]
                ) -> tuple[float, float, float]:
    r"""(X_∞, SE(X_∞), slope) of the weighted fit y = X_∞ + slope/N (weights 1/se²).

    One width: (y, se, 0).  Standard formulas: with x = 1/N, w = 1/se², S = Σw, Sx = Σwx,
    Sxx = Σwx², Sy = Σwy, Sxy = Σwxy, D = S·Sxx − Sx²: X_∞ = (Sxx·Sy − Sx·Sxy)/D,
    Var X_∞ = Sxx/D, slope = (S·Sxy − Sx·Sy)/D.
    """
    x = 1.0 / np.asarray(widths, dtype=float)
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    if len(x) == 1:
        return float(y[0]), float(se[0]), 0.0
    fit = line_fit(x, y, sigma=se)
    return float(fit.coef[0]), float(fit.se[0]), float(fit.coef[1])


def score(quantity: str, layer: int, theory: float, widths: Sequence[float],
          mc: Sequence[float], se: Sequence[float]) -> dict:
    """One row of the rule above: the 1/N extrapolation of ``mc`` ± ``se`` over ``widths`` and
    z = (X_∞ − theory)/SE(X_∞).  K^0 and c^0 are not scored (``reason`` None); an entry that
    should be scored but cannot be has z None and ``reason`` saying why."""
    mc, se = [float(v) for v in mc], [float(v) for v in se]
    theory = float(theory)
    ext, ext_se, slope, z, reason = mc[-1], 0.0, 0.0, None, None
    if layer == 0 and quantity in ("K", "c"):
        pass  # fixed exactly by the inputs
    elif not all(math.isfinite(v) for v in mc):
        reason = "a Monte Carlo mean is not finite"
    elif any(not math.isfinite(v) for v in se):
        reason = "standard error not finite (too few networks?)"
    elif any(v <= DEGENERATE * abs(m) or v == 0 for v, m in zip(se, mc, strict=True)):
        w = [int(n) for n, v, m in zip(widths, se, mc, strict=True)
             if v <= DEGENERATE * abs(m) or v == 0]
        reason = (f"zero spread across networks at N={w} (rounding only: a quantity fixed by "
                  "the inputs, e.g. c for c0 = ±1; leave it out of quantities)")
    elif not math.isfinite(theory):
        reason = "the theory value is not finite"
    else:
        ext, ext_se, slope = extrapolate(widths, mc, se)
        if math.isfinite(ext_se) and ext_se > 0 and math.isfinite(ext):
            z = (ext - theory) / ext_se
        else:
            reason = "the 1/N extrapolation has no finite standard error"
    return dict(quantity=quantity, layer=layer, theory=theory, mc=mc, mc_se=se,
                extrapolated=ext, extrapolated_se=ext_se, slope=slope, z=z, reason=reason)


class ScoredRows:
    """The verdict over rows of :func:`score` (each with ``z`` and ``reason``) against the
    threshold ``z_max``: every entry that should be scored is, and every |z| ≤ ``z_max``.
    Shared by the validation results (``rows`` and ``z_max`` are their fields)."""

    rows: list[dict]
    z_max: float

    @property
    def scored(self) -> list[dict]:
        return [r for r in self.rows if r["z"] is not None]

    @property
    def unscored(self) -> list[dict]:
        """Entries that should have been scored but could not be (each with its ``reason``)."""
        return [r for r in self.rows if r["reason"] is not None]

    @property
    def n_scored(self) -> int:
        return len(self.scored)

    @property
    def n_expected(self) -> int:
        """Entries that should be scored: all but K^0 and c^0."""
        return len(self.scored) + len(self.unscored)

    @property
    def max_abs_z(self) -> float:
        """max |z| over the scored entries (NaN when none is scored)."""
        return max((abs(r["z"]) for r in self.scored), default=math.nan)

    @property
    def passed(self) -> bool:
        """Every entry that should be scored is, and every |z| ≤ ``z_max``."""
        return self.n_scored > 0 and not self.unscored and self.max_abs_z <= self.z_max

    @property
    def why(self) -> str:
        """Why the check failed ('' when it passed)."""
        if self.passed:
            return ""
        if self.unscored:
            r = self.unscored[0]
            return (f"{len(self.unscored)} of {self.n_expected} entries could not be scored, "
                    f"e.g. {r['quantity']}^{r['layer']}: {r['reason']}")
        if self.n_scored == 0:
            return "no entry was scored"
        w = self.worst(1)[0]
        return (f"|z| = {abs(w['z']):.2f} > {self.z_max:g} at {w['quantity']}^{w['layer']}")

    def worst(self, n: int = 3) -> list[dict]:
        return sorted(self.scored, key=lambda r: -abs(r["z"]))[:n]


@dataclass(frozen=True)
class ValidationResult(ScoredRows):
    """Rows of (quantity, layer, theory, per-width MC ± SE, extrapolated ± SE, z)."""

    arch: Op
    hp: dict
    widths: tuple[int, ...]
    depth: int
    rows: list[dict]
    sims: list[SimulationResult]
    theory: object
    z_max: float

    def to_text(self) -> str:
        """The table as aligned plain text."""
        head = ["q", "l", "theory"] + [f"MC N={w}" for w in self.widths] + ["N→∞", "z"]
        lines = [" ".join(f"{h:>18}" if i > 1 else f"{h:>3}" for i, h in enumerate(head))]
        for r in self.rows:
            cells = [f"{r['quantity']:>3}", f"{r['layer']:>3}", f"{r['theory']:>18.6g}"]
            for m, s in zip(r["mc"], r["mc_se"], strict=True):
                cells.append(f"{m:>10.5g} ±{s:<7.2g}")
            cells.append(f"{r['extrapolated']:>10.5g} ±{r['extrapolated_se']:<7.2g}")
            z = "unscored" if r["reason"] else "-" if r["z"] is None else format(r["z"], "+.2f")
            cells.append(f"{z:>18}")
            lines.append(" ".join(cells))
        lines.append(f"scored {self.n_scored} of {self.n_expected} entries; max |z| = "
                     f"{self.max_abs_z:.2f} (threshold {self.z_max:g}): "
                     f"{'PASS' if self.passed else 'FAIL'}")
        if not self.passed:
            lines.append(f"  {self.why}")
        return "\n".join(lines)

    def plot(self, path: str | None = None):
        """K^l, J^{0,l} (log scale) and c^l vs l: theory lines, MC points with error bars per
        width, and the 1/N-extrapolated points.  Saves to ``path`` when given; returns the
        figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        qs = [q for q in QUANTITIES if any(r["quantity"] == q for r in self.rows)]
        fig, axes = plt.subplots(1, len(qs), figsize=(4.2 * len(qs), 3.4), squeeze=False)
        L = np.arange(self.depth + 1)
        for ax, q in zip(axes[0], qs, strict=True):
            th = {"K": self.theory.K, "J": self.theory.J, "c": self.theory.c}[q]
            ax.plot(L, th, "k-", lw=1.5, label="theory")
            rows = [r for r in self.rows if r["quantity"] == q]
            ls = np.array([r["layer"] for r in rows])
            for i, w in enumerate(self.widths):
                ax.errorbar(ls + 0.08 * (i - len(self.widths) / 2),
                            [r["mc"][i] for r in rows], [r["mc_se"][i] for r in rows],
                            fmt="o", ms=3, capsize=2, label=f"MC N={w}")
            if len(self.widths) > 1:
                ax.errorbar(ls + 0.15, [r["extrapolated"] for r in rows],
                            [r["extrapolated_se"] for r in rows], fmt="s", ms=3, capsize=2,
                            mfc="none", label="MC N→∞")
            if q == "J":
                ax.set_yscale("log")
            ax.set_xlabel("layer l")
            ax.set_ylabel({"K": "$K^l$", "J": "$\\mathcal{J}^{0,l}$", "c": "$c^l$"}[q])
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{self.arch!r}  {self.hp}  max|z|={self.max_abs_z:.2f}", fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def validate(arch: Op, widths: Sequence[int] = (64, 128), depth: int = 10, *,
             n_nets: int | Sequence[int] = 64, n_probes: int = 4, K0: float = 1.0,
             c0: float | None = 0.5, seed: int = 0, z_max: float = 4.0,
             quantities: Sequence[str] = QUANTITIES, device: object = None,
             dtype: object = torch.float64, probe: str = "gaussian",
             progress: bool | None = None, plot: str | None = None, **hp: float
             ) -> ValidationResult:
    r"""Simulate ``arch`` at each width and compare with :meth:`Theory.run` (see module doc).

    ``n_nets``: networks per width (a number, or one per width).  Returns a
    :class:`ValidationResult`; ``plot=path`` also saves its figure.
    """
    from ..derive import derive

    arch = as_op(arch)
    if isinstance(widths, (int, np.integer)):
        widths = (int(widths),)
    widths = tuple(widths)
    if not widths or len(set(widths)) != len(widths):
        raise SimulationError(f"widths must be distinct widths, e.g. (64, 128); got {widths}")
    if len(widths) < 2:
        raise SimulationError(
            f"validate needs at least two widths for the 1/N extrapolation, got {widths}; "
            f"pass e.g. widths=({widths[0]}, {2 * widths[0]}) (one width would compare the "
            "finite-width mean with the infinite-width theory, biased by O(depth/N))")
    bad_q = set(quantities) - set(QUANTITIES)
    if bad_q or not quantities:
        raise SimulationError(f"quantities must be among {QUANTITIES}, got {list(quantities)}")
    if "c" in quantities and c0 is None:
        raise SimulationError("c^l needs two inputs: pass c0 (a number in [-1, 1])")
    nn_list = [n_nets] * len(widths) if isinstance(n_nets, (int, np.integer)) else list(n_nets)
    if len(nn_list) != len(widths):
        raise SimulationError("n_nets must be a number or one number per width")
    if any(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 0 < n < MIN_NETS
           for n in nn_list):
        raise SimulationError(
            f"n_nets={n_nets!r}: validate needs at least {MIN_NETS} networks per width for a "
            "standard error worth a z-test (the spread across networks is the error)")
    sims = [
        simulate(arch, w, depth, n_nets=n, n_probes=n_probes, K0=K0, c0=c0, seed=seed + 17 * i,
                 device=device, dtype=dtype, probe=probe, progress=progress, **hp)
        for i, (w, n) in enumerate(zip(widths, nn_list, strict=True))
    ]
    theory = derive(arch).run(depth, K0=sims[0].K0, c0=sims[0].c0, **hp)
    rows = []
    for q in QUANTITIES:
        if q not in quantities:
            continue
        th = {"K": theory.K, "J": theory.J, "c": theory.c}[q]
        for layer in range(depth + 1):
            mc = [float(getattr(s, q)[layer]) for s in sims]
            se = [float(getattr(s, q + "_se")[layer]) for s in sims]
            rows.append(score(q, layer, float(th[layer]), widths, mc, se))
    res = ValidationResult(arch=arch, hp=dict(hp), widths=widths, depth=depth, rows=rows,
                           sims=sims, theory=theory, z_max=z_max)
    if plot is not None:
        res.plot(plot)
    return res


@dataclass(frozen=True)
class Power:
    """What a validation's simulations can detect: the smallest relative deviations δ of the
    hyperparameter ``name`` (value ``value``) at which the theory at value·(1 + δ), resp.
    value·(1 − δ), fails the same check (max |z| > z_max); NaN if none on the grid does."""

    name: str
    value: float
    delta_up: float
    delta_down: float
    z_up: float
    z_down: float

    @property
    def delta(self) -> float:
        """The deviation rejected on both sides: max(δ₊, δ₋) (NaN if either is)."""
        return float(np.fmax(self.delta_up, self.delta_down)
                     if math.isfinite(self.delta_up + self.delta_down) else math.nan)

    def __repr__(self) -> str:
        return (f"Power({self.name}={self.value:g}: rejects +{100 * self.delta_up:.1f}% "
                f"(|z|={self.z_up:.1f}), -{100 * self.delta_down:.1f}% (|z|={self.z_down:.1f}))")


def power(res: ValidationResult, name: str = "sigma_w",
          deltas: Sequence[float] | None = None) -> Power:
    r"""The smallest relative deviation of ``name`` that ``res``'s simulations reject.

    For each δ on the grid (default 0.5 %, 1 %, …, 50 %) the theory is rerun at
    ``name`` = value·(1 ± δ) from the same inputs, and every scored entry's z is recomputed
    against it, z_δ = (X_∞ − X_theory(δ))/SE(X_∞); δ is rejected when max |z_δ| > ``res.z_max``
    (a non-finite theory value counts as rejected).  No new simulation is run.
    """
    from ..derive import derive

    if name not in res.hp:
        raise SimulationError(f"power needs {name!r} among the hyperparameters passed to "
                              f"validate; it got {sorted(res.hp)}")
    value = float(res.hp[name])
    if not math.isfinite(value) or value == 0:
        raise SimulationError(f"power needs a finite, nonzero {name} (got {value!r}): the "
                              "deviations are relative")
    if not res.scored:
        raise SimulationError("power needs a validation with scored entries")
    d = np.arange(1, 101) * 0.005 if deltas is None else np.asarray(deltas, dtype=float)
    if d.ndim != 1 or not d.size or not np.all(np.isfinite(d)) or np.any(d <= 0) \
            or np.any(np.diff(d) <= 0):
        raise SimulationError("deltas must be an increasing list of positive fractions")
    theory = derive(res.arch)
    c0 = res.sims[0].c0 if any(r["quantity"] == "c" for r in res.scored) else None

    def max_z(values: np.ndarray) -> np.ndarray:
        run = theory.run(res.depth, K0=res.sims[0].K0, c0=c0, allow_nonfinite=True,
                         **{**res.hp, name: values})
        zmax = np.zeros(values.size)
        for r in res.scored:
            th = np.asarray(getattr(run, r["quantity"])[r["layer"]], dtype=float)
            with np.errstate(all="ignore"):
                z = np.abs((r["extrapolated"] - th) / r["extrapolated_se"])
            zmax = np.maximum(zmax, np.where(np.isfinite(z), z, np.inf))
        return zmax

    out = []
    for sign in (+1, -1):
        found = (math.nan, math.nan)
        for start in range(0, d.size, 10):  # in blocks, stopping at the first rejection
            block = d[start:start + 10]
            zmax = max_z(value * (1 + sign * block))
            hit = np.flatnonzero(zmax > res.z_max)
            if hit.size:
                found = (float(block[hit[0]]), float(zmax[hit[0]]))
                break
        out.append(found)
    (du, zu), (dd, zd) = out
    return Power(name, value, du, dd, zu, zd)
