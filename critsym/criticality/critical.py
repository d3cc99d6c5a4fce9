r"""The critical manifold χ_J* = 1: solve for one hyperparameter with the others fixed.

``critical_point(theory, solve_for="sigma_w", sigma_b=0.1)`` finds x with χ_J*(x) = 1, where
χ_J* = χ_J at the attractor reached from ``K0`` (:func:`fixed_point`).  The other
hyperparameters may be arrays: every element is solved at once (a whole critical line in one
call).

Method: a scan of ``scan`` points over the ``bracket`` for sign changes of log χ_J*, vectorised
Illinois iterations on x to ``xtol`` inside the first one, then a check of continuity on both
sides: |log χ_J*| ≤ ``tol`` at x ± h (h = 1e-9·max(1, |x|)), or |log χ_J*| shrinking towards
0 from x ± 10⁴h to x ± h (the square-root approach where the stable fixed point runs off to
K → ∞, e.g. softplus at σ_w² = 2; the cube-root one next to a cusp).  Only a root that passes
is a critical point.  Where
log χ_J* changes sign by a jump the attractor reached from K0 changes discontinuously (several
fixed points: silu and gelu at small σ_b have a stable and an unstable one): this is a first-
order transition, located by bisection and returned as a :class:`FirstOrderTransition` (χ_J*
below and above the jump, and the saddle-node where the attractor left at the jump stops
existing), never as a root; the scan then continues to the next sign change.

A crossing where the attractor on one side is the trivial fixed point K* = 0 (status "zero":
a block without biases) is solved on χ_J(0), the χ_J of the trivial fixed point
(:func:`~critsym.criticality.trivial.trivial_chi`), which crosses 1 linearly, instead of on
χ_J*, which approaches 1 only quadratically from the nontrivial side; the continuity check is
the same (a subcritical transition, where the nontrivial fixed point appears at a finite K,
stays a jump).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import HyperparameterError, NoCriticalPointError
from .fixed_point import K_MIN, _illinois, fixed_point
from .trivial import trivial_chi

FLAT_TOL = 1e-9
DEFAULT_BRACKETS = {"sigma_w": (1e-3, 10.0), "sigma_b": (0.0, 10.0), "mu": (0.0, 1.0)}


@dataclass(frozen=True)
class FirstOrderTransition:
    """A discontinuous transition: along ``solve_for``, the attractor reached from ``K0`` jumps
    at ``at`` from (``K_below``, ``chi_below``, ``status_below``) to (``K_above``, ``chi_above``,
    ``status_above``); χ_J* = 1 nowhere in between.  The attractor of the low side continues
    past the jump (the two coexist: bistable) up to ``saddle_node``, where it merges with an
    unstable fixed point (``saddle_node_K``, χ_J there ``saddle_node_chi``; NaN when it does
    not end inside the bracket).  ``hyperparameters``: the other values."""

    solve_for: str
    at: float
    chi_below: float
    chi_above: float
    K_below: float
    K_above: float
    status_below: str
    status_above: str
    saddle_node: float
    saddle_node_K: float
    saddle_node_chi: float
    K0: float
    hyperparameters: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"first-order transition at {self.solve_for} = {self.at:.10g} (K0 = {self.K0:g}, "
                f"{self.hyperparameters}): chi_J* jumps from {self.chi_below:.6g} "
                f"({self.status_below}, K* = {self.K_below:.6g}) to {self.chi_above:.6g} "
                f"({self.status_above}, K* = {self.K_above:.6g}); the low-side attractor ends "
                f"at a saddle-node at {self.solve_for} = {self.saddle_node:.10g} "
                f"(K = {self.saddle_node_K:.6g}, chi_J = {self.saddle_node_chi:.6g})")


class FirstOrderTransitionError(NoCriticalPointError):
    """No continuous critical point: χ_J* crosses 1 only by a jump (``transitions``)."""

    def __init__(self, message: str, transitions: list[FirstOrderTransition]):
        super().__init__(message)
        self.transitions = transitions


def _fp(theory, solve_for, x, K0, hp):
    return fixed_point(theory, K0=K0, **{**hp, solve_for: x})


def _log_chi(theory, solve_for, x, K0, hp, with_status=False):
    fp = _fp(theory, solve_for, x, K0, hp)
    with np.errstate(all="ignore"):
        g = np.log(np.asarray(fp.chi_star, dtype=float))
    return (g, np.asarray(fp.status)) if with_status else g


def _log_trivial_chi(theory, solve_for, x, hp):
    with np.errstate(all="ignore"):
        return np.log(np.asarray(trivial_chi(theory, **{**hp, solve_for: x}), dtype=float))


def _jump(theory, solve_for, a, b, K0, hp, steps=60):
    """Bisection of the jump of log χ_J* in [a, b] (scalar); the two sides' fixed points."""
    ga = _log_chi(theory, solve_for, a, K0, hp)
    for _ in range(steps):
        c = 0.5 * (a + b)
        if c in (a, b) or b - a <= 1e-13 * max(1.0, abs(a)):
            break
        gc = _log_chi(theory, solve_for, c, K0, hp)
        if np.sign(gc) == np.sign(ga):
            a, ga = c, gc
        else:
            b = c
    # the attractors a little away from the jump (at the jump K0 sits on the unstable
    # fixed point that separates the two basins)
    d = 1e-7 * max(1.0, abs(a))
    return a, b, _fp(theory, solve_for, a - d, K0, hp), _fp(theory, solve_for, b + d, K0, hp)


