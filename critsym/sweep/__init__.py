"""Monte Carlo sweeps over architectures × hyperparameter grids × widths, sharded over a
backend ("serial", "local" processes, "ray"), merged exactly into one tidy table.

The package is callable: ``critsym.sweep(arch, grid=..., ...)`` is :func:`sweep`.
"""

import sys
import types

from .backends import BACKENDS, ShardFailed, execute, run_shard, run_shard_with_theory
from .plan import Plan, Shard, make_plan
from .study import Study, sweep
from .table import check_output, read_table

__all__ = [
    "BACKENDS", "Plan", "Shard", "ShardFailed", "Study", "check_output", "execute",
    "make_plan", "read_table", "run_shard", "run_shard_with_theory", "sweep",
]


class _CallableModule(types.ModuleType):
    """``critsym.sweep(...)`` calls :func:`critsym.sweep.sweep`."""

    def __call__(self, *args, **kwargs) -> Study:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
