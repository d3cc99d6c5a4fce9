r"""Monte Carlo of real finite-width networks: K^l, J^{l0,l}, c^l with standard errors.

For each of ``n_nets`` independent networks (one :func:`~critsym.torch.build.build` stack):

* K^l   = (1/N) Σ_i (h_i^l)²            for input a,
* c^l   = h_a^l·h_b^l / (|h_a^l| |h_b^l|)  for the input pair (a, b),
* J^{l0,l} = (1/N_l) ‖∂h^l/∂h^{l0}‖_F²  for all l ≥ l0 (forward mode, one pass), estimated by
  the probe mean (1/P) Σ_p ‖J v_p‖²/N_l (Hutchinson) at input a,
* optionally J^{l0,l} for all l0 ≤ l at one chosen l (reverse mode, one backward pass).

Reported values are means over networks and standard errors std/√n_nets (ddof = 1), which
include the probe noise.  Networks are processed in chunks that fit a memory budget, cut at the
multiples of the chunk size in the network index (so a shard ``networks=range(a, b)`` with a, b
such multiples repeats the serial run's chunks exactly); an out-of-memory error halves the chunk
and is logged.  Each chunk is one streaming pass: block l's weights are drawn when the pass
reaches block l and dropped after it, so memory holds a few blocks, not ``depth``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import mean_se
from .build import (
    CritsymNet,
    build,
    check_dtype,
    check_positive_int,
    default_device,
    feature_shape,
    network_generators,
    network_range,
)
from .estimators import PROBES, make_probes, vjp_norms_folded

log = logging.getLogger("critsym.torch")

#: Deepest network simulated: every layer's statistics are kept, and the finite-width theory the
#: simulations check holds for depth ≪ width; deeper questions are for ``Theory.run``.
MAX_DEPTH = 10_000


@dataclass(frozen=True)
class SimulationResult:
    """Per-layer Monte Carlo estimates (axis 0 = layer l = 0..depth) and standard errors.

    ``J[l]`` = J^{l0,l} (NaN for l < l0); ``J_to[l0']`` = J^{l0',l_to} (reverse mode, None
    unless ``l`` was given); ``c`` is None for one input.  ``*_nets`` hold the per-network
    estimates, shape (depth+1, n_nets).
    """

    arch: Op
    width: int
    depth: int
    n_nets: int
    n_probes: int
    l0: int
    l_to: int | None
    hp: dict
    K0: float
    c0: float | None
    K_nets: np.ndarray
    J_nets: np.ndarray
    c_nets: np.ndarray | None
    J_to_nets: np.ndarray | None
    device: str
    dtype: str
    probe: str
    seconds: float
    chunks: list = field(default_factory=list)
    in_shape: tuple = ()
    first_net: int = 0
    seed: int = 0

    @property
    def networks(self) -> range:
        """The network indices of ``seed`` held here (``simulate(..., networks=...)``)."""
        return range(self.first_net, self.first_net + self.n_nets)

    @classmethod
    def concat(cls, results: Sequence[SimulationResult]) -> SimulationResult:
        """One result from shards of the same simulation (same settings and seed) whose
        ``networks`` tile one range: per-network estimates are concatenated in network order, so
        any split equals the serial run bit for bit (only ``seconds`` and ``chunks`` differ)."""
        parts = ordered_shards(results, cls, _SAME_SIM)

        def cat(name):
            arrays = [getattr(r, name) for r in parts]
            return None if arrays[0] is None else np.concatenate(arrays, axis=-1)

        first = parts[0]
        devices = sorted({r.device for r in parts})
        return replace(
            first, n_nets=sum(r.n_nets for r in parts), K_nets=cat("K_nets"),
            J_nets=cat("J_nets"), c_nets=cat("c_nets"), J_to_nets=cat("J_to_nets"),
            device=devices[0] if len(devices) == 1 else ",".join(devices),
            seconds=sum(r.seconds for r in parts), chunks=[c for r in parts for c in r.chunks])

    @property
    def layers(self) -> np.ndarray:
        return np.arange(self.depth + 1)

    @staticmethod
    def _mean_se(a: np.ndarray | None):
        return (None, None) if a is None else mean_se(a)

    @property
    def K(self) -> np.ndarray:
        return self._mean_se(self.K_nets)[0]

    @property
    def K_se(self) -> np.ndarray:
        return self._mean_se(self.K_nets)[1]

    @property
    def J(self) -> np.ndarray:
        return self._mean_se(self.J_nets)[0]

    @property
    def J_se(self) -> np.ndarray:
        return self._mean_se(self.J_nets)[1]

    @property
    def c(self) -> np.ndarray | None:
        return self._mean_se(self.c_nets)[0]

    @property
    def c_se(self) -> np.ndarray | None:
        return self._mean_se(self.c_nets)[1]

    @property
    def J_to(self) -> np.ndarray | None:
        return self._mean_se(self.J_to_nets)[0]

    @property
    def J_to_se(self) -> np.ndarray | None:
        return self._mean_se(self.J_to_nets)[1]

    def theory(self):
        """The mean-field prediction from the same K^0 (and c^0): :meth:`Theory.run`."""
        from ..derive import derive

        return derive(self.arch).run(self.depth, K0=self.K0, c0=self.c0, **self.hp)


_SAME_SIM = ("arch", "width", "depth", "n_probes", "l0", "l_to", "hp", "K0", "c0", "dtype",
             "probe", "in_shape", "seed")


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def ordered_shards(results, cls, same: Sequence[str]) -> list:
    """``results`` sorted by ``first_net``, checked to be shards of one run (equal ``same``
    fields) whose networks tile one contiguous range."""
    parts = list(results) if not isinstance(results, cls) else [results]
    if not parts or not all(isinstance(r, cls) for r in parts):
        raise SimulationError(f"concat needs a non-empty sequence of {cls.__name__} objects")
    parts.sort(key=lambda r: r.first_net)
    for r in parts[1:]:
        diff = [f for f in same if not _same(getattr(r, f), getattr(parts[0], f))]
        if diff:
            raise SimulationError(
                f"cannot merge shards of different runs: they differ in {diff}; run every "
                "shard with the same settings and seed, changing only networks=range(...)")
    for a, b in zip(parts, parts[1:]):
        end = a.first_net + a.n_nets
        if end != b.first_net:
            how = "overlap" if b.first_net < end else "leave a gap"
            raise SimulationError(f"shards must tile one range of networks: networks "
                                  f"{a.networks} and {b.networks} {how}")
    return parts


def aligned_chunks(networks: range, chunk_size: int) -> list[tuple[int, int]]:
    """``networks`` cut at the multiples of ``chunk_size`` (in the network index): the chunks a
    run processes.  A shard whose ends are such multiples gets exactly the serial run's
    chunks, hence (same device type and torch thread count) the same numbers bit for bit."""
    cuts = range((networks.start // chunk_size + 1) * chunk_size, networks.stop, chunk_size)
    edges = [networks.start, *cuts, networks.stop]
    return list(zip(edges, edges[1:]))


def make_inputs(width: int, K0: float = 1.0, c0: float | None = 0.5, seed: int = 0,
                dtype=torch.float64, generator: torch.Generator | None = None,
                in_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    r"""h^0 for inputs a (and b): shape (1 or 2, *features) with (1/N)|h_a|² = (1/N)|h_b|² = K0
    and correlation exactly c0 (random directions from ``seed``, or from ``generator``);
    features = ``in_shape`` or ``(width,)``, N their number."""
    shape = feature_shape(width, in_shape)
    width = math.prod(shape)
    if not (isinstance(K0, (int, float)) and math.isfinite(K0) and K0 > 0):
        raise SimulationError(f"K0 must be a finite number > 0, got {K0!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(int(seed) + 424242)
    z = torch.randn(2, width, generator=g, dtype=torch.float64, device=g.device)
    u = z[0] / z[0].norm()
    scale = math.sqrt(width * K0)
    if c0 is None:
        return (scale * u).reshape(1, *shape).to(dtype)
    if not (isinstance(c0, (int, float)) and -1 <= c0 <= 1):
        raise SimulationError(f"c0 must be a number in [-1, 1] (or None), got {c0!r}")
    if width < 2 and abs(c0) < 1:
        raise SimulationError("two inputs with |c0| < 1 need width >= 2")
    w = z[1] - (z[1] @ u) * u
    w = w / w.norm() if width > 1 else w
    b = c0 * u + math.sqrt(max(0.0, 1 - c0 * c0)) * w
    return (scale * torch.stack([u, b])).reshape(2, *shape).to(dtype)


def _check_inputs(inputs, shape: tuple[int, ...], dtype) -> torch.Tensor:
    try:
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float64) if not
                            isinstance(inputs, torch.Tensor) else inputs.detach().cpu())
    except (TypeError, ValueError):
        raise SimulationError(f"inputs must be an array of numbers, got {inputs!r}") from None
    x = x.to(torch.float64)
    if x.dim() == len(shape):
        x = x.unsqueeze(0)
    if x.dim() != len(shape) + 1 or x.shape[0] not in (1, 2) or tuple(x.shape[1:]) != shape:
        s = ", ".join(map(str, shape))
        raise SimulationError(
            f"inputs must be h^0 of shape ({s}) or (2, {s}) (one or two inputs with the "
            f"network's features), got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise SimulationError("inputs contain non-finite values")
    if (x.reshape(x.shape[0], -1).norm(dim=-1) == 0).any():
        raise SimulationError("an input is the zero vector; K^0 must be > 0")
    return x.to(dtype)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate" in msg or isinstance(e, MemoryError))


class _Progress:
    """A minimal progress bar on stderr (tqdm when installed)."""

    def __init__(self, total: int, enabled: bool | None, desc: str, unit: str = "net"):
        if enabled is None:
            enabled = total > 1 and sys.stderr.isatty()
        self.enabled, self.total, self.n, self.desc = enabled, total, 0, desc
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=unit)
            except ImportError:
                self.bar = None

    def update(self, k: int) -> None:
        self.n += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        w = 30
        done = int(w * self.n / max(self.total, 1))
        sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (w - done)}] {self.n}/{self.total}")
        if self.n >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _per_net_bytes(arch: Op, width: int, depth: int, dtype, n_in: int, n_probes: int,
                   hp: dict, shape: tuple[int, ...], l_to: int | None) -> int:
    """Memory per network of one streaming pass: two blocks' weights and a block's intermediate
    values for the inputs and the probe tangents (reverse mode holds blocks 0..l_to-1 and their
    activations)."""
    blk = build(arch, width, 1, n_nets=1, seed=0, dtype=torch.float32, device="cpu",
                in_shape=shape, **hp)
    n_params = sum(p.numel() for p in blk.parameters())
    n_ops = sum(1 for _ in blk.blocks[0].modules())  # intermediate tensors per block, roughly
    item = torch.empty((), dtype=dtype).element_size()
    feat = math.prod(shape)
    P = max(n_probes, 1)
    total = 2 * n_params + n_ops * feat * (n_in + 2 * P) + P * feat
    if l_to:
        total += l_to * (n_params + n_ops * feat * 2 * P)
    return int(total * item)


def simulate(arch: Op, width: int, depth: int, *, n_nets: int | None = None, n_probes: int = 4,
             inputs: object = None, K0: float = 1.0, c0: float | None = 0.5, l0: int = 0,
             l: int | None = None, seed: int = 0, device: object = None,
             dtype: object = torch.float64, probe: str = "gaussian", exact: bool = False,
             chunk_size: int | None = None, max_memory: int | None = None,
             ln_eps: float = 1e-12, progress: bool | None = None,
             in_shape: tuple[int, ...] | None = None, networks: range | None = None,
             **hp: float) -> SimulationResult:
    r"""Simulate ``n_nets`` (default 32) networks of ``depth`` blocks ``arch`` at width ``width``.

    ``networks=range(start, stop)`` instead runs networks start..stop-1 of ``seed`` (a shard):
    network i draws its weights, input and probes from generators seeded by (seed, i), so
    :meth:`SimulationResult.concat` of shards that tile range(0, n), cut at multiples of
    ``chunk_size`` (``chunk_size=1``: anywhere), equals ``simulate(..., n_nets=n)`` with the same
    ``chunk_size`` bit for bit (same device type and torch thread count).

    ``inputs``: h^0 of shape (width,) or (2, width), the same for every network (results are then
    conditional on it); by default each network gets its own random input pair with K^0 = ``K0``
    and correlation ``c0`` exactly (``c0=None``: one input, no c^l), so that the standard errors
    include the input's randomness, as the infinite-width theory averages over it.
    ``l0``: the reference layer of J^{l0,l} (forward mode); ``l``: also compute J^{l0',l} for
    all l0' ≤ l (reverse mode).
    ``exact=True`` replaces the random probes by the full Jacobian (small widths only).
    ``device=None`` picks cuda when available; ``dtype`` float64 (default) or float32.
    Hyperparameters are keyword arguments (``sigma_w=..., sigma_b=..., mu=...``).
    ``in_shape``: per-example feature shape of h^l for operators on several axes (default
    ``(width,)``); N_l, K^l and c^l then run over all features.
    """
    t_start = time.perf_counter()
    arch = as_op(arch)
    width = check_positive_int(width, "width")
    depth = check_positive_int(depth, "depth")
    if depth > MAX_DEPTH:
        raise SimulationError(
            f"depth={depth} exceeds the {MAX_DEPTH} blocks a simulation runs (it would take "
            "minutes to hours, and finite-width effects grow like depth/width); use "
            "critsym.derive(arch).run(depth, ...) for the infinite-width trajectory")
    nets = network_range(n_nets, networks)
    n_nets = len(nets)
    shape = feature_shape(width, in_shape)
    n_probes = check_positive_int(n_probes, "n_probes")
    dt = check_dtype(dtype)
    dev = default_device(device)
    if probe not in PROBES:
        raise SimulationError(f"probe must be one of {PROBES}, got {probe!r}")
    if isinstance(l0, bool) or not isinstance(l0, int) or not 0 <= l0 <= depth:
        raise SimulationError(f"l0 must be an integer in [0, depth={depth}], got {l0!r}")
    if l is not None and (isinstance(l, bool) or not isinstance(l, int) or not 0 <= l <= depth):
        raise SimulationError(f"l must be None or an integer in [0, depth={depth}], got {l!r}")
    x = make_inputs(width, K0, c0, seed, dt, in_shape=shape) if inputs is None else \
        _check_inputs(inputs, shape, dt)
    x64 = x.to(torch.float64).reshape(x.shape[0], -1)
    K0_emp = float((x64[0] ** 2).mean())
    c0_emp = None
    if x.shape[0] == 2:
        c0_emp = float(x64[0] @ x64[1] / (x64[0].norm() * x64[1].norm()))
    kind = "exact" if exact else probe
    P = math.prod(shape) if exact else n_probes

    if chunk_size is None:
        if max_memory is None:
            if dev.type == "cuda":
                max_memory = int(0.4 * torch.cuda.mem_get_info(dev)[0])
            else:
                max_memory = 2 * 2**30
        per_net = _per_net_bytes(arch, width, depth, dt, x.shape[0], P, hp, shape, l)
        chunk_size = max(1, max_memory // max(per_net, 1))
    chunk_size = check_positive_int(chunk_size, "chunk_size")

    K_parts, J_parts, c_parts, Jto_parts, chunks = [], [], [], [], []
    bar = _Progress(n_nets, progress, f"simulate N={width}")
    start = nets.start
    try:
        while start < nets.stop:
            nc = aligned_chunks(range(start, nets.stop), chunk_size)[0][1] - start
            try:
                out = _run_chunk(arch, width, depth, nc, start, seed, dev, dt, ln_eps, x,
                                 inputs is None, K0, c0, l0, l, kind, P, hp, shape)
            except Exception as e:  # noqa: BLE001 - only OOM is retried
                if not _is_oom(e) or nc == 1:
                    raise
                chunk_size = max(1, nc // 2)
                msg = (f"out of memory with {nc} networks per chunk at width {width}, depth "
                       f"{depth}; retrying with {chunk_size}")
                log.warning(msg)
                warnings.warn(msg, ResourceWarning, stacklevel=2)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            K_parts.append(out[0])
            J_parts.append(out[1])
            c_parts.append(out[2])
            Jto_parts.append(out[3])
            chunks.append(nc)
            bar.update(nc)
            start += nc
    finally:
        bar.close()

    def cat(parts):
        return None if parts[0] is None else np.concatenate(parts, axis=-1)

    res = SimulationResult(
        arch=arch, width=width, depth=depth, n_nets=n_nets, n_probes=P, l0=l0, l_to=l,
        hp=dict(hp), K0=K0_emp, c0=c0_emp, K_nets=cat(K_parts), J_nets=cat(J_parts),
        c_nets=cat(c_parts), J_to_nets=cat(Jto_parts), device=str(dev), dtype=str(dt),
        probe=kind, seconds=time.perf_counter() - t_start, chunks=chunks, in_shape=shape,
        first_net=nets.start, seed=int(seed),
    )
    for name in ("K_nets", "J_nets", "c_nets", "J_to_nets"):
        a = getattr(res, name)
        if a is None:
            continue
        a = a[l0:] if name == "J_nets" else a
        bad = ~np.isfinite(a)
        if bad.any():
            layer = int(np.argwhere(bad)[0][0]) + (l0 if name == "J_nets" else 0)
            raise SimulationError(
                f"non-finite {name[:-5]} appeared at layer {layer} (the activations or the "
                "Jacobian overflowed: the network is far in the chaotic phase, or K grows "
                "without bound); use a smaller depth or sigma_w, or dtype=torch.float64"
            )
    return res


def _run_chunk(arch, width, depth, nc, start, seed, dev, dt, ln_eps, x, fresh, K0, c0, l0, l,
               kind, P, hp, shape):
    """One streaming pass over ``nc`` networks: block l's weights are drawn when the pass reaches
    it and feed both the inputs' forward pass (K^l, c^l) and, from l0 on, the forward-mode
    tangents of the probes (J^{l0,l}); nothing of block l is kept once block l+1 is drawn."""
    net = build(arch, width, depth, n_nets=nc, seed=seed, first_net=start, dtype=dt,
                device=dev, ln_eps=ln_eps, in_shape=shape, stream=True, **hp)
    if fresh:  # an independent input pair per network (same K0, c0 exactly)
        X = torch.stack([make_inputs(width, K0, c0, dtype=dt, generator=g, in_shape=shape)
                         for g in network_generators(seed + 31337, start, start + nc, dev)])
    else:
        X = x.to(dev).unsqueeze(0).expand(nc, *x.shape).contiguous()  # (nc, B, N)
    net._check(X)
    pgens = network_generators(seed + 99991, start, start + nc, dev)
    n_out = math.prod(shape)  # every layer of a repeated block has the input's shape
    pc = _pchunk(P)
    K_rows, c_rows = [], []
    sq_rows: list[list[torch.Tensor]] = []  # per probe chunk: per layer l >= l0, (nc, chunk)
    duals: list[torch.Tensor] = []
    blocks = net.iter_blocks()
    with torch.no_grad(), fwAD.dual_level():
        h = X
        for lay in range(depth + 1):
            flat = h.reshape(nc, h.shape[1], -1)  # (nc, B, features)
            K_rows.append((flat[:, 0] ** 2).mean(-1))
            if x.shape[0] == 2:
                c_rows.append((flat[:, 0] * flat[:, 1]).sum(-1)
                              / (flat[:, 0].norm(dim=-1) * flat[:, 1].norm(dim=-1)))
            if lay == l0:  # forward mode from here: probes folded into the batch axis
                h0 = h[:, 0].detach()
                V = make_probes(kind, P, h0.shape, generators=pgens, dtype=dt, device=dev)
                for i in range(0, P, pc):
                    Vi = V[i:i + pc]
                    primal = h0.unsqueeze(1).expand(nc, Vi.shape[0], *h0.shape[1:]).contiguous()
                    duals.append(fwAD.make_dual(primal, Vi.movedim(0, 1).contiguous()))
                    sq_rows.append([])
            for rows, d in zip(sq_rows, duals, strict=True):
                t = fwAD.unpack_dual(d).tangent
                if t is None:
                    raise SimulationError(f"layer {lay} does not depend on layer {l0}")
                rows.append((t * t).reshape(nc, t.shape[1], -1).sum(-1))
            if lay < depth:
                block = next(blocks)
                h = block(h)
                duals = [block(d) for d in duals]
                del block
    K = torch.stack(K_rows)  # (L+1, nc)
    c = torch.stack(c_rows) if c_rows else None
    sq = torch.cat([torch.stack(rows).permute(2, 0, 1) for rows in sq_rows])  # (P, L+1-l0, nc)
    J = torch.full((depth + 1, nc), float("nan"), dtype=dt, device=dev)
    J[l0:] = sq.mean(0) / n_out
    Jto = None
    if l is not None:  # reverse mode: J^{m,l} for every m <= l (blocks 0..l-1 drawn again)
        a0 = X[:, 0].detach()
        U = make_probes(kind, P, a0.shape, generators=pgens, dtype=dt, device=dev)
        held = CritsymNet(list(net.iter_blocks(0, l)), arch=arch, width=width, n_nets=nc,
                          values=net.values, in_shape=shape)  # autograd keeps them anyway
        sqr = torch.cat([
            vjp_norms_folded(lambda X, *d: held.trajectory(X, 0, l, list(d))[-1], a0, l + 1,
                             U[i:i + pc])
            for i in range(0, P, pc)])
        Jto = (sqr.mean(0) / n_out).cpu().numpy()
    return (K.cpu().numpy(), J.cpu().numpy(), None if c is None else c.cpu().numpy(), Jto)


def _pchunk(P: int) -> int:
    return min(P, 256)
