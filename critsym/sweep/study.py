r"""``critsym.sweep``: Monte Carlo of real networks over architectures × grid × widths, sharded
over a backend, merged exactly, with the theory beside every number.

    study = cs.sweep(cs.mlp_block("tanh"), grid={"sigma_w": [1.0, 1.3], "sigma_b": [0.1]},
                     widths=(64, 128), depth=6, n_nets=32, backend="local", shards=4)
    study.table          # one row per (arch, point, width, layer): mean, SE, theory
    study.validate()     # the 1/N extrapolation and z-scores of critsym.validate, per point

The numbers do not depend on the backend or on the number of shards per task: network i of a
task draws everything from generators seeded by (seed, i), and each shard repeats the chunks of
the serial run (see :mod:`critsym.sweep.plan`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SimulationError
from ..torch.simulate import SimulationResult
from ..torch.validate import QUANTITIES, score
from .backends import execute, run_shard, run_shard_with_theory
from .plan import Plan, make_plan
from .table import build_table, check_output, write_table


@dataclass(frozen=True, eq=False)
class Study:
    """A finished sweep: ``table`` (pandas DataFrame, see :mod:`critsym.sweep.table`), the
    merged :class:`~critsym.SimulationResult` of every task and the plan."""

    plan: Plan = field(repr=False)
    table: object = field(repr=False)
    results: dict = field(repr=False)
    backend: str
    seconds: float

    def __repr__(self) -> str:
        return (f"Study({len(self.plan.archs)} arch, {self.plan.n_tasks} tasks, "
                f"{len(self.plan.shards)} shards, {len(self.table)} rows, backend="
                f"{self.backend!r}, {self.seconds:.1f} s)")

    @property
    def grid_names(self) -> list[str]:
        return list(self.plan.grid)

    def validate(self, z_max: float = 4.0, quantities: Sequence[str] = QUANTITIES):
        """Per (arch, point, quantity, layer): the theory (from the first width's K^0, c^0),
        the 1/N-extrapolated Monte Carlo value ± SE over the widths, its slope and z, by the
        rule of :func:`critsym.validate` (:func:`critsym.torch.validate.score`); a column
        ``passed`` = |z| ≤ ``z_max`` (None where not scored)."""
        import pandas as pd

        t = self.table
        keys = ["arch", *self.grid_names]
        rows = []
        for key, g in t.groupby(keys, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            g = g.sort_values(["width", "layer"])
            widths = sorted(g["width"].unique())
            for q in quantities:
                if q not in g or q + "_theory" not in g:
                    continue
                for layer, gl in g.groupby("layer", sort=True):
                    gl = gl.set_index("width").loc[widths]
                    th = float(gl[q + "_theory"].iloc[0])
                    mc = gl[q].to_numpy(float)
                    if np.isnan(mc).any():  # J below l0
                        continue
                    r = score(q, int(layer), th, widths, mc, gl[q + "_se"].to_numpy(float))
                    del r["mc"], r["mc_se"]
                    r["passed"] = None if r["z"] is None else bool(abs(r["z"]) <= z_max)
                    rows.append(dict(zip(keys, key)) | r)
        return pd.DataFrame(rows)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table to ``path`` (.parquet or .csv)."""
        return write_table(self.table, path)


def _merge(plan: Plan, outputs: list) -> tuple[dict, dict]:
    """Merged result and theory columns (from the task's first shard) per task."""
    by_task: dict[tuple, list] = {}
    theory: dict[tuple, dict | None] = {}
    for shard, (res, cols) in zip(plan.shards, outputs, strict=True):
        by_task.setdefault(shard.task, []).append(res)
        if shard.networks.start == 0:
            theory[shard.task] = cols
    return {task: SimulationResult.concat(parts) for task, parts in by_task.items()}, theory


def _without_theory(shard):
    return run_shard(shard), None


def sweep(arch_or_archs, grid: Mapping | None = None, *, widths: int | Sequence[int] = (64,),
          depth: int = 10, n_nets: int = 32, seed: int = 0, backend: str = "serial",
          shards: int = 1, workers: int | None = None, address: str | None = None,
          n_probes: int = 4, K0: float = 1.0, c0: float | None = 0.5, l0: int = 0,
          dtype: str = "float64", device: object = None, in_shape: tuple | None = None,
          theory: bool = True, threads: int | None = 1, retries: int = 2,
          progress: bool | None = None, checkpoint: str | os.PathLike | None = None,
          out: str | os.PathLike | None = None, gpus_per_shard: float = 1.0,
          **fixed: float) -> Study:
    r"""Simulate every architecture at every grid point and width, ``n_nets`` networks each.

    ``arch_or_archs``: one architecture, a list, or a dict ``{name: arch}`` (names label the
    table).  ``grid``: ``{hyperparameter: values}``, its Cartesian product; other
    hyperparameters as keyword arguments (``mu=0.5``).  ``shards``: network ranges per task.
    ``backend``: "serial", "local" (``workers`` processes) or "ray" (``address`` of a cluster,
    else the connected or a new local instance).  Each shard runs :func:`critsym.simulate`
    (``n_probes``, ``K0``, ``c0``, ``l0``, ``dtype``, ``device``, ``in_shape``) with ``threads``
    torch threads; a failed shard is retried ``retries`` times, finished ones are kept (and
    stored in ``checkpoint``, a folder, when given).  ``theory``: also the mean-field columns,
    computed by the first shard of each task on its worker.  ``out``: write the table there
    (.parquet or .csv; checked before any computing).  Returns a :class:`Study`.
    """
    t0 = time.perf_counter()
    if out is not None:
        check_output(out)
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise SimulationError("critsym.sweep needs pandas: pip install 'critsym[sweep]'") \
            from None
    options = dict(n_probes=n_probes, K0=K0, c0=c0, l0=l0, dtype=dtype, device=device)
    if in_shape is not None:
        options["in_shape"] = tuple(in_shape)
    plan = make_plan(arch_or_archs, grid, widths, depth, n_nets, seed, shards, fixed, options,
                     threads)
    fn = run_shard_with_theory if theory else _without_theory
    outputs = execute(plan.shards, backend, workers=workers, address=address, retries=retries,
                      progress=progress, checkpoint=checkpoint, gpus_per_shard=gpus_per_shard,
                      device=device, fn=fn)
    merged, theory_cols = _merge(plan, outputs)
    tasks = [(name, dict(point), merged[(name, point, w)],
              theory_cols[(name, point, w)] if theory else None)
             for (name, point, w) in merged]
    table = build_table(tasks, list(plan.grid))
    study = Study(plan, table, merged, backend, time.perf_counter() - t0)
    if out is not None:
        study.save(out)
    return study
