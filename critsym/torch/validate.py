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
scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import line_fit
from .simulate import SimulationResult, simulate

QUANTITIES = ("K", "J", "c")


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


@dataclass(frozen=True)
class ValidationResult:
    """Rows of (quantity, layer, theory, per-width MC ± SE, extrapolated ± SE, z)."""

    arch: Op
    hp: dict
    widths: tuple[int, ...]
    depth: int
    rows: list[dict]
    sims: list[SimulationResult]
    theory: object
    z_max: float

    @property
    def scored(self) -> list[dict]:
        return [r for r in self.rows if r["z"] is not None]

    @property
    def max_abs_z(self) -> float:
        return max((abs(r["z"]) for r in self.scored), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_abs_z <= self.z_max

    def worst(self, n: int = 3) -> list[dict]:
        return sorted(self.scored, key=lambda r: -abs(r["z"]))[:n]

    def to_text(self) -> str:
        """The table as aligned plain text."""
        head = ["q", "l", "theory"] + [f"MC N={w}" for w in self.widths] + ["N→∞", "z"]
        lines = [" ".join(f"{h:>18}" if i > 1 else f"{h:>3}" for i, h in enumerate(head))]
        for r in self.rows:
            cells = [f"{r['quantity']:>3}", f"{r['layer']:>3}", f"{r['theory']:>18.6g}"]
            for m, s in zip(r["mc"], r["mc_se"], strict=True):
                cells.append(f"{m:>10.5g} ±{s:<7.2g}")
            cells.append(f"{r['extrapolated']:>10.5g} ±{r['extrapolated_se']:<7.2g}")
            cells.append(f"{'-' if r['z'] is None else format(r['z'], '+.2f'):>18}")
            lines.append(" ".join(cells))
        lines.append(f"max |z| = {self.max_abs_z:.2f} (threshold {self.z_max:g}): "
                     f"{'PASS' if self.passed else 'FAIL'}")
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
    bad_q = set(quantities) - set(QUANTITIES)
    if bad_q or not quantities:
        raise SimulationError(f"quantities must be among {QUANTITIES}, got {list(quantities)}")
    if "c" in quantities and c0 is None:
        raise SimulationError("c^l needs two inputs: pass c0 (a number in [-1, 1])")
    nn_list = [n_nets] * len(widths) if isinstance(n_nets, (int, np.integer)) else list(n_nets)
    if len(nn_list) != len(widths):
        raise SimulationError("n_nets must be a number or one number per width")
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
            exact_input = layer == 0 and q in ("K", "c")
            if exact_input or not all(s > 0 for s in se):
                ext, ext_se, slope, z = mc[-1], 0.0, 0.0, None
            else:
                ext, ext_se, slope = extrapolate(widths, mc, se)
                z = (ext - float(th[layer])) / ext_se
            rows.append(dict(quantity=q, layer=layer, theory=float(th[layer]), mc=mc, mc_se=se,
                             extrapolated=ext, extrapolated_se=ext_se, slope=slope, z=z))
    res = ValidationResult(arch=arch, hp=dict(hp), widths=widths, depth=depth, rows=rows,
                           sims=sims, theory=theory, z_max=z_max)
    if plot is not None:
        res.plot(plot)
    return res
