"""Figure: RMS of a quantity vs width (log-log) with the fitted and the predicted slopes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from critsym.parameterization.torch_model import OneStepResult


def plot_one_step(results: list[OneStepResult] | OneStepResult, path: str | Path,
                  quantity: str = "delta_h", layer: int = -1) -> Path:
    """Write a PNG of the geometric-mean RMS of ``quantity`` at ``layer`` against width for each
    result, with its fitted exponent and the calculus' prediction in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(results, OneStepResult):
        results = [results]
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for i, r in enumerate(results):
        vals = r.values[quantity][:, :, layer]
        m = np.array(r.widths, float)
        gm = np.exp(np.log(vals).mean(axis=0))
        s, se = r.slopes[quantity][layer]
        pred = r.predicted[quantity][layer]
        ax.loglog(m, gm, "o-", color=f"C{i}",
                  label=f"{r.param.name}: {s:+.2f}$\\pm${se:.2f} (theory {pred:+.2f})")
    ax.set_xlabel("width m")
    ax.set_ylabel(f"RMS {quantity} (layer {layer})")
    ax.set_title(f"one SGD step: width exponent of {quantity}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
