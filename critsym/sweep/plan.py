r"""The plan of a sweep: architectures × hyperparameter grid × widths × network shards.

A *task* is one (architecture, grid point, width): ``n_nets`` networks of one seed.  Its
networks are cut into ``shards`` ranges of equal size (the last may be shorter); each shard is
one call of :func:`critsym.simulate` with ``networks=range(start, stop)`` and
``chunk_size`` = the shard size, so the shards repeat the chunks of the serial run and their
merge (:meth:`~critsym.SimulationResult.concat`) equals it bit for bit.  Width i uses seed
``seed + 17 i``, as :func:`critsym.validate` does, so that the widths are independent.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import SimulationError
from ..ops.base import Op, as_op

SEED_STRIDE = 17  # width i runs with seed + 17 i (the seeds of critsym.validate)


@dataclass(frozen=True)
class Shard:
    """One unit of work: networks ``networks`` of task (``arch_name``, ``point``, ``width``)."""

    arch_name: str
    arch: Op
    point: tuple[tuple[str, float], ...]
    fixed: tuple[tuple[str, float], ...]
    width: int
    width_index: int
    depth: int
    networks: range
    seed: int
    options: tuple[tuple[str, object], ...] = ()
    threads: int | None = 1

    @property
    def task(self) -> tuple:
        """The task this shard belongs to (shards of one task merge into one result)."""
        return (self.arch_name, self.point, self.width)

    @property
    def key(self) -> str:
        """A short stable name: arch, point, width and network range."""
        pt = ",".join(f"{k}={v:.6g}" for k, v in self.point)
        return (f"{self.arch_name}|{pt}|N={self.width}|nets={self.networks.start}-"
                f"{self.networks.stop}")

    @property
    def hp(self) -> dict[str, float]:
        return dict(self.fixed) | dict(self.point)


@dataclass(frozen=True)
class Plan:
    """Every shard of a sweep, in a fixed order, and the grid it came from."""

    archs: dict[str, Op]
    grid: dict[str, tuple[float, ...]]
    widths: tuple[int, ...]
    shards: list[Shard] = field(repr=False)

    @property
    def n_tasks(self) -> int:
        return len({s.task for s in self.shards})

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in self.grid.items()}
        return (f"Plan({len(self.archs)} arch × grid {sizes} × widths {self.widths}: "
                f"{self.n_tasks} tasks, {len(self.shards)} shards)")


def arch_names(arch_or_archs) -> dict[str, Op]:
    """``{name: Op}`` from one architecture, a sequence of them (named by ``repr``) or a dict."""
    if isinstance(arch_or_archs, Mapping):
        items = list(arch_or_archs.items())
    elif isinstance(arch_or_archs, Op) or not isinstance(arch_or_archs, Sequence):
        items = [(None, arch_or_archs)]
    else:
        items = [(None, a) for a in arch_or_archs]
    if not items:
        raise SimulationError("sweep needs at least one architecture")
    out: dict[str, Op] = {}
    for name, a in items:
        op = as_op(a)
        name = repr(op) if name is None else str(name)
        if name in out:
            raise SimulationError(f"two architectures are named {name!r}; pass a dict of names")
        out[name] = op
    return out


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise SimulationError(f"hyperparameter {name} must be finite numbers, got {v!r}")
    return float(v)


def _positive_ints(values, name: str) -> tuple[int, ...]:
    vals = (values,) if isinstance(values, numbers.Integral) else tuple(values)
    if not vals or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                       for v in vals):
        raise SimulationError(f"{name} must be integers >= 1, got {values!r}")
    if len(set(vals)) != len(vals):
        raise SimulationError(f"{name} must be distinct, got {values!r}")
    return tuple(int(v) for v in vals)


def make_plan(arch_or_archs, grid: Mapping | None, widths, depth: int, n_nets: int, seed: int,
              shards: int, fixed: Mapping | None = None, options: Mapping | None = None,
              threads: int | None = 1) -> Plan:
    """The shards of a sweep (see module doc).  Each architecture runs over the grid
    hyperparameters it has (the others are left out of its points); every hyperparameter it
    needs must come from ``grid`` or ``fixed``."""
    archs = arch_names(arch_or_archs)
    grid = dict(grid or {})
    fixed = {k: _number(k, v) for k, v in (fixed or {}).items()}
    g: dict[str, tuple[float, ...]] = {}
    for k, vals in grid.items():
        vals = (vals,) if isinstance(vals, numbers.Real) else tuple(vals)
        if not vals:
            raise SimulationError(f"grid[{k!r}] is empty; give it at least one value")
        g[k] = tuple(_number(k, v) for v in vals)
        if len(set(g[k])) != len(g[k]):
            raise SimulationError(f"grid[{k!r}] repeats a value: {list(g[k])}; give each once")
    both = sorted(set(g) & set(fixed))
    if both:
        raise SimulationError(f"{both} are both in grid and fixed; give each once")
    widths = _positive_ints(widths, "widths")
    (depth,) = _positive_ints(depth, "depth")
    (n_nets,) = _positive_ints(n_nets, "n_nets")
    (shards,) = _positive_ints(shards, "shards")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise SimulationError(f"seed must be an integer, got {seed!r}")
    size = math.ceil(n_nets / min(shards, n_nets))
    cuts = list(range(0, n_nets, size)) + [n_nets]
    ranges = [range(a, b) for a, b in zip(cuts, cuts[1:])]
    opts = dict(options or {})
    opts["chunk_size"] = size
    used: set[str] = set()
    out: list[Shard] = []
    for name, arch in archs.items():
        needed = {s.name for s in arch.hyperparameters()}
        missing = sorted(needed - set(g) - set(fixed))
        if missing:
            raise SimulationError(
                f"architecture {name!r} needs values for {missing}: put them in grid= or pass "
                f"them as keyword arguments, e.g. {', '.join(f'{m}=1.0' for m in missing)}")
        axes = [k for k in g if k in needed]
        used |= set(axes) | (set(fixed) & needed)
        fx = tuple(sorted((k, v) for k, v in fixed.items() if k in needed))
        for values in itertools.product(*(g[k] for k in axes)):
            point = tuple(zip(axes, values))
            for wi, w in enumerate(widths):
                for r in ranges:
                    out.append(Shard(name, arch, point, fx, w, wi, depth, r,
                                     int(seed) + SEED_STRIDE * wi, tuple(sorted(opts.items())),
                                     threads))
    unused = sorted((set(g) | set(fixed)) - used)
    if unused:
        raise SimulationError(f"no architecture has the hyperparameters {unused}; "
                              "check the names (e.g. sigma_w, sigma_b, mu)")
    return Plan(archs, g, widths, out)
