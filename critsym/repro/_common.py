"""Shared helpers of the reproductions: plotting setup, fits, printing."""

from __future__ import annotations

import math

import numpy as np

from ..stats import mean_se


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fit_slope(x, y, w=None):
    """Weighted least-squares slope of y on x, with its standard error."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.ones_like(x) if w is None else np.asarray(w, float)
    X = np.c_[np.ones_like(x), x]
    W = np.diag(w)
    cov = np.linalg.inv(X.T @ W @ X)
    beta = cov @ X.T @ W @ y
    return float(beta[1]), float(math.sqrt(cov[1, 1])), float(beta[0])


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
