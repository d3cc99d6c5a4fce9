"""Monte Carlo sweeps over architectures × hyperparameter grids × widths, sharded over a
backend ("serial", "local" processes, "ray"), merged exactly into one tidy table.

The package is callable: ``critsym.sweep(arch, grid=..., ...)`` is :func:`sweep`.
"""

import importlib
import sys
import types

#: public names and the submodule that defines each; loaded on first use, so that the
#: ``critsym sweep`` command line registers without importing torch
_LAZY = {
    "BACKENDS": ".backends", "ShardFailed": ".backends", "execute": ".backends",
    "run_shard": ".backends", "run_shard_with_theory": ".backends",
    "Plan": ".plan", "Shard": ".plan", "make_plan": ".plan",
    "Study": ".study", "sweep": ".study",
    "check_output": ".table", "read_table": ".table",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _CallableModule(types.ModuleType):
    """``critsym.sweep(...)`` calls :func:`critsym.sweep.sweep`."""

    def __call__(self, *args, **kwargs):
        from .study import sweep

        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
