r"""Phase diagrams: χ_J*, ξ_J = −1/log χ_J* and K* over a 2-D hyperparameter grid, and a figure.

One vectorised :func:`~critsym.criticality.fixed_point.fixed_point` call evaluates the whole
grid.  The figure is a heatmap of log χ_J* (ordered < 0 < chaotic) or of ξ_J, with the critical
line (χ_J* = 1, :func:`~critsym.criticality.critical.critical_line`) overlaid.

Command line (one phase diagram in one command)::

    python -m critsym.criticality --act tanh --out phase.png
    python -m critsym.criticality --act relu --layernorm pre --mu 0.9 --out ln.pdf
    python -m critsym.criticality --block mixer --act gelu --mu 0.5 --n 32 --out mixer.png

(``--block mixer``: an MLP-Mixer block, :func:`critsym.mixer_block`, whose state (K, O_T) is
solved by :mod:`critsym.criticality.state_fixed_point`; its nested Δ_T integral makes a grid
point cost ~1 ms, so keep ``--n`` ≲ 64.)
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError
from .critical import critical_line
from .fixed_point import classify_phase, depth_scale, fixed_point


@dataclass(frozen=True)
class PhaseGrid:
    """Grid values, shape (len(y_values), len(x_values)) (rows: y)."""

    x_name: str
    y_name: str
    x: np.ndarray
    y: np.ndarray
    K_star: np.ndarray
    chi_star: np.ndarray
    status: np.ndarray

    @property
    def xi_J(self) -> np.ndarray:
        return depth_scale(self.chi_star)

    @property
    def phase(self) -> np.ndarray:
        return classify_phase(self.chi_star)


def phase_grid(theory, x: str = "sigma_w", x_values=None, y: str = "sigma_b", y_values=None, *,
               K0: object = 1.0, **hp) -> PhaseGrid:
    """χ_J*, ξ_J and K* on the grid ``x_values`` × ``y_values`` (other hyperparameters fixed)."""
    if x == y:
        raise HyperparameterError("x and y must be two different hyperparameters")
    xv = np.linspace(0.1, 3.0, 256) if x_values is None else np.asarray(x_values, float)
    yv = np.linspace(0.0, 1.5, 256) if y_values is None else np.asarray(y_values, float)
    if xv.ndim != 1 or yv.ndim != 1:
        raise HyperparameterError("x_values and y_values must be 1-D sequences of numbers")
    X, Y = np.meshgrid(xv, yv)
    fp = fixed_point(theory, K0=K0, **{**hp, x: X, y: Y})
    return PhaseGrid(x, y, xv, yv, np.asarray(fp.K_star), np.asarray(fp.chi_star),
                     np.asarray(fp.status))


def plot_phase(theory, grid: PhaseGrid, out: str | None = None, *, quantity: str = "log_chi",
               line: bool = True, K0: object = 1.0, title: str | None = None, **hp):
    """Heatmap of ``quantity`` ("log_chi", "xi" or "K") with the critical line; saved to ``out``
    (PNG/PDF by extension) when given.  Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if quantity == "log_chi":
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = np.log(grid.chi_star)
        fin = np.abs(Z[np.isfinite(Z)])
        lim = float(np.percentile(fin, 90)) if fin.size else 1.0
        lim = lim if lim > 0 else 1.0
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim)
        label = r"$\log\chi_J^*$"
    elif quantity == "xi":
        with np.errstate(divide="ignore"):
            Z = np.log10(np.abs(grid.xi_J))
        kw = dict(cmap="viridis")
        label = r"$\log_{10}|\xi_J|$"
    elif quantity == "K":
        with np.errstate(divide="ignore"):
            Z = np.log10(np.where(np.isfinite(grid.K_star), grid.K_star, np.nan))
        kw = dict(cmap="magma")
        label = r"$\log_{10} K^*$"
    else:
        raise HyperparameterError(f"quantity must be 'log_chi', 'xi' or 'K', got {quantity!r}")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    im = ax.pcolormesh(grid.x, grid.y, Z, shading="auto", **kw)
    fig.colorbar(im, ax=ax, label=label)
    if line:
        cl = critical_line(theory, along=grid.y_name, values=grid.y, solve_for=grid.x_name,
                           bracket=(float(grid.x.min()), float(grid.x.max())), K0=K0,
                           on_missing="nan", **hp)
        ax.plot(cl.y, cl.x, "k-", lw=1.5, label=r"critical: $\chi_J^*=1$")
        if np.any(np.isfinite(cl.y)):
            ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel(grid.x_name)
    ax.set_ylabel(grid.y_name)
    ax.set_title(title or "\n".join(textwrap.wrap(repr(theory.arch), 80)), fontsize=8)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=120)
    return fig


def main(argv=None) -> int:
    """``python -m critsym.criticality`` (the ``critsym phase`` subcommand)."""
    from ..cli import run_subcommand

    return run_subcommand("phase", prog="python -m critsym.criticality", argv=argv)
