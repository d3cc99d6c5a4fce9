"""The result record of :func:`critsym.finite_width.log_norm`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from critsym.finite_width.spec import ModelSpec

_NAMES = {"mlp": "MLP", "resnet": "standard ResNet", "balanced": "Balanced ResNet"}


@dataclass(frozen=True)
class LogNormLaw:
    r"""Law of ln(|x^d|^2/|x^0|^2) for one architecture at (depth d, width n).

    mean, var         moments of ln(|x^d|^2/|x^0|^2) (the infinite-width gain d ln q included)
    M, V              proportional-limit constants: mean - d ln q ~ tau M, var ~ tau V, tau = d/n
    log_gain          d ln q, q = the infinite-width per-layer gain of |x|^2 (variance recursion)
    hypoactivation    E[fraction of active units] - 1/2 (stationary, to O(1/n)); 0 exactly for the
                      MLP and the Balanced ResNet (sign symmetry)
    lag1              correlation of consecutive log-increments (0 exactly when they are i.i.d.)
    kurtosis          3 e^{var}: kurtosis of the output y = w.x^d/sqrt(n), w ~ N(0, I), when the
                      log-norm is Gaussian
    kurtosis_exact    exact output kurtosis 3 E[R^2]/E[R]^2, R = |x^d|^2 (exact-law models only)
    order_used        "leading", "1/n" or "exact": what the numbers are
    """

    spec: ModelSpec
    depth: int
    width: int
    order: str
    order_used: str
    mean: float
    var: float
    M: float
    V: float
    log_gain: float
    gain_source: str
    hypoactivation: float | None
    lag1: float | None
    kurtosis: float
    kurtosis_exact: float | None = None
    per_layer_mean: float | None = None
    per_layer_var: float | None = None

    @property
    def tau(self) -> float:
        return self.depth / self.width

    @property
    def q(self) -> float:
        return float(np.exp(self.log_gain / self.depth))

    @property
    def sd(self) -> float:
        return float(np.sqrt(self.var))

    @property
    def unsquared(self) -> tuple[float, float]:
        """(mean, var) of ln(|x^d|/|x^0|) = half the squared-norm law."""
        return self.mean / 2.0, self.var / 4.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = asdict(self.spec)
        d["tau"] = self.tau
        return d

    def latex(self) -> str:
        """The law as a LaTeX equation (numbers at this depth/width, then the general form)."""
        s = self.spec
        lhs = rf"\ln\frac{{\lVert x^{{{self.depth}}}\rVert^2}}{{\lVert x^{{0}}\rVert^2}}"
        num = rf"{lhs} \;\approx\; \mathcal{{N}}\!\left({self.mean:.6g},\; {self.var:.6g}\right)"
        tau = rf"\tau = d/n = {self.tau:.4g}"
        gen = (rf"\mathcal{{N}}\!\left(d\ln q + \tau M,\; \tau V\right),\quad q = {self.q:.6g},"
               rf"\ M = {self.M:.6g},\ V = {self.V:.6g}")
        exact = rf", \quad {tau};\ \text{{exactly}}\ {lhs} \overset{{d}}{{=}} "
        if self.order_used == "exact" and s.kind == "mlp":
            y = r"\chi^2_{K_l}"
            if s.alpha:
                y += rf"+{s.alpha**2:.6g}\,\chi^2_{{n-K_l}}"
            law = (rf"\sum_{{l=1}}^{{d}}\ln\!\Big(\tfrac{{{s.c:.6g}}}{{n}}\big({y}\big)\Big),"
                   r"\ K_l\sim\mathrm{Bin}(n,\tfrac12)")
            return num + exact + law
        if self.order_used == "exact" and s.kind == "balanced":
            law = (rf"\sum_{{l=1}}^{{d}}\ln\!\Big(\tfrac{{g}}{{n}}\chi'^2_{{n}}(n/g)\Big),"
                   rf"\ g = {s.c / 2:.6g}")
            return num + exact + law
        return rf"{num}, \quad {tau};\ {lhs} \approx {gen}"

    def summary(self) -> str:
        lines = [
            f"{_NAMES[self.spec.kind]} (c={self.spec.c:g}"
            + (f", alpha={self.spec.alpha:g}" if self.spec.alpha else "")
            + f"), depth {self.depth}, width {self.width}, tau={self.tau:.4g}, "
            f"order {self.order_used}",
            f"  ln(|x^d|^2/|x^0|^2) ~ N({self.mean:.6g}, {self.var:.6g});  "
            f"d ln q = {self.log_gain:.6g} ({self.gain_source})",
            f"  M = {self.M:.6g}, V = {self.V:.6g}, kurtosis 3e^Var = {self.kurtosis:.6g}",
        ]
        if self.hypoactivation is not None:
            lines.append(f"  hypoactivation {self.hypoactivation:.4g}, lag-1 {self.lag1:.4g}")
        return "\n".join(lines)
