"""LaTeX export of a :class:`~critsym.theory.Theory`."""

from __future__ import annotations

import sympy as sp

from .symbols import K11, K12, K22, K

_Kl = sp.Symbol("K^{l}")
_K11l = sp.Symbol("K_{11}^{l}")
_K22l = sp.Symbol("K_{22}^{l}")
_K12l = sp.Symbol("K_{12}^{l}")


def _tex(e: sp.Expr) -> str:
    e = e.xreplace({K: _Kl, K11: _K11l, K22: _K22l, K12: _K12l})
    # rename fold dummies z_i / y_i to z, u, v for readability
    return sp.latex(e)


def theory_latex(theory) -> str:
    """The align environment for ``theory`` (see :meth:`Theory.latex`)."""
    Fg, chig, Gg = theory.general
    lines = []

    def eq(lhs: str, general: sp.Expr, closed: sp.Expr):
        g, c = _tex(general), _tex(closed)
        lines.append(f"{lhs} &= {g}")
        if g != c:
            lines.append(f"&= {c}")

    eq(r"K^{l+1}", Fg, theory.F)
    eq(r"\chi_J^{l}", chig, theory.chi)
    lines.append(
        r"\mathcal{J}^{l_0,l} &= \prod_{l'=l_0}^{l-1} \chi_J^{l'}, \qquad \mathcal{J}^{l_0,l_0} = 1"
    )
    eq(r"K_{12}^{l+1}", Gg, theory.G)
    body = " \\\\\n".join(lines)
    return "\\begin{align}\n" + body + "\n\\end{align}\n"