def _saddle_node(theory, solve_for, a, hi, below, hp, steps=60):
    """Where the attractor ``below`` (reached at x = a) stops existing, searching x in (a, hi]:
    bisection on "the orbit from a start inside its basin reaches an attractor of the same
    kind", to 1e-11 relative.  Returns (x, K, χ_J) at the end (NaN if it survives to
    ``hi``)."""
    st = str(below.status)
    if st == "finite":
        start = float(below.K_star)
    elif st == "zero":
        start = 10 * K_MIN
    elif st == "unbounded":
        return np.nan, np.nan, np.nan
    else:
        return np.nan, np.nan, np.nan

    def alive(x):
        fp = _fp(theory, solve_for, x, start, hp)
        return str(fp.status) == st, fp

    ok, fp_hi = alive(hi)
    if ok:
        return np.nan, np.nan, np.nan
    lo, fp_lo = a, below
    for _ in range(steps):
        c = 0.5 * (lo + hi)
        if c in (lo, hi) or hi - lo <= 1e-11 * max(1.0, abs(lo)):
            break
        ok, fpc = alive(c)
        if ok:
            lo, fp_lo = c, fpc
        else:
            hi = c
    return lo, float(fp_lo.K_star), float(fp_lo.chi_star)


def _transition(theory, solve_for, a, b, end, K0, hp):
    """The jump of log χ_J* in [a, b] as a :class:`FirstOrderTransition` (the saddle-node is
    searched up to ``end``)."""
    lo, hi, fa, fb = _jump(theory, solve_for, a, b, K0, hp)
    sn, snK, snchi = _saddle_node(theory, solve_for, lo, end, fa, hp)
    return FirstOrderTransition(
        solve_for=solve_for, at=0.5 * (lo + hi), chi_below=float(fa.chi_star),
        chi_above=float(fb.chi_star), K_below=float(fa.K_star), K_above=float(fb.K_star),
        status_below=str(fa.status), status_above=str(fb.status), saddle_node=sn,
        saddle_node_K=snK, saddle_node_chi=snchi, K0=float(K0),
        hyperparameters={k: float(v) for k, v in hp.items()})


def _verified(theory, solve_for, r, K0f, flat, idx, tol):
    """Continuity of log χ_J* at the roots ``r`` of the entries ``idx``: on each side,
    v(h) = |log χ_J*(r ± h)| at h = 10^{−5, −7, −9}·max(1, |r|) must reach ``tol`` or fall by
    a factor 10 or more from the largest h to the smallest (any power law |x − r|^γ with
    γ ≥ 1/4: the square-root approach where the fixed point runs off to K → ∞, the cube-root
    one next to the cusp of the gelu critical line).  A jump keeps its size."""
    s = np.maximum(1.0, np.abs(r))
    sub = {k: v[idx] for k, v in flat.items()}
    ok = np.ones(r.shape, bool)
    for sign in (-1.0, 1.0):
        v = [np.abs(_log_chi(theory, solve_for, r + sign * h * s, K0f[idx], sub))
             for h in (1e-5, 1e-7, 1e-9)]
        ok &= (v[-1] <= tol) | ((v[-1] <= 0.1 * v[0]) & (v[-1] <= v[-2]))
    return ok


