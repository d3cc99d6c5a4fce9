r"""Numeric evaluation of expressions that contain Gaussian expectation nodes.

An expression is compiled once into a vectorised numpy callable: every outermost
:class:`GaussE`/:class:`GaussE2` node becomes a placeholder argument, computed by quadrature, and
the rest is lambdified.  Integrands are compiled the same way, so nested expectations (several
independent Gaussian variables) work through broadcasting: each level of quadrature appends one
trailing axis of nodes.

Quadrature rule (standardised variable x ~ N(0,1), z = sqrt(V) x): composite Gauss–Legendre on
[-L, L], L = 12, with panels graded geometrically towards a centre (0, or the kink of the inner
variable of a bivariate expectation), and every panel split at each kink point found in the
integrand (zeros of the arguments of Heaviside, relu, elu, |.|, sign, max/min that are linear in
x).  The neglected tail mass is 2Φ(-12) ≈ 3.6e-33.  For integrands that are smooth on each
panel (polynomially bounded, analytic within ~0.1 of the real axis after scaling) the rule is
accurate to ~1e-13 in 1-D (336 nodes) and ~1e-11 in 2-D (224 × 224 nodes); relative accuracy
degrades for integrands growing like e^{a x} with a ≳ 5.  :func:`evaluate_mp` integrates with
mpmath to any requested precision instead.

Tabulation (speed).  A 1-D node whose integrand depends only on the bound variable, e.g.
E_{z~N(0,V)}[tanh(z)^2], is a function of V alone: m(V) = E_x[g(sqrt(V) x)].  On first use it is
tabulated once as piecewise Chebyshev interpolants in u = log V on [log V_MIN, log V_MAX]
(:class:`VarianceTable`), and the table is verified against the quadrature at points between the
interpolation nodes: it is used only if the maximum relative error is <= ``TABLE_RTOL`` (1e-10),
else the node keeps quadrature.  Values of V above the range fall back to quadrature; below
it (and at V = 0) the small-V series Σ_{k≤2} f^{(2k)}(0) V^k/(2^k k!) is used for analytic
integrands (relative error ≤ ~V_MIN), quadrature otherwise.  :func:`quadrature_only` (a context
manager) or ``set_tabulation(False)`` selects exact quadrature everywhere.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from functools import cache

import numpy as np
import sympy as sp
from sympy.printing.numpy import SciPyPrinter

from ..activations import ELU, MPMATH_FUNCTIONS, NUMPY_FUNCTIONS, ReLU
from ..errors import DerivationError, NumericalError
from .expectation import GaussE, GaussE2

L_CUT = 12.0
_HALF = np.array([1e-3, 1e-2, 0.06, 0.2, 0.45, 0.8, 1.3, 2.0, 3.0, 4.3, 6.0, 8.5, 12.0])
_EDGES = np.concatenate([-_HALF[::-1], [0.0], _HALF])
NODES_1D = 12
NODES_2D = 8
_MODULES = [NUMPY_FUNCTIONS, {"functools": functools}, "scipy", "numpy"]  # Max/Min: reduce


def _safe_unit(x):
    """acos/asin arguments: rounding can push a correlation of exactly ±1 just outside."""
    x = np.asarray(x, dtype=float)
    return np.where(np.abs(x) <= 1 + 1e-9, np.clip(x, -1.0, 1.0), x)


def _safe_sqrt(x):
    """sqrt with rounding-level negatives (e.g. K11 K22 - K12² at c = 1) set to 0."""
    x = np.asarray(x, dtype=float)
    return np.sqrt(np.where((x < 0) & (x > -1e-9), 0.0, x))


NUMPY_FUNCTIONS.update(
    {
        "_safe_acos": lambda x: np.arccos(_safe_unit(x)),
        "_safe_asin": lambda x: np.arcsin(_safe_unit(x)),
        "_safe_sqrt": _safe_sqrt,
    }
)


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
_KINKED = (sp.Heaviside, ReLU, ELU, sp.Abs, sp.sign, sp.Max, sp.Min, sp.DiracDelta)

#: tabulated range of variances and the verified relative accuracy of a table
V_MIN, V_MAX = 1e-12, 1e12
TABLE_RTOL = 1e-10
_TABULATE = [True]


def set_tabulation(enabled: bool) -> None:
    """Globally enable (default) or disable variance tables for 1-D expectations."""
    _TABULATE[0] = bool(enabled)


def tabulation_enabled() -> bool:
    return _TABULATE[0]


@contextlib.contextmanager
def quadrature_only() -> Iterator[None]:
    """Within the block every expectation is computed by quadrature (no variance tables)."""
    old = _TABULATE[0]
    _TABULATE[0] = False
    try:
        yield
    finally:
        _TABULATE[0] = old


class VarianceTable:
    r"""m(V) = E_{x~N(0,1)}[g(\sqrt{V} x)] as piecewise Chebyshev interpolants in u = log V.

    ``pieces`` equal pieces on [log V_MIN, log V_MAX], ``degree`` + 1 Chebyshev points each.
    :attr:`max_rel_error` is the largest relative deviation from ``quad`` found at the check
    points (three per gap between interpolation nodes) -- the table is only used when it is
    <= :data:`TABLE_RTOL`.
    """

    def __init__(self, quad: Callable[[np.ndarray], np.ndarray], pieces: int, degree: int):
        self.u0, self.u1 = np.log(V_MIN), np.log(V_MAX)
        self.pieces, self.degree = pieces, degree
        self.width = (self.u1 - self.u0) / pieces
        n = degree + 1
        t = np.cos(np.pi * (np.arange(n) + 0.5) / n)  # Chebyshev points of the first kind
        left = self.u0 + self.width * np.arange(pieces)
        u = left[:, None] + (t[None, :] + 1) * self.width / 2
        vals = np.asarray(quad(np.exp(u)), dtype=float)
        # c_k = (2/n) sum_j f(t_j) T_k(t_j), c_0 halved
        T = np.cos(np.outer(np.arange(n), np.arccos(t)))
        with np.errstate(all="ignore"):
            coef = vals @ T.T * (2.0 / n)
        coef[:, 0] /= 2
        self.coef = coef
        # verification between the nodes
        s = np.sort(t)
        mids = np.concatenate([s[:1] - 0.0, (s[:-1] + s[1:]) / 2, s[-1:]])
        chk = np.concatenate([mids, (s[:-1] * 3 + s[1:]) / 4, (s[:-1] + 3 * s[1:]) / 4])
        chk = np.clip(chk, -1, 1)
        uc = (left[:, None] + (chk[None, :] + 1) * self.width / 2).ravel()
        exact = np.asarray(quad(np.exp(uc)), dtype=float)
        with np.errstate(all="ignore"):
            approx = self.eval_u(uc)
        with np.errstate(all="ignore"):
            rel = np.abs(approx - exact) / np.abs(exact)
        rel = np.where(exact == approx, 0.0, rel)
        self.max_rel_error = float(np.max(rel)) if np.all(np.isfinite(rel)) else np.inf

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= TABLE_RTOL

    def eval_u(self, u: np.ndarray) -> np.ndarray:
        """Clenshaw evaluation at u = log V (u inside the range)."""
        y = (u - self.u0) / self.width
        idx = np.clip(np.floor(y).astype(np.intp), 0, self.pieces - 1)
        t = 2 * (y - idx) - 1
        c = self.coef[idx]
        b1 = np.zeros_like(t)
        b2 = np.zeros_like(t)
        t2 = 2 * t
        for k in range(self.degree, 0, -1):
            b1, b2 = c[..., k] + t2 * b1 - b2, b1
        return c[..., 0] + t * b1 - b2

    def __call__(self, V: np.ndarray, fallback: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        V = np.asarray(V, dtype=float)
        inside = (V >= V_MIN) & (V <= V_MAX)
        if np.all(inside):
            return self.eval_u(np.log(V))
        out = np.empty(V.shape)
        if np.any(inside):
            out[inside] = self.eval_u(np.log(V[inside]))
        if np.any(~inside):
            out[~inside] = fallback(V[~inside])
        return out


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


#: tables shared by every compiled node with the same integrand (keyed by its Lambda)
_TABLES: dict[sp.Basic, VarianceTable | None] = {}


def build_table(quad: Callable[[np.ndarray], np.ndarray]) -> VarianceTable | None:
    """The cheapest :class:`VarianceTable` of ``quad`` meeting :data:`TABLE_RTOL`, or None."""
    for pieces, degree in ((48, 16), (96, 20), (192, 24)):
        tab = VarianceTable(quad, pieces, degree)
        if tab.ok:
            return tab
    return None


@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(n)
    return t, w


def _nodes(kinks: Sequence[np.ndarray], n: int, shape: tuple[int, ...]):
    """Standard-normal quadrature nodes and weights, shape ``shape + (N,)``.

    Panels: the fixed mesh ``_EDGES`` (graded towards 0) with every kink point (an array
    broadcastable to ``shape``) inserted as an extra edge; ``n`` Gauss–Legendre nodes per panel.
    """
    edges = np.broadcast_to(_EDGES, shape + _EDGES.shape)
    if kinks:
        ks = [np.clip(np.broadcast_to(np.asarray(k, dtype=float), shape), -L_CUT, L_CUT)[..., None]
              for k in kinks]
        ks = [np.where(np.isfinite(k), k, L_CUT) for k in ks]
        edges = np.sort(np.concatenate([edges, *ks], axis=-1), axis=-1)
    a, b = edges[..., :-1], edges[..., 1:]
    t, w = _legendre(n)
    half = (b - a)[..., None] / 2
    mid = (b + a)[..., None] / 2
    X = (mid + half * t).reshape(*shape, -1)
    W = (half * w).reshape(*shape, -1) * np.exp(-0.5 * X**2) / np.sqrt(2 * np.pi)
    return X, W


def _kink_points(expr: sp.Expr, x: sp.Symbol) -> list[sp.Expr]:
    pts: list[sp.Expr] = []
    for atom in expr.atoms(*_KINKED):
        for arg in atom.args:
            if not arg.has(x):
                continue
            a = sp.diff(arg, x)
            if a.has(x):
                continue  # nonlinear argument: no breakpoint (accuracy may degrade)
            b = sp.expand(arg - a * x)
            pt = sp.simplify(-b / a)
            if pt != 0 and pt not in pts:
                pts.append(pt)
    return pts


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
        self._outer = sp.lambdify(list(self.args) + ph, outer, modules=_MODULES,
                                  printer=_Printer)
        self._nodes: list[Callable] = [
            _Node1(n, self.args) if isinstance(n, GaussE) else _Node2(n, self.args) for n in nodes
        ]

    def __call__(self, *vals) -> np.ndarray:
        vals = [np.asarray(v, dtype=float) for v in vals]
        shape = np.broadcast_shapes(*(v.shape for v in vals)) if vals else ()
        pvals = [node(*vals) for node in self._nodes]
        with np.errstate(all="ignore"):
            out = self._outer(*vals, *pvals)
        return np.broadcast_to(np.asarray(out, dtype=float), shape) if np.ndim(out) == 0 else out


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
        # the integrand depends on the variance only: tabulate m(V) on first use
        self.tabulable = g.free_symbols <= {self.s, self.x}
        self._key = lam
        self._nargs = len(args)
        self._small = _small_V_series(lam) if self.tabulable else None

    def _quad_of_V(self, V: np.ndarray) -> np.ndarray:
        """Quadrature as a function of V alone (tabulable integrands only), on the union of the
        standard mesh in x and the same mesh in z = sqrt(V) x (so that features of the
        integrand at |z| ~ 1 stay resolved when V is very large or very small)."""
        V = np.asarray(V, dtype=float)
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
        if not self.tabulable:
            return None
        if self._key not in _TABLES:
            _TABLES[self._key] = build_table(self._quad_of_V)
        return _TABLES[self._key]

    def __call__(self, *vals):
        V = np.asarray(self.V(*vals), dtype=float)
        if np.any(V < 0):
            raise NumericalError(f"negative variance {V.min():.3g} in a Gaussian expectation")
        if self.tabulable:
            if _TABULATE[0] and self.table is not None:
                return self.table(V, self._below_or_above)
            return self._quad_of_V(V)
        return self._quad(V, vals)

    def _quad(self, V, vals):
        s = np.sqrt(V)
        ks = [k(*vals, s) for k in self.kinks]
        shape = np.broadcast_shapes(s.shape, *(np.shape(v) for v in vals))
        X, W = _nodes(ks, NODES_1D, shape)
        ex = [np.asarray(v)[..., None] for v in vals]
        with np.errstate(all="ignore"):
            f = self.g(*ex, s[..., None], X)
        return np.sum(np.broadcast_to(f, W.shape) * W, axis=-1)


class _Node2:
    """Bivariate E[f(u, v)], u = sqrt(V1) x, v = sqrt(V2)(rho x + sqrt(1-rho^2) y): nested rules,
    the inner mesh graded towards the line v = 0."""

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
        ku = [k for k in _kink_points(lam.expr, u) if not k.has(v)]
        kv = [k for k in _kink_points(lam.expr, v) if not k.has(u)]
        self.xk = [Compiled(k / self.s1, args + extra) for k in ku]
        self.yk = [
            Compiled((k / self.s2 - self.r * self.x) / self.rc, args + extra + (self.x,))
            for k in kv
        ]

    def __call__(self, *vals):
        V1 = np.asarray(self.V1(*vals), float)
        V2 = np.asarray(self.V2(*vals), float)
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
        rc = np.sqrt(1 - r**2)
        shape = np.broadcast_shapes(r.shape, *(np.shape(v) for v in vals))
        extra = (s1, s2, r, rc)
        with np.errstate(all="ignore"):
            xks = [k(*vals, *extra) for k in self.xk]
        X, WX = _nodes(xks, NODES_2D, shape)
        ex = [np.asarray(v)[..., None] for v in vals] + [np.asarray(e)[..., None] for e in extra]
        with np.errstate(all="ignore"):
            yc = np.where(rc[..., None] > 0, -r[..., None] * X / np.where(rc > 0, rc, 1)[..., None],
                          0.0)
        with np.errstate(all="ignore"):
            yks = [k(*ex, X) for k in self.yk]
        Y, WY = _nodes([yc, *yks], NODES_2D, X.shape)
        ey = [np.asarray(e)[..., None] for e in ex]
        with np.errstate(all="ignore"):
            f = self.g(*ey, X[..., None], Y)
        inner = np.sum(np.broadcast_to(f, WY.shape) * WY, axis=-1)
        return np.sum(inner * WX, axis=-1)


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
