r"""Gaussian expectations as first-class sympy objects.

``GaussE(Lambda(z, f), V)`` is :math:`\mathbb{E}_{z\sim\mathcal N(0,V)}[f(z)]` and
``GaussE2(Lambda((u, v), f), V1, V2, C)`` is the bivariate
:math:`\mathbb{E}_{(u,v)\sim\mathcal N(0,[[V_1,C],[C,V_2]])}[f(u,v)]`.
Both stay unevaluated inside derived formulas (so they print, differentiate and substitute like
any sympy expression) and are evaluated numerically by :mod:`critsym.gaussian.numeric`.
:func:`expect` and :func:`expect2` first try the closed-form rules of
:mod:`critsym.gaussian.closed_form`.
"""

from __future__ import annotations

import sympy as sp

from ..budget import check_budget


def _print_call(node: sp.Basic, printer, function: str) -> str:
    """The code of a call of ``function`` (a dotted path, imported by ``sympy.lambdify``) that
    evaluates ``node``: its srepr and its free symbols (see :mod:`critsym.gaussian.lambdified`)."""
    syms = sorted(node.free_symbols, key=sp.default_sort_key)
    code = sp.srepr(sp.Tuple(node, sp.Tuple(*syms)))
    args = "".join(f", {printer._print(s)}" for s in syms)
    return f"{printer._module_format(function)}({code!r}{args})"


class GaussE(sp.Function):
    r"""E_{z ~ N(0, V)}[f(z)], args = (Lambda(z, f(z)), V).

    d/ds E = E[∂_s f] + (∂_s V) E[z f'(z)] / (2V)  (differentiate f(sqrt(V) x) under the integral).
    """

    nargs = 2

    @classmethod
    def eval(cls, lam, var):
        return None

    @property
    def integrand(self) -> sp.Lambda:
        return self.args[0]

    @property
    def variance(self) -> sp.Expr:
        return self.args[1]

    def _eval_derivative(self, s):
        lam, V = self.args
        (z,) = lam.variables
        f = lam.expr
        d_inner = sp.diff(f, s)
        dV = sp.diff(V, s)
        total = d_inner
        if dV != 0:
            total = total + dV * z * sp.diff(f, z) / (2 * V)
        if total == 0:
            return sp.S.Zero
        return GaussE(sp.Lambda(z, total), V)

    def _latex(self, printer, exp=None):
        lam, V = self.args
        (z,) = lam.variables
        s = r"\mathbb{E}_{%s\sim\mathcal{N}(0,%s)}\left[%s\right]" % (
            printer._print(z),
            printer._print(V),
            printer._print(lam.expr),
        )
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)

    def _pythoncode(self, printer, **kwargs):
        """``sympy.lambdify`` (math, numpy, scipy): a call of the engine's quadrature."""
        return _print_call(self, printer, "critsym.gaussian.lambdified.gauss_expectation")

    _numpycode = _pythoncode

    def _mpmathcode(self, printer, **kwargs):
        """``sympy.lambdify(..., modules="mpmath")``: a call of the mpmath quadrature."""
        return _print_call(self, printer, "critsym.gaussian.lambdified.gauss_expectation_mp")

    def _sympystr(self, printer):
        lam, V = self.args
        (z,) = lam.variables
        return "E[%s; %s~N(0, %s)]" % (printer._print(lam.expr), z, printer._print(V))


class GaussE2(sp.Function):
    r"""E_{(u,v) ~ N(0, [[V1, C], [C, V2]])}[f(u, v)], args = (Lambda((u, v), f), V1, V2, C)."""

    nargs = 4

    @classmethod
    def eval(cls, lam, v1, v2, c):
        return None

    def _latex(self, printer, exp=None):
        lam, v1, v2, c = self.args
        u, v = lam.variables
        s = (
            r"\mathbb{E}_{(%s,%s)\sim\mathcal{N}\left(0,\begin{smallmatrix}%s & %s\\ %s & %s"
            r"\end{smallmatrix}\right)}\left[%s\right]"
        ) % tuple(printer._print(a) for a in (u, v, v1, c, c, v2, lam.expr))
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)

    def _pythoncode(self, printer, **kwargs):
        """``sympy.lambdify`` (math, numpy, scipy): a call of the engine's quadrature."""
        return _print_call(self, printer, "critsym.gaussian.lambdified.gauss_expectation")

    _numpycode = _pythoncode

    def _mpmathcode(self, printer, **kwargs):
        """``sympy.lambdify(..., modules="mpmath")``: a call of the mpmath quadrature."""
        return _print_call(self, printer, "critsym.gaussian.lambdified.gauss_expectation_mp")

    def _sympystr(self, printer):
        lam, v1, v2, c = self.args
        u, v = lam.variables
        return "E[%s; (%s,%s)~N(0, [[%s, %s], [%s, %s]])]" % (
            printer._print(lam.expr), u, v, *(printer._print(a) for a in (v1, c, c, v2))
        )


