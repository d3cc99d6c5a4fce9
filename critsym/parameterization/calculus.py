r"""The width-exponent calculus after one SGD step (linear response, relu, dl/df = Theta(1)).

e(q) means q = Theta(m^{e}) (RMS over coordinates/entries).  x_l = phi(h_l), x_{-1} = xi (e = 0).

    init      e(h_0) = -a_0 - b_0,   e(h_l) = 1/2 - a_l - b_l + e(h_{l-1})   (l = 1..L, f = h_L)
    backward  e(dh_L) = 0, e(dh_{L-1}) = -a_L - b_L, e(dh_{l-1}) = 1/2 - a_l - b_l + e(dh_l)
    update    e(dW^l) = -c_l - a_l + e(dh_l) + e(x_{l-1})
    direct    D_l = -c_l - 2 a_l + e(dh_l) + 1[l > 0] + 2 e(x_{l-1})
    features  e(Dh_0) = D_0,  e(Dh_l) = max(D_l, e(Dh_{l-1}) + 1/2 - a_l - b_l)   (l = 1..L-1)
    output    e(Df) = max(D_L, e(Dh_{L-1}) + 1 - a_L - b_L)

The learning-rate exponents are those of the first step (``c_first`` when given).

Linear response assumes Dh_{l-1} does not dominate h_{l-1}; ``linear_valid[l]`` is False once some
earlier layer has e(Dh_k) > e(h_k).  With ``nonlinear=True`` the direct term uses the coherent inner
product of the old and new relu outputs (both non-negative, so the sum over m is coherent):

    D_l = -c_l - 2 a_l + e(dh_l) + 1[l > 0] + e(x_{l-1}) + max(e(x_{l-1}), e(Dh_{l-1}))

(and likewise for Df), which reduces to the linear D_l whenever linear response is valid.  This
is the
second-order, activation-dependent effect by which IP-LLR's first step makes every h_l Theta(1).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from critsym.parameterization.protocol import Exps, Parameterization

HALF = sp.Rational(1, 2)


@dataclass(frozen=True)
class Exponents:
    """Width exponents of every quantity; tuples indexed by layer l = 0..L."""

    param: Parameterization
    h: Exps        # e(h_l) at init, l = 0..L (h_L = f)
    dh: Exps       # e(dl/dh_l), l = 0..L
    dW: Exps       # e(Delta W^l)
    direct: Exps   # D_l
    delta_h: Exps  # e(Delta h_l), l = 0..L-1
    delta_f: sp.Rational
    linear_valid: tuple[bool, ...] = ()  # per layer 0..L (L: f)
    nonlinear: bool = False

    def rows(self) -> list[tuple[str, list[sp.Rational]]]:
        return [("h (init)", list(self.h)), ("dh (backward)", list(self.dh)),
                ("dW", list(self.dW)), ("Dh", list(self.delta_h) + [self.delta_f])]

    def table(self) -> str:
        """Plain-text table, one column per layer (the last column of Dh is Df)."""
        n = self.param.n_layers
        head = ["quantity"] + [f"l={i}" for i in range(n)]
        lines = [" | ".join(f"{h:>13}" for h in head)]
        for label, vals in self.rows():
            cells = [str(v) for v in vals]
            if label == "Dh" and self.linear_valid and not self.nonlinear:
                cells = [c + ("" if ok else "*") for c, ok in
                         zip(cells, self.linear_valid, strict=True)]
            lines.append(" | ".join(f"{x:>13}" for x in [label] + cells))
        if self.linear_valid and not all(self.linear_valid) and not self.nonlinear:
            lines.append("* linear response invalid (an earlier Dh dominates h); "
                         "see nonlinear=True")
        return "\n".join(lines)

    def latex(self) -> str:
        """A LaTeX tabular of the exponents (Theta(m^e))."""
        n = self.param.n_layers
        cols = "l" + "c" * n
        out = [r"\begin{tabular}{" + cols + "}", r"\hline",
               " & ".join(["quantity"] + [f"$l={i}$" for i in range(n)]) + r" \\", r"\hline"]
        names = {"h (init)": r"$h_l$ (init)", "dh (backward)": r"$\partial_{h_l}\ell$",
                 "dW": r"$\Delta W^l$", "Dh": r"$\Delta h_l$ ($\Delta f$)"}
        for label, vals in self.rows():
            out.append(" & ".join([names[label]] + [f"${sp.latex(v)}$" for v in vals]) + r" \\")
        out += [r"\hline", r"\end{tabular}"]
        return "\n".join(out)


def exponent_calculus(p: Parameterization, nonlinear: bool = False) -> Exponents:
    """Apply the calculus in the module docstring to ``p``."""
    a, b, c, L = p.a, p.b, p.step_c, p.L
    h = [-a[0] - b[0]]
    for l in range(1, L + 1):
        h.append(HALF - a[l] - b[l] + h[l - 1])
    dh: list[sp.Rational] = [sp.Integer(0)] * (L + 1)
    dh[L - 1] = -a[L] - b[L]
    for l in range(L - 1, 0, -1):
        dh[l - 1] = HALF - a[l] - b[l] + dh[l]

    def ex(l: int) -> sp.Rational:  # e(x_{l-1})
        return sp.Integer(0) if l == 0 else h[l - 1]

    dW = [-c[l] - a[l] + dh[l] + ex(l) for l in range(L + 1)]
    direct = [-c[l] - 2 * a[l] + dh[l] + (1 if l > 0 else 0) + 2 * ex(l) for l in range(L + 1)]
    delta = [direct[0]]

    def direct_term(l: int) -> sp.Rational:
        if not nonlinear or l == 0:
            return direct[l]
        return -c[l] - 2 * a[l] + dh[l] + 1 + ex(l) + sp.Max(ex(l), delta[l - 1])

    for l in range(1, L):
        delta.append(sp.Max(direct_term(l), delta[l - 1] + HALF - a[l] - b[l]))
    df = sp.Max(direct_term(L), delta[L - 1] + 1 - a[L] - b[L]) if L >= 1 else direct[L]
    valid = []
    ok = True
    for l in range(L + 1):
        valid.append(ok)
        if l < L and delta[l] > h[l]:
            ok = False
    return Exponents(p, tuple(h), tuple(dh), tuple(dW), tuple(direct), tuple(delta),
                     sp.Rational(df), tuple(valid), nonlinear)
