r"""Where the shards of a sweep run: in this process, in local processes, or as Ray tasks.

Every backend runs the same function, :func:`run_shard`, on the same shards, so the merged
results do not depend on the backend.  The driver loop (:func:`execute`) is shared: it submits
the shards, shows a progress bar, resubmits a failed shard up to ``retries`` times while keeping
the finished ones, and (with ``checkpoint=dir``) stores each finished shard so that a rerun of
the same sweep only computes what is missing.

* ``"serial"`` — one shard after another in this process;
* ``"local"`` — a :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
  method (safe with torch and CUDA), ``workers`` processes;
* ``"ray"`` — Ray tasks (``pip install critsym[ray]``) on the Ray instance this process is
  connected to, a new local one (``workers`` CPUs), or the cluster at ``address``; with GPUs in
  the cluster each task asks for ``gpus_per_shard`` of one (``num_gpus``) and runs on CUDA.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

from ..errors import SimulationError
from .plan import Shard

log = logging.getLogger("critsym.sweep")

BACKENDS = ("serial", "local", "ray")


class ShardFailed(SimulationError):
    """A shard failed more often than allowed; ``finished`` holds the results that did not."""

    def __init__(self, msg: str, finished: dict):
        super().__init__(msg)
        self.finished = finished


def run_shard(shard: Shard):
    """One :func:`critsym.simulate` call for ``shard`` with ``shard.threads`` torch threads (the
    same in every backend, so that the numbers are too)."""
    import torch

    from ..torch.simulate import simulate

    old = torch.get_num_threads()
    if shard.threads:
        torch.set_num_threads(shard.threads)
    try:
        return simulate(shard.arch, shard.width, shard.depth, networks=shard.networks,
                        seed=shard.seed, progress=False, **dict(shard.options), **shard.hp)
    finally:
        torch.set_num_threads(old)


_THEORIES: dict = {}


def run_shard_with_theory(shard: Shard):
    """(:func:`run_shard` result, its task's ``X_theory`` columns or None): the first shard of
    each task (networks from 0) also runs the theory, so the driver does not; each process
    derives an architecture once."""
    from .table import theory_columns

    res = run_shard(shard)
    if shard.networks.start != 0:
        return res, None
    theory = _THEORIES.get(shard.arch)
    if theory is None:
        from ..derive import derive

        theory = _THEORIES[shard.arch] = derive(shard.arch)
    return res, theory_columns(theory, res, dict(res.hp))


def _call(fn: Callable, shard: Shard):
    """``fn(shard)``: the Ray task (``fn`` may be any picklable callable)."""
    return fn(shard)


def _worker_init() -> None:
    """Quiet worker processes: one OpenMP thread unless ``run_shard`` asks for more."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class _Serial:
    def __init__(self, fn: Callable):
        self.fn, self.queue = fn, []

    def submit(self, i: int, shard: Shard) -> None:
        self.queue.append((i, shard))

    def busy(self) -> bool:
        return bool(self.queue)

    def next_done(self):
        i, shard = self.queue.pop(0)
        try:
            return i, self.fn(shard)
        except Exception as e:  # noqa: BLE001 - handed to the retry loop
            return i, e

    def close(self) -> None:
        pass


class _Local:
    def __init__(self, fn: Callable, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.fn, self.workers, self.futures = fn, workers, {}
        self._make = lambda: ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                 initializer=_worker_init)
        self.pool = self._make()

    def submit(self, i: int, shard: Shard) -> None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            fut = self.pool.submit(self.fn, shard)
        except BrokenProcessPool:  # a worker died: start a new pool, keep what finished
            self.pool.shutdown(cancel_futures=True)
            self.pool = self._make()
            fut = self.pool.submit(self.fn, shard)
        self.futures[fut] = i

    def busy(self) -> bool:
        return bool(self.futures)

    def next_done(self):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        fut = next(iter(done))
        i = self.futures.pop(fut)
        e = fut.exception()
        return i, (e if e is not None else fut.result())

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class _Ray:
    def __init__(self, fn: Callable, workers: int | None, address: str | None,
                 gpus_per_shard: float, device: object):
        try:
            import ray
        except ImportError:
            raise SimulationError("backend='ray' needs Ray: pip install 'critsym[ray]'") from None
        self.ray, self.refs = ray, {}
        self.started = not ray.is_initialized()
        if self.started:
            kw = dict(include_dashboard=False, logging_level=logging.WARNING)
            if address is None and workers:
                kw["num_cpus"] = workers
            ray.init(address=address, **kw)
        gpus = ray.cluster_resources().get("GPU", 0)
        num_gpus = gpus_per_shard if gpus > 0 and str(device or "cuda") != "cpu" else 0
        self.fn = fn
        self.task = ray.remote(_call).options(num_cpus=1, num_gpus=num_gpus, max_retries=0)

    def submit(self, i: int, shard: Shard) -> None:
        self.refs[self.task.remote(self.fn, shard)] = i

    def busy(self) -> bool:
        return bool(self.refs)

    def next_done(self):
        (ref,), _ = self.ray.wait(list(self.refs), num_returns=1)
        i = self.refs.pop(ref)
        try:
            return i, self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - task errors and lost workers alike
            return i, e

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


def _checkpoint_file(folder: Path, shard: Shard) -> Path:
    h = hashlib.sha256(repr((shard.arch_name, shard.arch, shard.point, shard.fixed,
                             shard.width, shard.networks, shard.depth, shard.seed, shard.options,
                             shard.threads)).encode()).hexdigest()[:20]
    return folder / f"shard-{h}.pkl"


def execute(shards: list[Shard], backend: str = "serial", *, workers: int | None = None,
            address: str | None = None, retries: int = 2, progress: bool | None = None,
            checkpoint: str | os.PathLike | None = None, gpus_per_shard: float = 1.0,
            device: object = None, fn: Callable = run_shard) -> list:
    """The result of ``fn(shard)`` for every shard, in order (see module doc)."""
    from ..torch.simulate import _Progress

    if backend not in BACKENDS:
        raise SimulationError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SimulationError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise SimulationError(f"workers must be None or an integer >= 1, got {workers!r}")
    done: dict[int, object] = {}
    folder = None
    if checkpoint is not None:
        folder = Path(checkpoint)
        folder.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(shards):
            f = _checkpoint_file(folder, s)
            if f.exists():
                with open(f, "rb") as fh:
                    done[i] = pickle.load(fh)
    todo = [i for i in range(len(shards)) if i not in done]
    bar = _Progress(len(shards), progress, f"sweep ({backend})", unit="shard")
    bar.update(len(done))
    if not todo:
        bar.close()
        return [done[i] for i in range(len(shards))]
    if backend == "serial":
        ex = _Serial(fn)
    elif backend == "local":
        ex = _Local(fn, workers or os.cpu_count() or 1)
    else:
        ex = _Ray(fn, workers, address, gpus_per_shard, device)
    failures: dict[int, int] = {}
    try:
        for i in todo:
            ex.submit(i, shards[i])
        while ex.busy():
            i, out = ex.next_done()
            if isinstance(out, BaseException):
                failures[i] = failures.get(i, 0) + 1
                if failures[i] > retries:
                    raise ShardFailed(
                        f"shard {shards[i].key} failed {failures[i]} times, last with "
                        f"{type(out).__name__}: {out}; {len(done)} of {len(shards)} shards "
                        "finished (kept in .finished" + (f" and in {folder}" if folder else "")
                        + "; rerun with the same checkpoint to compute only the rest)", done)
                log.warning("shard %s failed (%s: %s); retrying", shards[i].key,
                            type(out).__name__, out)
                ex.submit(i, shards[i])
                continue
            done[i] = out
            if folder is not None:
                tmp = _checkpoint_file(folder, shards[i]).with_suffix(".tmp")
                with open(tmp, "wb") as fh:
                    pickle.dump(out, fh)
                tmp.replace(tmp.with_suffix(".pkl"))
            bar.update(1)
    finally:
        ex.close()
        bar.close()
    return [done[i] for i in range(len(shards))]
