r"""Monte Carlo of blocks on multi-axis feature shapes (conv feature maps, Mixer tokens).

Same estimators and error bars as :func:`critsym.simulate` for the MLP: ``n_nets`` independent
networks (stacked weights, one generator per network), each with its own input of exactly
K^0 = ``K0`` (i.i.d. Gaussian entries rescaled), and per network

* K^l = mean of (h^l)² over all entries of one example,
* O_T^l = mean over rows of [(mean over the last axis of h^l)² − (its sample variance)/C] (the
  per-row offset variance, unbiased; an i.i.d. input has O_T^0 = 0),
* J^{0,l} = (1/N_l) ‖∂h^l/∂h^0‖_F² by Hutchinson's estimator (Gaussian probes, forward mode),
* with ``c0`` given: a second input y of the same norm with ⟨x, y⟩/‖x‖² = c0 exactly
  (Gram–Schmidt per network) goes through the same network, and
  c^l = ⟨h^l(x), h^l(y)⟩/(‖h^l(x)‖‖h^l(y)‖) (sums over all entries of the example).

Values are network means with standard errors std/√n_nets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import mean_se
from .build import (
    build_blocks,
    check_dtype,
    check_positive_int,
    default_device,
    network_generators,
    network_range,
)
from .estimators import jvp_norms_folded, make_probes
from .modules import BuildContext
from .simulate import aligned_chunks, ordered_shards


@dataclass(frozen=True)
class MapsResult:
    """Per-layer (axis 0) network means and standard errors of K, O_T and J^{0,l}."""

    shape: tuple[int, ...]
    K_nets: np.ndarray
    O_T_nets: np.ndarray
    J_nets: np.ndarray
    seconds: float
    c_nets: np.ndarray | None = None
    first_net: int = 0
    settings: tuple = ()

    _ms = staticmethod(mean_se)

    @property
    def n_nets(self) -> int:
        return self.K_nets.shape[-1]

    @property
    def networks(self) -> range:
        """The network indices of the seed held here (``simulate_maps(..., networks=...)``)."""
        return range(self.first_net, self.first_net + self.n_nets)

    @classmethod
    def concat(cls, results: Sequence[MapsResult]) -> MapsResult:
        """One result from shards of one run (same ``shape`` and ``settings``) whose networks
        tile a range; any split equals the serial run bit for bit (except ``seconds``)."""
        parts = ordered_shards(results, cls, ("shape", "settings"))

        def cat(name):
            arrays = [getattr(r, name) for r in parts]
            if any(a is None for a in arrays) != all(a is None for a in arrays):
                raise SimulationError(f"some shards have {name} and others do not")
            return None if arrays[0] is None else np.concatenate(arrays, axis=-1)

        return replace(parts[0], K_nets=cat("K_nets"), O_T_nets=cat("O_T_nets"),
                       J_nets=cat("J_nets"), c_nets=cat("c_nets"),
                       seconds=sum(r.seconds for r in parts))

    K = property(lambda self: self._ms(self.K_nets)[0])
    K_se = property(lambda self: self._ms(self.K_nets)[1])
    O_T = property(lambda self: self._ms(self.O_T_nets)[0])
    O_T_se = property(lambda self: self._ms(self.O_T_nets)[1])
    J = property(lambda self: self._ms(self.J_nets)[0])
    J_se = property(lambda self: self._ms(self.J_nets)[1])
    c = property(lambda self: None if self.c_nets is None else self._ms(self.c_nets)[0])
    c_se = property(lambda self: None if self.c_nets is None else self._ms(self.c_nets)[1])


def build_maps(arch: Op, shape, depth: int, *, width: int | None = None, n_nets: int = 1,
               seed: int = 0, first_net: int = 0, dtype=torch.float64, device=None,
               ln_eps: float = 1e-12, **hp) -> nn.ModuleList:
    """``depth`` copies of the block for ``n_nets`` networks on features of shape ``shape``
    (width = hidden size of Linear / Conv outputs, default ``shape[-1]``)."""
    arch = as_op(arch)
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise SimulationError(f"shape must be a tuple of positive sizes, got {shape}")
    depth = check_positive_int(depth, "depth")
    n_nets = check_positive_int(n_nets, "n_nets")
    dev = default_device(device)
    values = {k: float(v) for k, v in hp.items()}
    needed = {s.name for s in arch.hyperparameters()}
    if needed - set(values) or set(values) - needed:
        raise SimulationError(
            f"hyperparameters of {arch!r} are {sorted(needed)}; got {sorted(values)}")
    ctx = BuildContext(n_nets=n_nets, width=width or shape[-1], values=values,
                       generators=network_generators(seed, first_net, first_net + n_nets, dev),
                       dtype=check_dtype(dtype), device=dev, ln_eps=ln_eps)
    return nn.ModuleList(build_blocks(arch, ctx, shape, depth)).to(dev)


def simulate_maps(arch: Op, shape, depth: int, *, n_nets: int | None = None,
                  n_probes: int = 4, K0: float = 1.0, seed: int = 0, width: int | None = None,
                  device=None, dtype=torch.float64, c0: float | None = None,
                  networks: range | None = None, chunk_size: int | None = None,
                  **hp) -> MapsResult:
    """Monte Carlo K^l, O_T^l and J^{0,l} of ``depth`` blocks on feature shape ``shape``
    (e.g. (H, W, C) channels-last images, (T, C) Mixer tokens); with ``c0`` also the
    correlation c^l of an input pair with c^0 = c0.

    ``n_nets`` networks (default 16), or the shard ``networks=range(start, stop)`` of ``seed``.
    Networks run in chunks of ``chunk_size`` (default: all at once) whose ends are multiples
    of ``chunk_size`` in the network index, so :meth:`MapsResult.concat` of shards cut at
    such multiples equals the unsplit run bit for bit."""
    t0 = time.perf_counter()
    if not (isinstance(K0, (int, float)) and math.isfinite(K0) and K0 > 0):
        raise SimulationError(f"K0 must be a finite number > 0, got {K0!r}")
    if c0 is not None and not (isinstance(c0, (int, float)) and -1 <= c0 <= 1):
        raise SimulationError(f"c0 must be a number in [-1, 1], got {c0!r}")
    n_probes = check_positive_int(n_probes, "n_probes")
    nets = network_range(n_nets, networks, default=16)
    step = len(nets) if chunk_size is None else check_positive_int(chunk_size, "chunk_size")
    dt = check_dtype(dtype)
    parts = [_maps_chunk(arch, shape, depth, lo, hi, n_probes=n_probes, K0=K0, seed=seed,
                         width=width, device=device, dtype=dt, c0=c0, **hp)
             for lo, hi in aligned_chunks(nets, step)]
    K, OT, J, c = (None if parts[0][k] is None else np.concatenate([p[k] for p in parts], -1)
                   for k in range(4))
    settings = (repr(as_op(arch)), tuple(sorted((k, float(v)) for k, v in hp.items())), depth,
                n_probes, float(K0), c0, width, str(dt), int(seed))
    res = MapsResult(tuple(int(s) for s in shape), K, OT, J, time.perf_counter() - t0, c,
                     first_net=nets.start, settings=settings)
    if not np.all(np.isfinite(res.J_nets)):
        raise SimulationError("non-finite APJN: the network overflowed; use a smaller depth")
    return res


def _maps_chunk(arch, shape, depth, lo, hi, *, n_probes, K0, seed, width, device, dtype, c0,
                **hp):
    """Per-network K, O_T, J (and c) of networks lo..hi-1, each of shape (depth+1, hi-lo)."""
    n_nets, dt = hi - lo, dtype
    net = build_maps(arch, shape, depth, width=width, n_nets=n_nets, seed=seed,
                     first_net=lo, dtype=dtype, device=device, **hp)
    dev = next(iter(net.parameters())).device if any(True for _ in net.parameters()) else \
        default_device(device)
    shape = tuple(int(s) for s in shape)
    gens = network_generators(seed + 31337, lo, hi, dev)
    x = torch.stack([torch.randn(*shape, generator=g, dtype=dt, device=dev) for g in gens])
    x = x * torch.sqrt(K0 / (x**2).flatten(1).mean(1)).reshape(-1, *[1] * len(shape))
    x = x.unsqueeze(1)  # (n, 1, *shape)

    def traj(h):
        return block_trajectory(net, h)

    with torch.no_grad():
        hs = traj(x)
    K = torch.stack([(h**2).flatten(1).mean(1) for h in hs])
    C = shape[-1]
    # unbiased: E[(row mean)²] = O_T + (within-row variance)/C
    OT = torch.stack([(h.mean(-1) ** 2 - h.var(-1, unbiased=True) / C).flatten(1).mean(1)
                      for h in hs])
    V = make_probes("gaussian", n_probes, x[:, 0].shape,
                    generators=network_generators(seed + 99991, lo, hi, dev),
                    dtype=dt, device=dev)
    sq = jvp_norms_folded(traj, x[:, 0], V)  # (P, L+1, n)
    n_out = math.prod(shape)
    J = sq.mean(0) / n_out
    c_nets = None
    if c0 is not None:
        zg = network_generators(seed + 77777, lo, hi, dev)
        z = torch.stack([torch.randn(*shape, generator=g, dtype=dt, device=dev) for g in zg])
        xf, zf = x[:, 0].flatten(1), z.flatten(1)
        zf = zf - ((zf * xf).sum(1) / (xf * xf).sum(1))[:, None] * xf
        zf = zf * (xf.norm(dim=1) / zf.norm(dim=1))[:, None]
        y = (c0 * xf + math.sqrt(max(0.0, 1 - c0 * c0)) * zf).reshape(x.shape)
        with torch.no_grad():
            hy = traj(y)
        c_nets = torch.stack([
            (a.flatten(1) * b.flatten(1)).sum(1) / (a.flatten(1).norm(dim=1)
                                                    * b.flatten(1).norm(dim=1))
            for a, b in zip(hs, hy, strict=True)]).cpu().numpy()
    return K.cpu().numpy(), OT.cpu().numpy(), J.cpu().numpy(), c_nets


def block_trajectory(blocks, h: torch.Tensor) -> list[torch.Tensor]:
    """[h^0, h^1, ..., h^L]: ``h`` passed through each block of ``blocks`` in turn."""
    out = [h]
    for b in blocks:
        h = b(h)
        out.append(h)
    return out


# the old names (before "shaped" was kept for kernel shaping only), so existing scripts still run
simulate_shaped = simulate_maps
ShapedResult = MapsResult
build_shaped = build_maps