def _solve(theory, solve_for, lo, hi, scan, K0f, flat, xtol, tol, end=None):
    """Scan and refine for every entry: (roots, transitions per entry, grid, level); the
    saddle-node of a jump is searched up to ``end`` (default ``hi``)."""
    end = hi if end is None else end
    n = K0f.size
    xs = np.linspace(lo, hi, scan)
    grid, status = _log_chi(theory, solve_for, xs[:, None], K0f[None, :],
                            {k: v[None, :] for k, v in flat.items()}, with_status=True)
    status = np.broadcast_to(status, grid.shape)  # (scan, n)
    sg = np.where(np.abs(grid) <= FLAT_TOL, 0, np.sign(grid))
    sg = np.where(np.isnan(grid), 2, sg)
    level = np.all(sg == 0, axis=0)
    # candidate intervals: strict sign changes between finite neighbours, with rounding-level
    # values (sg == 0) skipped over
    cands: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for p in range(n):
        if level[p]:
            continue
        if sg[0, p] == 0 and sg[1, p] in (-1, 1):  # χ_J* = 1 at the low end only
            cands[p].append((0, 0))
        prev = None
        for i in range(scan):
            s = sg[i, p]
            if s == 2:
                prev = None
                continue
            if s == 0:
                continue
            if prev is not None and s != sg[prev, p]:
                cands[p].append((prev, i))
            prev = i
        if sg[-1, p] == 0 and sg[-2, p] in (-1, 1):  # χ_J* = 1 at the high end only
            cands[p].append((scan - 1, scan - 1))
    root = np.full(n, np.nan)
    jumps: list[list[FirstOrderTransition]] = [[] for _ in range(n)]
    pos = np.zeros(n, int)
    while True:
        act = np.array([p for p in range(n) if np.isnan(root[p]) and pos[p] < len(cands[p])],
                       dtype=int)
        if act.size == 0:
            break
        ia = np.array([cands[p][pos[p]][0] for p in act])
        ib = np.array([cands[p][pos[p]][1] for p in act])
        a, b = xs[ia], xs[ib]
        ga, gb = grid[ia, act], grid[ib, act]
        # a rounding-level value between a and b is itself the root
        exact = np.array([np.any(sg[i0 + 1:i1, p] == 0) for i0, i1, p in zip(ia, ib, act,
                                                                          strict=True)], bool)

        def g(x, sub, act=act):
            j = act[sub]
            return _log_chi(theory, solve_for, x, K0f[j], {k: v[j] for k, v in flat.items()})

        r, _ = _illinois(g, a, b, ga, gb, tol=xtol)
        # a crossing at the end of the trivial attractor K* = 0 (status "zero" on one side):
        # the root of log χ_J(0), which crosses 0 linearly (trivial.py)
        za = status[ia, act] == "zero"
        zb = status[ib, act] == "zero"
        one = np.nonzero(za != zb)[0]
        if one.size:
            sub = {k: v[act[one]] for k, v in flat.items()}
            ta = _log_trivial_chi(theory, solve_for, a[one], sub)
            tb = _log_trivial_chi(theory, solve_for, b[one], sub)
            cross = np.isfinite(ta) & np.isfinite(tb) & (ta * tb < 0)
            one, ta, tb = one[cross], ta[cross], tb[cross]
            if one.size:
                def gt(x, k, one=one):
                    j = act[one[k]]
                    return _log_trivial_chi(theory, solve_for, x,
                                            {kk: v[j] for kk, v in flat.items()})

                r[one] = _illinois(gt, a[one], b[one], ta, tb, tol=xtol)[0]
        for k in np.nonzero(exact)[0]:
            i0, i1, p = ia[k], ib[k], act[k]
            z = i0 + 1 + int(np.argmax(sg[i0 + 1:i1, p] == 0))
            r[k] = xs[z]
        ok = _verified(theory, solve_for, r, K0f, flat, act, tol)
        for k, p in enumerate(act):
            if ok[k]:
                root[p] = r[k]
            elif a[k] < b[k]:
                sub = {kk: float(v[p]) for kk, v in flat.items()}
                jumps[p].append(_transition(theory, solve_for, a[k], b[k], end, float(K0f[p]),
                                            sub))
            pos[p] += 1
    return root, jumps, grid, level


def _setup(theory, solve_for, bracket, K0, on_missing, hp):
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
    vals = theory.values({**hp, solve_for: lo})  # validate the others
    shape = np.broadcast_shapes(np.shape(K0), *(v.shape for v, nm in zip(vals, names,
                                                                          strict=True)
                                                if nm != solve_for))
    n = int(np.prod(shape))
    flat = {k: np.broadcast_to(np.asarray(v, float), shape).reshape(n) for k, v in hp.items()}
    K0f = np.broadcast_to(np.asarray(K0, float), shape).reshape(n)
    return lo, hi, shape, flat, K0f