def _bound(exclude: set, names=("z", "w", "t", "r", "q")) -> sp.Symbol:
    """A canonical bound variable not clashing with ``exclude`` (so equal expectations compare
    equal, and substitutions never capture an outer variable)."""
    for n in names:
        b = sp.Symbol(n, real=True)
        if b not in exclude:
            return b
    return sp.Dummy("z", real=True)


def _groups(f: sp.Expr, zs: tuple) -> dict[sp.Expr, sp.Expr]:
    """Split f = Σ_c c·w_c by the symbolic constant (free of ``zs``) coefficients of its terms."""
    groups: dict[sp.Expr, sp.Expr] = {}
    for t in sp.Add.make_args(sp.expand(f)):
        c, w = t.as_independent(*zs, as_Add=False)
        num, csym = c.as_coeff_Mul()
        groups[csym] = groups.get(csym, sp.S.Zero) + num * w
    return groups


def expect(f: sp.Expr, z: sp.Symbol, V: sp.Expr, *, closed_forms: bool = True) -> sp.Expr:
    """E_{z~N(0,V)}[f(z)]: a closed form when the rules find one, else an unevaluated GaussE.

    Linearity is applied first over symbolic constant coefficients, so that
    E[(φ - m)²/s²] = (E[φ²] - 2m E[φ] + m²)/s² with each expectation in canonical form.
    """
    check_budget()
    f = sp.sympify(f)
    if z not in f.free_symbols:
        return f
    if sp.expand(f.subs(z, -z) + f) == 0:
        return sp.S.Zero  # odd integrand, symmetric measure
    groups = _groups(f, (z,))
    if len(groups) > 1:
        return sp.Add(*[c * expect(w, z, V, closed_forms=closed_forms) for c, w in groups.items()])
    (csym,) = groups
    if csym != 1:
        inner = sp.cancel(f / csym) if f.is_Add else f / csym
        return csym * expect(inner, z, V, closed_forms=closed_forms)
    if closed_forms or f.is_polynomial(z):  # moments of the Gaussian itself are always shown
        from .closed_form import closed_form_1d

        r = closed_form_1d(f, z, V)
        if r is not None:
            return r
    # exclude bound variables of nested expectations too (else renaming would capture them)
    b = _bound((f.atoms(sp.Symbol) | V.free_symbols) - {z})
    return GaussE(sp.Lambda(b, f.xreplace({z: b})), V)


def expect2(
    f: sp.Expr, u: sp.Symbol, v: sp.Symbol, V1: sp.Expr, V2: sp.Expr, C: sp.Expr,
    *, closed_forms: bool = True,
) -> sp.Expr:
    """E over (u, v) ~ N(0, [[V1, C], [C, V2]]) of f(u, v); closed form when one is found."""
    check_budget()
    f = sp.sympify(f)
    fs = f.free_symbols
    if u not in fs and v not in fs:
        return f
    if v not in fs:
        return expect(f, u, V1, closed_forms=closed_forms)
    if u not in fs:
        return expect(f, v, V2, closed_forms=closed_forms)
    if V1 == V2 == C or sp.expand(V1 - C) == 0 == sp.expand(V2 - C):
        # perfectly correlated: v = u, a one-dimensional expectation
        return expect(f.xreplace({v: u}), u, V1, closed_forms=closed_forms)
    groups = _groups(f, (u, v))
    if len(groups) > 1:
        return sp.Add(*[c * expect2(w, u, v, V1, V2, C, closed_forms=closed_forms)
                        for c, w in groups.items()])
    (csym,) = groups
    if csym != 1:
        return csym * expect2(f / csym, u, v, V1, V2, C, closed_forms=closed_forms)
    if closed_forms:
        from .closed_form import closed_form_2d

        r = closed_form_2d(f, u, v, V1, V2, C)
        if r is not None:
            return r
    ex = (f.atoms(sp.Symbol) | V1.free_symbols | V2.free_symbols | C.free_symbols) - {u, v}
    bu, bv = _bound(ex, ("u", "u_1", "u_2")), _bound(ex, ("v", "v_1", "v_2"))
    return GaussE2(sp.Lambda((bu, bv), f.xreplace({u: bu, v: bv})), V1, V2, C)
