r"""The tidy table of a sweep: one row per (architecture, grid point, width, layer).

Columns: ``arch``, one column per hyperparameter (grid first, then the fixed ones; NaN where
an architecture does not have it), ``width``, ``layer``, ``n_nets``, and for each quantity
X ∈ {K, J, c} the Monte Carlo mean ``X``, its standard error ``X_se`` (std/√n over networks)
and the mean-field prediction ``X_theory`` from the same K^0 and c^0 (:meth:`Theory.run`; for
J^{l0,l}: J^{0,l}/J^{0,l0}).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SimulationError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def check_output(path: str | os.PathLike, overwrite: bool = True) -> Path:
    """``path`` as a Path after checking, before any computing, that a table can be written
    there: a .parquet/.pq or .csv name, an existing writable folder, pyarrow for Parquet."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise SimulationError(f"output {str(p)!r} must end in .parquet or .csv")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise SimulationError(f"output folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise SimulationError(f"output folder {str(folder)!r} is not writable")
    if p.exists() and (p.is_dir() or not overwrite):
        raise SimulationError(f"output {str(p)!r} already exists")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SimulationError("writing Parquet needs pyarrow (pip install "
                                  "'critsym[sweep]'); or write .csv") from None
    return p


def write_table(table, path: str | os.PathLike) -> Path:
    p = check_output(path)
    if FORMATS[p.suffix.lower()] == "parquet":
        table.to_parquet(p, index=False)
    else:
        table.to_csv(p, index=False, float_format="%.17g")
    return p


def read_table(path: str | os.PathLike):
    """A table written by :func:`write_table` (or ``Study.save``)."""
    import pandas as pd

    p = Path(path)
    if FORMATS.get(p.suffix.lower()) == "parquet":
        return pd.read_parquet(p)
    return pd.read_csv(p)


def theory_columns(theory, res, hp: dict) -> dict[str, np.ndarray]:
    """``X_theory`` per layer for one merged result (K^0, c^0 and l0 of the simulation)."""
    run = theory.run(res.depth, K0=res.K0, c0=res.c0, **hp)
    out = {"K_theory": np.asarray(run.K, float)}
    J = np.full(res.depth + 1, np.nan)
    J[res.l0:] = np.asarray(run.J_from(res.l0), float)
    out["J_theory"] = J
    if res.c0 is not None:
        out["c_theory"] = np.asarray(run.c, float)
    return out


def rows_for(arch_name: str, point: dict, grid_names: list[str], res, theory_cols) -> dict:
    """Columns (name → array over layers) of one task's rows."""
    L = res.depth + 1
    cols: dict[str, object] = {"arch": np.array([arch_name] * L, dtype=object)}
    for k in grid_names:
        cols[k] = np.full(L, res.hp.get(k, point.get(k, np.nan)), dtype=float)
    cols["width"] = np.full(L, res.width, dtype=np.int64)
    cols["layer"] = np.arange(L, dtype=np.int64)
    cols["n_nets"] = np.full(L, res.n_nets, dtype=np.int64)
    for q in ("K", "J", "c"):
        m = getattr(res, q)
        if m is None:
            continue
        cols[q] = np.asarray(m, float)
        cols[q + "_se"] = np.asarray(getattr(res, q + "_se"), float)
        if theory_cols is not None:
            cols[q + "_theory"] = theory_cols[q + "_theory"]
    return cols


def build_table(tasks: list[tuple], grid_names: list[str]):
    """One DataFrame from ``tasks`` = [(arch_name, point dict, merged result, theory columns or
    None)] in order; the fixed hyperparameters get columns after the grid's."""
    import pandas as pd

    fixed = sorted({k for _, _, res, _ in tasks for k in res.hp} - set(grid_names))
    grid_names = list(grid_names) + fixed
    frames = []
    for name, point, res, th in tasks:
        frames.append(pd.DataFrame(rows_for(name, point, grid_names, res, th)))
    if not frames:
        raise SimulationError("the sweep produced no rows")
    return pd.concat(frames, ignore_index=True)