def critical_point(theory, solve_for: str = "sigma_w", *,
                   bracket: tuple[float, float] | None = None, K0: object = 1.0, scan: int = 64,
                   xtol: float = 1e-13, tol: float = 1e-6, on_missing: str = "raise",
                   **hp) -> np.ndarray:
    """The value of ``solve_for`` at which χ_J* = 1 continuously, given the other
    hyperparameters (the first such point from the low end of ``bracket``).

    ``bracket``: the search range (default: sigma_w (1e-3, 10), sigma_b (0, 10), mu (0, 1)).
    Each root is verified: |log χ_J*| ≤ ``tol`` just below and just above it.  Where χ_J*
    crosses 1 only by a jump (a first-order transition), raises
    :class:`FirstOrderTransitionError` (its ``transitions`` hold the
    :class:`FirstOrderTransition` results; ``on_missing="nan"`` gives NaN there).  Where no
    sign change of χ_J* − 1 exists in the range, raises :class:`NoCriticalPointError`
    (``on_missing="nan"``: NaN).
    """
    lo, hi, shape, flat, K0f = _setup(theory, solve_for, bracket, K0, on_missing, hp)
    root, jumps, grid, level = _solve(theory, solve_for, lo, hi, scan, K0f, flat, xtol, tol)
    has = np.isfinite(root)
    if on_missing == "raise" and not np.all(has):
        bad = np.nonzero(~has)[0][:5]
        others = {k: v[bad].tolist() for k, v in flat.items()}
        found = [t for p in bad for t in jumps[p]]
        if found:
            raise FirstOrderTransitionError(
                f"no continuous critical point for {solve_for} in [{lo:g}, {hi:g}] at "
                f"{others}: chi_J* crosses 1 only by a jump; {found[0]}. The network's fate "
                "depends on K0 there; see critsym.transitions / fixed_point(...).roots_K",
                found)
        with np.errstate(all="ignore"):
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


def transitions(theory, solve_for: str = "sigma_w", *,
                bracket: tuple[float, float] | None = None, K0: float = 1.0, scan: int = 64,
                xtol: float = 1e-13, tol: float = 1e-6, **hp) -> list:
    """Every crossing of χ_J* = 1 along ``solve_for`` in ``bracket`` at scalar values of the
    other hyperparameters, in order: a float for a continuous critical point, a
    :class:`FirstOrderTransition` for a jump."""
    lo, hi, shape, flat, K0f = _setup(theory, solve_for, bracket, K0, "nan", hp)
    if K0f.size != 1:
        raise HyperparameterError("transitions() takes scalar hyperparameters; use "
                                  "critical_line for a line")
    out: list = []
    xs = np.linspace(lo, hi, scan)
    grid = _log_chi(theory, solve_for, xs, K0f[0], {k: v[0] for k, v in flat.items()})
    # each sign change on its own sub-bracket
    sg = np.where(np.abs(grid) <= FLAT_TOL, 0, np.sign(grid))
    idx = [i for i in range(scan) if sg[i] in (-1, 1) and np.isfinite(grid[i])]
    for i0, i1 in zip(idx[:-1], idx[1:], strict=False):
        if sg[i0] == sg[i1]:
            continue
        root, jumps, _, _ = _solve(theory, solve_for, xs[i0], xs[i1], 2, K0f, flat, xtol, tol,
                                   end=hi)
        if np.isfinite(root[0]):
            out.append(float(root[0]))
        else:
            out.extend(jumps[0])
    return out


@dataclass(frozen=True)
class CriticalLine:
    """Samples of the critical line: ``solve_for`` = ``y`` as a function of ``along`` = ``x``
    (NaN where no continuous critical point exists), and the first-order transitions found
    where it does not: ``first_order`` (the jump of χ_J* for this K0) and ``saddle_node``
    (the end of the low-side attractor), NaN elsewhere."""

    along: str
    solve_for: str
    x: np.ndarray
    y: np.ndarray
    first_order: np.ndarray | None = None
    saddle_node: np.ndarray | None = None


def critical_line(theory, along: str = "sigma_b", values=None, solve_for: str = "sigma_w", *,
                  bracket: tuple[float, float] | None = None, K0: object = 1.0,
                  on_missing: str = "nan", tol: float = 1e-6, **hp) -> CriticalLine:
    """Sample the critical line: for each value of ``along`` solve χ_J* = 1 continuously for
    ``solve_for`` (NaN where no continuous critical point exists in ``bracket``, unless
    ``on_missing="raise"``), and record the first-order transitions found instead."""
    if values is None:
        values = np.linspace(0.0, 1.0, 21)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise HyperparameterError("values must be a 1-D sequence of numbers")
    hp = {**hp, along: x}
    lo, hi, shape, flat, K0f = _setup(theory, solve_for, bracket, K0, on_missing, hp)
    root, jumps, _, _ = _solve(theory, solve_for, lo, hi, 64, K0f, flat, 1e-13, tol)
    if on_missing == "raise" and not np.all(np.isfinite(root)):
        critical_point(theory, solve_for, bracket=bracket, K0=K0, tol=tol, **hp)
    fo = np.array([j[0].at if j else np.nan for j in jumps])
    sn = np.array([j[0].saddle_node if j else np.nan for j in jumps])
    return CriticalLine(along=along, solve_for=solve_for, x=x, y=root.reshape(shape),
                        first_order=fo.reshape(shape), saddle_node=sn.reshape(shape))
