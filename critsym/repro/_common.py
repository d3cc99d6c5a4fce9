"""Shared helpers of the reproductions: plotting setup, fits, printing."""

from __future__ import annotations

import numpy as np

from ..stats import line_fit, mean_se


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fit_slope(x, y, w=None):
    """(slope, its standard error, intercept) of y on x: weighted by w = 1/SE² (known errors)
    when given, else ordinary least squares with the residual variance
    (:func:`critsym.stats.line_fit`)."""
    sigma = None if w is None else 1.0 / np.sqrt(np.asarray(w, dtype=float))
    fit = line_fit(x, y, sigma=sigma)
    return float(fit.coef[1]), float(fit.se[1]), float(fit.coef[0])


def log_slope_nets(J_nets, layers, offset=0.0):
    """Per-network slope of log J^{0,l} against log(l + offset); mean and SE over networks."""
    xs = np.log(np.asarray(layers, float) + offset)
    slopes = [fit_slope(xs, np.log(J_nets[layers, i]))[0] for i in range(J_nets.shape[1])]
    m, se = mean_se(slopes)
    return float(m), float(se)


def show(title: str, rows: list[tuple]):
    print(f"== {title}")
    for r in rows:
        print("   " + "  ".join(str(c) for c in r))


def save_figure(fig, out: str | None) -> None:
    """Lay out, write ``out`` (when given, PNG/PDF by extension) and close the figure."""
    fig.tight_layout()
    if out:
        fig.savefig(out, dpi=120)
        print(f"wrote {out}")
    pyplot().close(fig)
