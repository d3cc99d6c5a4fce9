r"""A measured phase diagram: the one-block APJN of real networks over a σ_w × σ_b grid.

At every grid point, ``n_nets`` networks of width ``width`` run ``burn_in`` blocks (so that the
state approaches the network's own fixed point) and one more; the measured one-block APJN is

    χ̂ = J^{l0,l0+1} = (1/N) ‖∂h^{l0+1}/∂h^{l0}‖_F²,   l0 = ``burn_in``,

which at the fixed point is the theory's χ_J*.  The figure shows log χ̂ (red: chaotic, blue:
ordered) with three lines: the measured χ̂ = 1 contour, the mean-field prediction of the same
observable (J^{l0,l0+1} = 1 from :meth:`Theory.run`), and the theory's critical line χ_J* = 1
(:func:`critsym.critical_line`).  Where the theory holds the three coincide (up to the
finite burn-in); where it is known to miss (the Mixer at μ < 1) the measured line departs.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field

import numpy as np

from ..errors import SimulationError
from .study import Study, sweep


@dataclass(frozen=True, eq=False)
class MeasuredPhase:
    """χ̂ (measured one-block APJN) and its SE on the grid, rows = ``sigma_b``, columns =
    ``sigma_w``; ``chi_theory`` the mean-field J^{l0,l0+1} from the same input."""

    arch: object = field(repr=False)
    sigma_w: np.ndarray = field(repr=False)
    sigma_b: np.ndarray = field(repr=False)
    chi: np.ndarray = field(repr=False)
    chi_se: np.ndarray = field(repr=False)
    chi_theory: np.ndarray = field(repr=False)
    width: int
    n_nets: int
    burn_in: int
    hp: dict
    study: Study = field(repr=False)

    def critical_line(self):
        """The theory's critical line χ_J* = 1: σ_w* for each σ_b of the grid (NaN where
        none lies in the grid's σ_w range)."""
        from ..criticality import critical_line
        from ..derive import derive

        return critical_line(derive(self.arch), along="sigma_b", values=self.sigma_b,
                             solve_for="sigma_w",
                             bracket=(float(self.sigma_w.min()), float(self.sigma_w.max())),
                             on_missing="nan", **self.hp)

    def plot(self, ax=None, out: str | os.PathLike | None = None, title: str | None = None):
        """The measured log χ̂ with the measured, the same-depth theory and the critical
        lines; saved to ``out`` when given.  Returns the figure."""
        import matplotlib

        if out is not None and ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        fig, ax = (plt.subplots(figsize=(6.2, 4.6)) if ax is None else (ax.figure, ax))
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = np.log(self.chi)
        fin = np.abs(Z[np.isfinite(Z)])
        lim = float(np.percentile(fin, 95)) if fin.size else 1.0
        im = ax.pcolormesh(self.sigma_w, self.sigma_b, Z, shading="auto", cmap="RdBu_r",
                           vmin=-(lim or 1.0), vmax=lim or 1.0)
        fig.colorbar(im, ax=ax, label=r"measured $\log \hat\chi = \log J^{l_0,l_0+1}$")
        handles = []
        if np.nanmin(Z) < 0 < np.nanmax(Z):
            ax.contour(self.sigma_w, self.sigma_b, Z, levels=[0.0], colors="#1a9e1a",
                       linestyles="--", linewidths=2, zorder=4)
            handles.append(Line2D([], [], color="#1a9e1a", ls="--", lw=2,
                                  label=r"measured $\hat\chi = 1$"))
        with np.errstate(divide="ignore", invalid="ignore"):
            T = np.log(self.chi_theory)
        if np.nanmin(T) < 0 < np.nanmax(T):
            ax.contour(self.sigma_w, self.sigma_b, T, levels=[0.0], colors="k",
                       linestyles=":", linewidths=1.5)
            handles.append(Line2D([], [], color="k", ls=":", lw=1.5,
                                  label=rf"theory $J^{{{self.burn_in},{self.burn_in + 1}}} = 1$"))
        cl = self.critical_line()
        if np.any(np.isfinite(cl.y)):
            ax.plot(cl.y, cl.x, "k-", lw=1.5)
            handles.append(Line2D([], [], color="k", lw=1.5,
                                  label=r"theory critical line $\chi_J^* = 1$"))
        if handles:
            leg = ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.8)
            leg.get_frame().set_facecolor("0.85")
        ax.set_xlabel(r"$\sigma_w$")
        ax.set_ylabel(r"$\sigma_b$")
        extra = ", ".join(f"{k}={v:g}" for k, v in self.hp.items())
        title = title or (f"{self.arch!r}{' (' + extra + ')' if extra else ''}: width "
                          f"{self.width}, {self.n_nets} networks, l0 = {self.burn_in}")
        ax.set_title("\n".join(textwrap.wrap(title, 72)), fontsize=8)
        fig.tight_layout()
        if out is not None:
            fig.savefig(out, dpi=130)
        return fig


def measure_phase(arch, sigma_w, sigma_b, *, width: int = 256, n_nets: int = 16,
                  burn_in: int = 8, in_shape: tuple | None = None, dtype: str = "float32",
                  n_probes: int = 4, seed: int = 0, backend: str = "serial",
                  shards: int = 1, workers: int | None = None, address: str | None = None,
                  progress: bool | None = None, out_table: str | os.PathLike | None = None,
                  **fixed: float) -> MeasuredPhase:
    """Measure χ̂ = J^{l0,l0+1} (l0 = ``burn_in``) on the grid ``sigma_w`` × ``sigma_b`` with
    :func:`critsym.sweep` (one input per network, K^0 = 1); other hyperparameters (``mu``) as
    keyword arguments."""
    from ..ops.base import as_op

    sw = np.asarray(sigma_w, dtype=float)
    sb = np.asarray(sigma_b, dtype=float)
    if sw.ndim != 1 or sb.ndim != 1 or sw.size < 2 or sb.size < 2:
        raise SimulationError("sigma_w and sigma_b must be 1-D grids of at least 2 values")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise SimulationError(f"burn_in must be an integer >= 0, got {burn_in!r}")
    arch = as_op(arch)
    st = sweep(arch, grid={"sigma_w": list(sw), "sigma_b": list(sb)}, widths=(width,),
               depth=burn_in + 1, n_nets=n_nets, seed=seed, backend=backend, shards=shards,
               workers=workers, address=address, n_probes=n_probes, c0=None, l0=burn_in,
               dtype=dtype, in_shape=in_shape, progress=progress, out=out_table, **fixed)
    t = st.table[st.table.layer == burn_in + 1]
    shape = (sb.size, sw.size)

    def grid(col):
        g = t.pivot_table(index="sigma_b", columns="sigma_w", values=col, aggfunc="first")
        return g.reindex(index=sb, columns=sw).to_numpy(float).reshape(shape)

    return MeasuredPhase(arch, sw, sb, grid("J"), grid("J_se"), grid("J_theory"), width,
                         n_nets, burn_in, {k: float(v) for k, v in fixed.items()}, st)
