r"""Everywhere-critical detection: is χ_J^l → 1 as l → ∞ for every hyperparameter in a range?

Two independent checks on a grid of samples of the given ranges:

* the limit χ_J* from :func:`~critsym.criticality.fixed_point.fixed_point` (χ_J(K*) or, without a
  finite fixed point, its large-K limit) is within ``tol`` of 1;
* along the recursion (:meth:`Theory.run`, ``depth`` layers) |χ_J^l − 1| does not grow between
  l = depth/2 and l = depth (it tends to 1, e.g. as A/(B l) for LN-pre + residual μ = 1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError
from .fixed_point import fixed_point


@dataclass(frozen=True)
class EverywhereReport:
    """Result of :func:`everywhere_critical`; arrays are over the samples."""

    everywhere: bool
    fraction: float
    samples: dict
    chi_star: np.ndarray
    chi_last: np.ndarray
    critical: np.ndarray

    def __str__(self) -> str:
        verdict = "critical everywhere" if self.everywhere else "NOT critical everywhere"
        rng = ", ".join(f"{k} in [{v.min():g}, {v.max():g}]" for k, v in self.samples.items())
        return (f"{verdict} for {rng}: {self.fraction:.1%} of {self.critical.size} samples have "
                f"chi_J -> 1 (max |chi_J* - 1| = {np.nanmax(np.abs(self.chi_star - 1)):.3g}, "
                f"max |chi_J^L - 1| = {np.nanmax(np.abs(self.chi_last - 1)):.3g})")


def everywhere_critical(theory, ranges: dict | None = None, *, n: int = 6, depth: int = 2000,
                        K0: float = 1.0, tol: float = 1e-6, **fixed) -> EverywhereReport:
    """Sample ``n`` values per hyperparameter range (a product grid; default σ_w ∈ [0.5, 3],
    σ_b ∈ [0, 1], μ ∈ [0, 1.5]) and check that χ_J^l → 1 for all of them."""
    defaults = {"sigma_w": (0.5, 3.0), "sigma_b": (0.0, 1.0), "mu": (0.0, 1.5)}
    names = theory.hyperparameter_names
    ranges = dict(ranges or {})
    for nm in names:
        if nm not in ranges and nm not in fixed:
            if nm not in defaults:
                raise HyperparameterError(f"give a range or a value for {nm!r}")
            ranges[nm] = defaults[nm]
    for nm, (lo, hi) in ranges.items():
        if nm not in names:
            raise HyperparameterError(f"unknown hyperparameter {nm!r}; this theory has {names}")
        if not lo <= hi:
            raise HyperparameterError(f"range of {nm} must be (lo, hi) with lo <= hi")
    keys = list(ranges)
    pts = np.array(list(itertools.product(*[np.linspace(*ranges[k], n) for k in keys])))
    samples = {k: pts[:, i] for i, k in enumerate(keys)}
    hp = {**fixed, **samples}
    fp = fixed_point(theory, K0=K0, **hp)
    chi_star = np.asarray(fp.chi_star, dtype=float)
    run = theory.run(depth, K0=K0, allow_nonfinite=True, **hp)
    chi = np.asarray(run.chi)
    half, last = np.abs(chi[depth // 2 - 1] - 1), np.abs(chi[-1] - 1)
    ok = (np.abs(chi_star - 1) <= tol) & np.isfinite(last) & (last <= half * (1 + 1e-12) + 1e-15)
    return EverywhereReport(bool(np.all(ok)), float(np.mean(ok)), samples, chi_star, chi[-1], ok)
