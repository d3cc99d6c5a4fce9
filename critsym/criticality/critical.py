r"""The critical manifold χ_J* = 1: solve for one hyperparameter with the others fixed.

``critical_point(theory, solve_for="sigma_w", sigma_b=0.1)`` finds x with χ_J*(x) = 1, where
χ_J* = χ_J(K*) at the fixed point reached from ``K0`` (:func:`fixed_point`).  The other
hyperparameters may be arrays: every element is solved at once (a whole critical line in one
call).  Method: a scan of ``scan`` points over the user ``bracket`` for the first sign change of
log χ_J*, then vectorised Illinois iterations on x to ``xtol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError, NoCriticalPointError
from .fixed_point import _illinois, fixed_point

FLAT_TOL = 1e-9
DEFAULT_BRACKETS = {"sigma_w": (1e-3, 10.0), "sigma_b": (0.0, 10.0), "mu": (0.0, 1.0)}


def _log_chi(theory, solve_for, x, K0, hp):
    fp = fixed_point(theory, K0=K0, **{**hp, solve_for: x})
    with np.errstate(all="ignore"):
        return np.log(np.asarray(fp.chi_star, dtype=float))


def critical_point(theory, solve_for: str = "sigma_w", *,
                   bracket: tuple[float, float] | None = None, K0: object = 1.0, scan: int = 64,
                   xtol: float = 1e-13, on_missing: str = "raise", **hp) -> np.ndarray:
    """The value of ``solve_for`` at which χ_J* = 1, given the other hyperparameters.

    ``bracket``: the search range (default: sigma_w (1e-3, 10), sigma_b (0, 10), mu (0, 1)).
    If no sign change of χ_J* − 1 exists in the range, raises :class:`NoCriticalPointError`
    (``on_missing="raise"``) or returns NaN there (``on_missing="nan"``).  The first crossing
    from the low end of the bracket is returned.
    """
    names = theory.hyperparameter_names
    if solve_for not in names:
        raise HyperparameterError(
            f"cannot solve for {solve_for!r}: this theory's hyperparameters are {list(names)}")
    if solve_for in hp:
        raise HyperparameterError(
            f"{solve_for!r} is the unknown: do not also pass a value for it")
    if on_missing not in ("raise", "nan"):
        raise HyperparameterError("on_missing must be 'raise' or 'nan'")
    if bracket is None:
        if solve_for not in DEFAULT_BRACKETS:
            raise HyperparameterError(
                f"give a search range for {solve_for!r}, e.g. bracket=(0.0, 2.0)")
        bracket = DEFAULT_BRACKETS[solve_for]
    lo, hi = (float(b) for b in bracket)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise HyperparameterError(f"bracket must be two finite numbers lo < hi, got {bracket}")
    # validate the others (with a placeholder for the unknown)
    vals = theory.values({**hp, solve_for: lo})
    shape = np.broadcast_shapes(np.shape(K0), *(v.shape for v, n in zip(vals, names, strict=True)
                                                if n != solve_for))
    n = int(np.prod(shape))
    flat = {k: np.broadcast_to(np.asarray(v, float), shape).reshape(n) for k, v in hp.items()}
    K0f = np.broadcast_to(np.asarray(K0, float), shape).reshape(n)

    xs = np.linspace(lo, hi, scan)
    grid = _log_chi(theory, solve_for, xs[:, None], K0f[None, :],
                    {k: v[None, :] for k, v in flat.items()})  # (scan, n)
    sg = np.sign(grid)
    zero_at = sg == 0
    change = (sg[:-1] * sg[1:] < 0) & np.isfinite(grid[:-1]) & np.isfinite(grid[1:])
    hit = change | zero_at[:-1]
    level = np.all(np.abs(grid) <= FLAT_TOL, axis=0)  # χ_J* = 1 on the whole range
    has = hit.any(axis=0) & ~level
    first = np.argmax(hit, axis=0)
    root = np.full(n, np.nan)
    idx = np.nonzero(has)[0]
    if idx.size:
        i0 = first[idx]
        exact = zero_at[i0, idx]
        root[idx[exact]] = xs[i0[exact]]
        r = idx[~exact]
        if r.size:
            a, b = xs[i0[~exact]], xs[i0[~exact] + 1]
            ga, gb = grid[i0[~exact], r], grid[i0[~exact] + 1, r]

            def g(x, sub):
                j = r[sub]
                return _log_chi(theory, solve_for, x, K0f[j], {k: v[j] for k, v in flat.items()})

            res, _ = _illinois(g, a, b, ga, gb, tol=xtol)
            root[r] = res
    if on_missing == "raise" and not np.all(has):
        bad = np.nonzero(~has)[0][:5]
        others = {k: v[bad].tolist() for k, v in flat.items()}
        span = np.nanmin(grid[:, bad]), np.nanmax(grid[:, bad])
        if np.all(level[bad]):
            raise NoCriticalPointError(
                f"chi_J* = 1 for every {solve_for} in [{lo:g}, {hi:g}] at {others}: the "
                "architecture is critical everywhere there, there is no isolated critical point "
                "(see critsym.everywhere_critical)")
        raise NoCriticalPointError(
            f"no critical point (chi_J* = 1) for {solve_for} in [{lo:g}, {hi:g}] at {others}: "
            f"chi_J* stays in [{np.exp(span[0]):.4g}, {np.exp(span[1]):.4g}]; widen the bracket, "
            "solve for another hyperparameter, or pass on_missing='nan'")
    root = root.reshape(shape)
    return root[()] if root.ndim == 0 else root


@dataclass(frozen=True)
class CriticalLine:
    """Samples of the critical line: ``solve_for`` = ``y`` as a function of ``along`` = ``x``."""

    along: str
    solve_for: str
    x: np.ndarray
    y: np.ndarray


def critical_line(theory, along: str = "sigma_b", values=None, solve_for: str = "sigma_w", *,
                  bracket: tuple[float, float] | None = None, K0: object = 1.0,
                  on_missing: str = "nan", **hp) -> CriticalLine:
    """Sample the critical line: for each value of ``along`` solve χ_J* = 1 for ``solve_for``
    (NaN where no critical point exists in ``bracket``, unless ``on_missing="raise"``)."""
    if values is None:
        values = np.linspace(0.0, 1.0, 21)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise HyperparameterError("values must be a 1-D sequence of numbers")
    y = critical_point(theory, solve_for, bracket=bracket, K0=K0, on_missing=on_missing,
                       **{**hp, along: x})
    return CriticalLine(along=along, solve_for=solve_for, x=x, y=np.asarray(y))
