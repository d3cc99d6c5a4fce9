r"""Numeric evaluation of expressions that contain Gaussian expectation nodes.

An expression is compiled once into a vectorised numpy callable: every outermost
:class:`GaussE`/:class:`GaussE2` node becomes a placeholder argument, computed by quadrature, and
the rest is lambdified.  Integrands are compiled the same way, so nested expectations (several
independent Gaussian variables) work through broadcasting: each level of quadrature appends one
trailing axis of nodes.

Quadrature rule: the panel rule of :mod:`critsym.gaussian.rules` (composite Gauss–Legendre on
[-12, 12], panels graded towards a centre and split at every kink point of the integrand: zeros
of the arguments of Heaviside, DiracDelta, relu, elu, |.|, sign, max/min that are linear in the
variable).  The neglected tail mass is 2Φ(-12) ≈ 3.6e-33.  For integrands that are smooth on each
panel (polynomially bounded, analytic within ~0.1 of the real axis after scaling) the rule is
accurate to ~1e-13 in 1-D (338 nodes) and ~1e-11 in 2-D (the nested rule, 224 × 224 nodes, evaluated
in chunks of bounded memory); at equal variances V > 1 a bivariate integrand of (u, v) alone
also gets panels at the scale 1/sqrt(V) of its features.  Relative accuracy degrades for
integrands growing like e^{a x} with a ≳ 5.  :func:`evaluate_mp` integrates with mpmath to any
requested precision instead.

Tabulation (speed), see :mod:`critsym.gaussian.tables`.  A 1-D node whose integrand depends only
on the bound variable, e.g. E_{z~N(0,V)}[tanh(z)^2], is a function of V alone; on first use it is
tabulated in u = log V (:class:`VarianceTable`) and used only if verified against the quadrature
to ``TABLE_RTOL`` (1e-10) relative, else the node keeps quadrature.  Values of V above the range
fall back to quadrature; below it (and at V = 0) the small-V series
Σ_{k≤2} f^{(2k)}(0) V^k/(2^k k!) is used for analytic integrands (relative error ≤ ~V_MIN).
A 2-D node whose integrand is a sum of products f_j(u) g_j(v) is, at equal variances, a function
of (V, r) alone: :class:`CorrelationTable` tabulates it piece by piece in log V (built on first
use, each piece verified against the nested rule to ``TABLE2_RTOL`` (1e-11) of the
Cauchy–Schwarz scale Σ_j (E f_j² E g_j²)^{1/2}); other points keep quadrature.
:func:`quadrature_only` (a context manager) or ``set_tabulation(False)`` selects quadrature
everywhere.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import sympy as sp
from sympy.printing.numpy import SciPyPrinter

from ..activations import MPMATH_FUNCTIONS, NUMPY_FUNCTIONS
from ..errors import DerivationError, NumericalError
from .expectation import GaussE, GaussE2
from .rules import EDGES as _EDGES
from .rules import KINKED, L_CUT, kink_points, mean2_grid, rule
from .tables import (
    TABLE2_RTOL,
    TABLE_POINTS,
    TABLE_RTOL,
    V_MAX,
    V_MIN,
    CorrelationTable,
    VarianceTable,
    build_table,
)

__all__ = [
    "L_CUT", "TABLE2_RTOL", "TABLE_POINTS", "TABLE_RTOL", "V_MAX", "V_MIN", "Compiled",
    "CorrelationTable", "VarianceTable", "build_table", "clear_caches", "compile_expr",
    "evaluate_mp", "nested_tables", "quadrature_only", "set_tabulation", "tabulation_enabled",
]

NODES_1D = 12
NODES_2D = 8
_MODULES = [NUMPY_FUNCTIONS, {"functools": functools}, "scipy", "numpy"]  # Max/Min: reduce


def _safe_unit(x):
    """acos/asin arguments: rounding can push a correlation of exactly ±1 just outside (only
    |x| <= 1 + 1e-9 is clipped; the common in-range case costs one pass)."""
    x = np.asarray(x, dtype=float)
    if x.size and (x.max() > 1 or x.min() < -1):
        return np.where(np.abs(x) <= 1 + 1e-9, np.clip(x, -1.0, 1.0), x)
    return x


def _safe_sqrt(x):
    """sqrt with rounding-level negatives (e.g. K11 K22 - K12² at c = 1) set to 0."""
    x = np.asarray(x, dtype=float)
    if x.size and x.min() < 0:
        x = np.where((x < 0) & (x > -1e-9), 0.0, x)
    return np.sqrt(x)


NUMPY_FUNCTIONS.update(
    {
        "_safe_acos": lambda x: np.arccos(_safe_unit(x)),
        "_safe_asin": lambda x: np.arcsin(_safe_unit(x)),
        "_safe_sqrt": _safe_sqrt,
    }
)



def _rounded_nonnegative(V: np.ndarray) -> np.ndarray:
    """Variances with rounding excursions below 0 (|V| <= 1e-12 of the largest, e.g. a
    difference K − O_C of collapsed tokens) set to 0; real negatives are kept (and refused)."""
    if V.size == 0:
        return V
    tol = 1e-12 * max(1.0, float(np.nanmax(np.abs(V))))
    return np.where((V < 0) & (V >= -tol), 0.0, V)

class _Printer(SciPyPrinter):
    """SciPy printer that guards acos/asin/sqrt against rounding at the domain edges."""

    def _print_acos(self, e):
        return "_safe_acos(%s)" % self._print(e.args[0])

    def _print_asin(self, e):
        return "_safe_asin(%s)" % self._print(e.args[0])

    def _print_Pow(self, e, rational=False):
        if e.exp == sp.S.Half:
            return "_safe_sqrt(%s)" % self._print(e.base)
        if e.exp == -sp.S.Half:
            return "1/_safe_sqrt(%s)" % self._print(e.base)
        return super()._print_Pow(e, rational=rational)
_KINKED = KINKED
_TABULATE = [True]


def set_tabulation(enabled: bool) -> None:
    """Globally enable (default) or disable the variance and correlation tables."""
    _TABULATE[0] = bool(enabled)


def tabulation_enabled() -> bool:
    return _TABULATE[0]


@contextlib.contextmanager
def quadrature_only() -> Iterator[None]:
    """Within the block every expectation is computed by quadrature (no tables)."""
    old = _TABULATE[0]
    _TABULATE[0] = False
    try:
        yield
    finally:
        _TABULATE[0] = old


def _small_V_series(lam: sp.Lambda) -> tuple[float, float, float] | None:
    """(c_0, c_1, c_2) of E_{z~N(0,V)}[f(z)] = Σ_k f^{(2k)}(0) V^k / (2^k k!) for analytic f,
    used below V_MIN (relative error O(V) or better); None when not available."""
    (z,) = lam.variables
    f = lam.expr
    if f.atoms(*_KINKED) or _outermost_nodes(f):
        return None
    try:
        cs = [float(sp.diff(f, z, 2 * k).subs(z, 0)) / (2**k * float(sp.factorial(k)))
              for k in range(3)]
    except (TypeError, ValueError):
        return None
    if not all(np.isfinite(cs)) or not any(cs):
        return None
    return cs[0], cs[1], cs[2]


#: tables shared by every compiled node with the same integrand (keyed by its Lambda: the
#: integrand's exact content, numeric constants included, so identical blocks share them)
_TABLES: dict[sp.Basic, VarianceTable | None] = {}
_TABLES2: dict[sp.Basic, CorrelationTable | None] = {}
#: nested integrands: points evaluated by direct quadrature so far (per integrand), and the
#: values of the last few single-point evaluations, keyed by (integrand, V)
_DIRECT_POINTS: dict[sp.Basic, int] = {}
_DIRECT_VALUES: dict[tuple[sp.Basic, float], float] = {}
_DIRECT_VALUES_MAX = 4096
#: float64 nodes per array when a nested integrand is evaluated at many variances at once
_NESTED_CHUNK = 1 << 22
#: nested-integrand table policy: "amortised" (default), "always" (build on first use, the
#: former behaviour, for checks) or "never"
_NESTED_POLICY = ["amortised"]


@contextlib.contextmanager
def nested_tables(policy: str) -> Iterator[None]:
    """Within the block, variance tables of nested integrands are built according to
    ``policy``: ``"amortised"`` (default: only once the points evaluated by direct quadrature
    add up to the table's own cost, :data:`~critsym.gaussian.tables.TABLE_POINTS`),
    ``"always"`` (on first use) or ``"never"`` (direct quadrature only)."""
    if policy not in ("amortised", "always", "never"):
        raise ValueError(f"policy must be 'amortised', 'always' or 'never', got {policy!r}")
    old = _NESTED_POLICY[0]
    _NESTED_POLICY[0] = policy
    try:
        yield
    finally:
        _NESTED_POLICY[0] = old


def clear_caches() -> None:
    """Forget every table and cached value (the next evaluations rebuild what they need)."""
    for d in (_TABLES, _TABLES2, _DIRECT_POINTS, _DIRECT_VALUES):
        d.clear()


def _nodes(kinks: Sequence[np.ndarray], n: int, shape: tuple[int, ...]):
    """Standard-normal quadrature nodes and weights, shape ``shape + (N,)`` (see
    :func:`critsym.gaussian.rules.rule`)."""
    return rule(kinks, n, shape)


def _kink_points(expr: sp.Expr, x: sp.Symbol) -> list[sp.Expr]:
    return kink_points(expr, x)


def _outermost_nodes(expr: sp.Expr) -> list[sp.Basic]:
    found: list[sp.Basic] = []

    def walk(e):
        if isinstance(e, (GaussE, GaussE2)):
            if e not in found:
                found.append(e)
            return
        for a in e.args:
            walk(a)

    walk(expr)
    return found


def _nesting_depth(expr: sp.Expr) -> int:
    """Levels of Gaussian expectations inside ``expr`` (0 when it has none)."""
    return max((1 + _nesting_depth(n.args[0].expr) for n in _outermost_nodes(expr)), default=0)


def _pull_constants(expr: sp.Expr) -> sp.Expr:
    """E[Σ_i c_i h_i(z)] → Σ_i c_i E[h_i(z)] for factors c_i free of z, in 1-D nodes, so that
    the remaining integrands depend on z alone more often (and can be tabulated)."""
    nodes = [n for n in _outermost_nodes(expr) if isinstance(n, GaussE)]
    if not nodes:
        return expr
    repl = {}
    for n in nodes:
        lam, V = n.args
        (z,) = lam.variables
        f = lam.expr
        if f.free_symbols <= {z}:
            continue
        parts: dict[sp.Expr, sp.Expr] = {}
        for t in sp.Add.make_args(sp.expand(f)):
            c, h = t.as_independent(z, as_Add=False)
            parts[h] = parts.get(h, sp.S.Zero) + c
        if all(h.free_symbols <= {z} for h in parts):
            repl[n] = sp.Add(*[c * GaussE(sp.Lambda(z, h), V) for h, c in parts.items()])
    return expr.xreplace(repl) if repl else expr


class Compiled:
    """A vectorised numpy evaluation of ``expr`` as a function of ``args`` (in order)."""

    def __init__(self, expr: sp.Expr, args: Sequence[sp.Symbol]):
        self.expr = _pull_constants(sp.sympify(expr))
        self.args = tuple(args)
        nodes = _outermost_nodes(self.expr)
        ph = [sp.Dummy(f"E{i}") for i in range(len(nodes))]
        outer = self.expr.xreplace(dict(zip(nodes, ph, strict=True))) if nodes else self.expr
        missing = outer.free_symbols - set(self.args) - set(ph)
        if missing:
            raise NumericalError(
                f"cannot evaluate {self.expr}: symbols {sorted(map(str, missing))} have no values"
            )
        #: the expression is one of the arguments: no evaluation needed
        self._arg_index = self.args.index(outer) if outer in self.args else None
        self._outer = sp.lambdify(list(self.args) + ph, outer, modules=_MODULES,
                                  printer=_Printer, cse=True)
        self._nodes: list[Callable] = [
            _Node1(n, self.args) if isinstance(n, GaussE) else _Node2(n, self.args) for n in nodes
        ]

    def __call__(self, *vals) -> np.ndarray:
        vals = [v if type(v) is np.ndarray and v.dtype == np.float64
                else np.asarray(v, dtype=float) for v in vals]
        if self._arg_index is not None:
            out = vals[self._arg_index]
        else:
            pvals = [node(*vals) for node in self._nodes]
            with np.errstate(all="ignore"):
                out = self._outer(*vals, *pvals)
        if np.ndim(out) == 0 and all(v.ndim == 0 for v in vals):
            return np.asarray(out, dtype=float)
        if np.ndim(out) == 0 or (len(vals) > 1 and any(v.shape != out.shape for v in vals)):
            shape = np.broadcast_shapes(np.shape(out), *(v.shape for v in vals))
            return np.broadcast_to(np.asarray(out, dtype=float), shape)
        return out


class _Node1:
    """E_{z~N(0,V)}[f(z)] by composite Gauss–Legendre on the standardised variable."""

    def __init__(self, node: GaussE, args: tuple[sp.Symbol, ...]):
        lam, V = node.args
        (z,) = lam.variables
        self.x = sp.Dummy("x", real=True)
        self.s = sp.Dummy("s", nonnegative=True)
        g = lam.expr.subs(z, self.s * self.x)
        self.V = Compiled(V, args)
        self.g = Compiled(g, args + (self.s, self.x))
        self.kinks = [Compiled(k, args + (self.s,)) for k in _kink_points(g, self.x)]
        # the integrand depends on the variance only: tabulate m(V) (see :meth:`_table_for`)
        self.tabulable = g.free_symbols <= {self.s, self.x}
        #: levels of expectations inside the integrand (0: a plain integrand)
        self.depth = _nesting_depth(lam.expr)
        self._key = lam
        self._nargs = len(args)
        self._small = _small_V_series(lam) if self.tabulable else None

    def _quad_of_V(self, V: np.ndarray) -> np.ndarray:
        """Quadrature as a function of V alone (tabulable integrands only), on the union of the
        standard mesh in x and the same mesh in z = sqrt(V) x (so that features of the
        integrand at |z| ~ 1 stay resolved when V is very large or very small).  A nested
        integrand is evaluated a few variances at a time (bounded memory)."""
        V = np.asarray(V, dtype=float)
        if self.depth and V.size > 1:
            per_point = (2 * len(_EDGES) * NODES_1D) ** (self.depth + 1)
            step = max(1, _NESTED_CHUNK // per_point)
            if V.size > step:
                flat = V.ravel()
                out = np.concatenate([self._quad_of_V(flat[i:i + step])
                                      for i in range(0, flat.size, step)])
                return out.reshape(V.shape)
        zero = [np.zeros(())] * self._nargs
        s = np.sqrt(V)
        with np.errstate(divide="ignore"):
            scaled = [np.where(s > 0, e / np.where(s > 0, s, 1.0), L_CUT) for e in _EDGES]
        ks = [k(*zero, s) for k in self.kinks] + scaled
        X, W = _nodes(ks, NODES_1D, s.shape)
        with np.errstate(all="ignore"):
            f = self.g(*zero, s[..., None], X)
        return np.sum(np.broadcast_to(f, W.shape) * W, axis=-1)

    def _below_or_above(self, V: np.ndarray) -> np.ndarray:
        """Outside the table: the small-V series below V_MIN (if available), else quadrature."""
        if self._small is None:
            return self._quad_of_V(V)
        small = V < V_MIN
        out = np.empty(V.shape)
        c = self._small
        out[small] = c[0] + V[small] * (c[1] + V[small] * c[2])
        if np.any(~small):
            out[~small] = self._quad_of_V(V[~small])
        return out

    @property
    def table(self) -> VarianceTable | None:
        """The variance table of this integrand (built now if it was not yet), or None where
        it is not tabulable or no table met :data:`TABLE_RTOL`."""
        if not self.tabulable:
            return None
        if self._key not in _TABLES:
            _TABLES[self._key] = build_table(self._quad_of_V)
        return _TABLES[self._key]

    def _table_for(self, n: int) -> VarianceTable | None:
        """The table to evaluate ``n`` variances with, or None for direct quadrature.

        A plain integrand's table costs tens of milliseconds: it is built on first use.  A
        nested integrand's costs :data:`~critsym.gaussian.tables.TABLE_POINTS` nested
        quadratures (tens of seconds), so it is built only once the points evaluated directly
        add up to that many (a table then pays for itself: a grid, a long iteration); until
        then each value is the direct quadrature, itself the table's reference."""
        if self._key in _TABLES or not self.depth:
            return self.table
        policy = _NESTED_POLICY[0]
        done = _DIRECT_POINTS.get(self._key, 0)
        if policy == "always" or (policy == "amortised" and done + n >= TABLE_POINTS):
            return self.table
        _DIRECT_POINTS[self._key] = done + n
        return None

    def _direct(self, V: np.ndarray) -> np.ndarray:
        """Direct quadrature of a tabulable integrand; single values of a nested one are kept
        (keyed by the integrand and V), so a theory run again at the same point is free."""
        if not self.depth or V.size != 1:
            return self._quad_of_V(V)
        key = (self._key, float(V.reshape(())))
        if key not in _DIRECT_VALUES:
            if len(_DIRECT_VALUES) >= _DIRECT_VALUES_MAX:
                _DIRECT_VALUES.clear()
            _DIRECT_VALUES[key] = float(np.asarray(self._quad_of_V(V)).reshape(()))
        return np.full(V.shape, _DIRECT_VALUES[key])

    def __call__(self, *vals):
        V = _rounded_nonnegative(np.asarray(self.V(*vals), dtype=float))
        if V.size and V.min() < 0:
            raise NumericalError(f"negative variance {V.min():.3g} in a Gaussian expectation")
        if self.tabulable:
            table = self._table_for(V.size) if _TABULATE[0] else None
            if table is not None:
                return table(V, self._below_or_above)
            return self._direct(V)
        return self._quad(V, vals)

    def _quad(self, V, vals):
        """The rule at every point of the broadcast (V, vals); a nested integrand a few points
        at a time (bounded memory)."""
        shape = np.broadcast_shapes(np.shape(V), *(np.shape(v) for v in vals))
        size = int(np.prod(shape))
        if self.depth and size > 1:
            per_point = (len(_EDGES) * NODES_1D) ** (self.depth + 1)
            step = max(1, _NESTED_CHUNK // per_point)
            if size > step:
                flat = [np.broadcast_to(np.asarray(a, dtype=float), shape).ravel()
                        for a in (V, *vals)]
                out = np.concatenate([self._quad(flat[0][i:i + step],
                                                 [f[i:i + step] for f in flat[1:]])
                                      for i in range(0, size, step)])
                return out.reshape(shape)
        s = np.sqrt(V)
        ks = [k(*vals, s) for k in self.kinks]
        X, W = _nodes(ks, NODES_1D, shape)
        ex = [np.asarray(v)[..., None] for v in vals]
        with np.errstate(all="ignore"):
            f = self.g(*ex, s[..., None], X)
        return np.sum(np.broadcast_to(f, W.shape) * W, axis=-1)


def _separate(expr: sp.Expr, u: sp.Symbol, v: sp.Symbol) -> list[tuple[sp.Expr, sp.Expr]] | None:
    """h(u, v) = Σ_j f_j(u) g_j(v) as [(f_j, g_j)], or None when h is not of this form."""
    pairs: list[tuple[sp.Expr, sp.Expr]] = []
    for term in sp.Add.make_args(expr):
        g, f = term.as_independent(u, as_Add=False)
        if f.has(v):
            if term == sp.expand(term):
                return None
            more = _separate(sp.expand(term), u, v)
            if more is None:
                return None
            pairs.extend(more)
        else:
            pairs.append((f, g))
    return pairs


def _lambdify1(e: sp.Expr, var: sp.Symbol) -> Callable[[np.ndarray], np.ndarray]:
    return sp.lambdify(var, e, modules=_MODULES, printer=_Printer)


class _Node2:
    """Bivariate E[f(u, v)], u = sqrt(V1) x, v = sqrt(V2)(rho x + sqrt(1-rho^2) y).

    Separable integrands of (u, v) alone at equal variances use a :class:`CorrelationTable`
    (verified, built per piece on first use); every other point the nested rule of
    :func:`critsym.gaussian.rules.mean2_grid`, the inner mesh graded towards the line v = 0,
    evaluated in chunks (bounded memory).
    """

    def __init__(self, node: GaussE2, args: tuple[sp.Symbol, ...]):
        lam, V1, V2, C = node.args
        u, v = lam.variables
        self.x, self.y = sp.Dummy("x", real=True), sp.Dummy("y", real=True)
        self.s1, self.s2 = sp.Dummy("s1", nonnegative=True), sp.Dummy("s2", nonnegative=True)
        self.r, self.rc = sp.Dummy("r", real=True), sp.Dummy("rc", nonnegative=True)
        g = lam.expr.subs(
            {u: self.s1 * self.x, v: self.s2 * (self.r * self.x + self.rc * self.y)},
            simultaneous=True,
        )
        extra = (self.s1, self.s2, self.r, self.rc)
        self.V1, self.V2, self.C = (Compiled(e, args) for e in (V1, V2, C))
        self.g = Compiled(g, args + extra + (self.x, self.y))
        # kinks of u-atoms at u = k: x = k / s1; kinks of v-atoms at v = k: y = (k/s2 - r x)/rc.
        # u = 0 and v = 0 are the mesh centres, so only other kink points need a split.
        ku = [k for k in kink_points(lam.expr, u) if not k.has(v)]
        kv = [k for k in kink_points(lam.expr, v) if not k.has(u)]
        self.xk = [Compiled(k / self.s1, args + extra) for k in ku]
        self.yk = [
            Compiled((k / self.s2 - self.r * self.x) / self.rc, args + extra + (self.x,))
            for k in kv
        ]
        self._nargs = len(args)
        self._key = lam
        self._pairs = None
        #: the integrand depends on (u, v) alone: equal-variance points use the finely graded rule
        self._scaled = lam.expr.free_symbols <= {u, v} and not _outermost_nodes(lam.expr)
        if self._scaled and not lam.expr.atoms(*KINKED):
            sep = _separate(lam.expr, u, v)
            if sep is not None:
                self._pairs = [(_lambdify1(f, u), _lambdify1(h, v)) for f, h in sep]

    @property
    def table(self) -> CorrelationTable | None:
        """The correlation table of this integrand (None when it is not separable in (u, v))."""
        if self._pairs is None:
            return None
        if self._key not in _TABLES2:
            _TABLES2[self._key] = CorrelationTable(self._pairs, self._reference)
        return _TABLES2[self._key]

    def _reference(self, V: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The nested rule at equal variances V (flat), the meshes also graded at the scale
        1/sqrt(V) of the integrand's features (for integrands of (u, v) alone)."""
        s = np.sqrt(np.asarray(V, dtype=float))
        r = np.asarray(r, dtype=float)
        rc = np.sqrt(np.maximum(1 - r * r, 0.0))
        zero = [np.zeros(V.shape)] * self._nargs
        return self._quad_flat(zero, s, s, r, rc, scaled=True)

    def _quad_flat(self, vals, s1, s2, r, rc, scaled=False):
        """The nested rule at flat arrays (all of one length)."""
        extra = (s1, s2, r, rc)
        cols = [*vals, *extra]

        def take(i):
            return [c[i] for c in cols]

        def kx(i):
            with np.errstate(all="ignore"):
                ks = [np.broadcast_to(k(*take(i)), i.shape) for k in self.xk]
                if scaled:
                    sc = np.where(s1[i] > 1, s1[i], np.inf)
                    ks += [e / sc for e in _EDGES if e != 0]
            return ks

        def ky(i, X):
            ex = [c[:, None] for c in take(i)]
            with np.errstate(all="ignore"):
                ks = [np.broadcast_to(k(*ex, X), X.shape) for k in self.yk]
                if scaled:
                    den = np.where(s2[i] * rc[i] > 1, s2[i] * rc[i], np.inf)[:, None]
                    yc = -r[i][:, None] * X / np.where(rc[i] > 0, rc[i], 1.0)[:, None]
                    ks += [yc + e / den for e in _EDGES if e != 0]
            return ks

        def h(i, X, Y):
            ex = [c[i] for c in cols]
            return self.g(*ex, X, Y)

        extra_panels = (len(self.xk) + len(self.yk)) + (2 * len(_EDGES) if scaled else 0)
        return mean2_grid(h, r, kx, ky, NODES_2D, extra_panels)

    def __call__(self, *vals):
        V1 = _rounded_nonnegative(np.asarray(self.V1(*vals), float))
        V2 = _rounded_nonnegative(np.asarray(self.V2(*vals), float))
        C = np.asarray(self.C(*vals), float)
        if np.any(V1 < 0) or np.any(V2 < 0):
            raise NumericalError("negative variance in a bivariate Gaussian expectation")
        s1, s2 = np.sqrt(V1), np.sqrt(V2)
        with np.errstate(all="ignore"):
            r = np.where(s1 * s2 > 0, C / (s1 * s2), 0.0)
        if np.any(np.abs(r) > 1 + 1e-9):
            raise NumericalError(
                f"correlation {np.abs(r).max():.6g} outside [-1, 1]: |K12| must be <= sqrt(K11 K22)"
            )
        r = np.clip(r, -1.0, 1.0)
        shape = np.broadcast_shapes(r.shape, s1.shape, s2.shape, *(np.shape(v) for v in vals))
        flat = [np.broadcast_to(a, shape).ravel() for a in (V1, V2, r)]
        V1f, V2f, rf = flat
        out = np.empty(V1f.shape)
        todo = np.ones(V1f.shape, dtype=bool)
        table = self.table if _TABULATE[0] else None
        if table is not None:
            eq = (V1f == V2f) & table.covers(V1f)
            if eq.any():
                vals_eq, done = table(V1f[eq], rf[eq])
                sel = np.nonzero(eq)[0]
                out[sel[done]] = vals_eq[done]
                todo[sel[done]] = False
        if self._scaled:
            # other equal-variance points of this integrand: the finely graded reference rule
            ref = todo & (V1f == V2f)
            if ref.any():
                out[ref] = self._reference(V1f[ref], rf[ref])
                todo &= ~ref
        if todo.any():
            idx = np.nonzero(todo)[0]
            bv = [np.broadcast_to(np.asarray(v, float), shape).ravel()[idx] for v in vals]
            s1f, s2f, rr = np.sqrt(V1f[idx]), np.sqrt(V2f[idx]), rf[idx]
            out[idx] = self._quad_flat(bv, s1f, s2f, rr, np.sqrt(1 - rr**2))
        return out.reshape(shape)


def compile_expr(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Compiled:
    """Compile ``expr`` (possibly containing Gaussian expectations) to a vectorised callable.

    A form sympy cannot turn into numpy code (an unevaluated derivative, an unknown function)
    raises :class:`~critsym.errors.DerivationError` naming it."""
    try:
        return Compiled(expr, args)
    except (NotImplementedError, sp.SympifyError, SyntaxError, TypeError) as e:
        raise DerivationError(
            f"cannot compile {str(expr)[:200]} to numeric code ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); this block needs a form critsym's "
            "evaluator does not support"
        ) from e


# ---------------------------------------------------------------- high precision (mpmath)


def evaluate_mp(expr: sp.Expr, values: dict[sp.Symbol, object], dps: int = 30):
    """Evaluate ``expr`` at scalar ``values`` with mpmath at ``dps`` decimal digits.

    Gaussian expectations are integrated by ``mpmath.quad`` on the real line split at 0 and at
    the kink points of the integrand.
    """
    import mpmath

    with mpmath.workdps(dps):
        return _mp_eval(sp.sympify(expr).subs(values), dps)


def _mp_eval(expr: sp.Expr, dps: int):
    import mpmath

    nodes = _outermost_nodes(expr)
    repl = {}
    for n in nodes:
        if isinstance(n, GaussE):
            lam, V = n.args
            (z,) = lam.variables
            Vv = _mp_eval(V, dps)
            if Vv < 0:
                raise NumericalError("negative variance in a Gaussian expectation")
            f = lam.expr
            if _outermost_nodes(f):
                def fz(t, f=f, z=z):
                    return _mp_eval(f.subs(z, sp.Float(t, dps)), dps)
            else:
                fz = sp.lambdify(z, f, modules=[MPMATH_FUNCTIONS, "mpmath"])
            sd = mpmath.sqrt(Vv)
            pts = sorted({0.0, *[float(_mp_eval(k, dps)) for k in _kink_points(f, z)]})
            if sd == 0:
                val = fz(mpmath.mpf(0))
            else:
                val = mpmath.quad(
                    lambda t, fz=fz, sd=sd: fz(t) * mpmath.npdf(t, 0, sd),
                    [-mpmath.inf, *[mpmath.mpf(p) for p in pts], mpmath.inf],
                )
        else:
            lam, V1, V2, C = n.args
            u, v = lam.variables
            V1v, V2v, Cv = (_mp_eval(e, dps) for e in (V1, V2, C))
            r = Cv / mpmath.sqrt(V1v * V2v)
            rc = mpmath.sqrt(1 - r**2)
            s1, s2 = mpmath.sqrt(V1v), mpmath.sqrt(V2v)
            f = sp.lambdify((u, v), lam.expr, modules=[MPMATH_FUNCTIONS, "mpmath"])

            def outer(xx, f=f, s1=s1, s2=s2, r=r, rc=rc):
                pts = {mpmath.mpf(0)}
                if rc > 0 and abs(r * xx / rc) < 40:
                    pts.add(-r * xx / rc)
                return mpmath.quad(
                    lambda yy: f(s1 * xx, s2 * (r * xx + rc * yy)) * mpmath.npdf(yy),
                    [-mpmath.inf, *sorted(pts), mpmath.inf],
                ) * mpmath.npdf(xx)

            val = mpmath.quad(outer, [-mpmath.inf, 0, mpmath.inf])
        repl[n] = sp.Float(val, dps)
    out = expr.xreplace(repl) if repl else expr
    return mpmath.mpf(sp.N(out, dps)) if out.is_number else sp.N(out, dps)
