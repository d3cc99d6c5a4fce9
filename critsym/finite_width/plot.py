"""Figure: empirical log-norm histogram vs the predicted Gaussian vs the infinite-width delta."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from critsym.finite_width.result import LogNormLaw
from critsym.finite_width.simulate import LogNormSample


def plot_log_norm(sample: LogNormSample, law: LogNormLaw, path: str | Path,
                  bins: int = 60) -> Path:
    """Write a PNG: histogram of ln(|x^d|^2/|x^0|^2), N(mean, var) of ``law``, and the
    infinite-width prediction d ln q (a delta, drawn as a vertical line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    data = sample.log_norm[np.isfinite(sample.log_norm)]
    ax.hist(data, bins=bins, density=True, alpha=0.45, color="C0",
            label=f"Monte Carlo ({sample.method}, {sample.n_nets} nets)")
    lo = min(data.min(), law.mean - 4 * law.sd)
    hi = max(data.max(), law.mean + 4 * law.sd)
    x = np.linspace(lo, hi, 400)
    pdf = np.exp(-0.5 * ((x - law.mean) / law.sd) ** 2) / (law.sd * np.sqrt(2 * np.pi))
    ax.plot(x, pdf, "C3", lw=2, label=f"log-Gaussian law ({law.order_used})")
    ax.axvline(law.log_gain, color="k", ls="--", lw=1.5, label="infinite width (delta)")
    ax.set_xlabel(r"$\ln(|x^d|^2/|x^0|^2)$")
    ax.set_ylabel("density")
    ax.set_title(f"{law.spec.kind}, c={law.spec.c:g}, d={law.depth}, n={law.width}, "
                 f"d/n={law.tau:.3g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
