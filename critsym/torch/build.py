r"""Instantiate a critsym architecture as real torch networks.

``build(arch, width, depth, n_nets, seed, **hp)`` returns a :class:`CritsymNet`: ``depth``
independently initialized copies of the block ``arch`` for ``n_nets`` independent networks at
once (stacked weights, batched matmuls).  Conventions (the same as :meth:`Theory.run`):

* layer l = 0 is the block input h^0, given directly (it is *not* produced by a Linear map of
  some raw input), so simulation and theory start from the same K^0 = (1/N) Σ_i (h_i^0)²;
* layer l ≥ 1 is the output of block l, h^l = block_l(h^{l-1});
* W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²), LayerNorm γ = 1, β = 0 with eps = ``ln_eps``
  (default 1e-12, so its relative effect O(eps/K) is far below Monte Carlo error; torch's own
  default 1e-5 would bias K by ~1e-5 relative), residual h ↦ μh + branch(h).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import replace

import torch
from torch import nn

from ..errors import SimulationError
from ..ops.base import Op, as_op
from .modules import BuildContext


def default_device(device: object = None) -> torch.device:
    """``device`` as a torch.device; ``None`` picks ``cuda`` when available, else ``cpu``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise SimulationError(f"invalid device {device!r}: {e}; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SimulationError(f"device {device!r} asked for, but torch sees no CUDA device here "
                              "(torch.cuda.is_available() is False); use device='cpu', or None "
                              "to pick cuda only when there is one")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SimulationError(f"device {device!r}: there are only {torch.cuda.device_count()} "
                              "CUDA devices")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SimulationError(f"device {device!r} asked for, but the MPS backend is not "
                              "available; use device='cpu'")
    return dev


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SimulationError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_dtype(dtype: object) -> torch.dtype:
    if dtype in (torch.float32, torch.float64):
        return dtype  # type: ignore[return-value]
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)
    raise SimulationError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


def network_range(n_nets: object = None, networks: object = None, default: int = 32) -> range:
    """The networks of one seed to run: ``networks`` (a ``range(start, stop)`` with step 1) or
    ``range(0, n_nets)`` (``n_nets`` defaults to ``default``); both given must agree."""
    if networks is None:
        return range(check_positive_int(default if n_nets is None else n_nets, "n_nets"))
    if not isinstance(networks, range) or networks.step != 1 or networks.start < 0 \
            or len(networks) < 1:
        raise SimulationError(
            f"networks must be a non-empty range(start, stop) with 0 <= start < stop and step 1, "
            f"got {networks!r}")
    if n_nets is not None and check_positive_int(n_nets, "n_nets") != len(networks):
        raise SimulationError(f"n_nets={n_nets!r} disagrees with networks={networks!r} "
                              f"({len(networks)} networks); pass only one of them")
    return networks


def network_generators(seed: int, start: int, stop: int, device: torch.device):
    """One generator per network index i in [start, stop), seeded from (seed, i)."""
    gens = []
    for i in range(start, stop):
        g = torch.Generator(device=device)
        g.manual_seed((int(seed) * 1_000_003 + 7919 * i + 1) % (2**63 - 1))
        gens.append(g)
    return gens


def feature_shape(width: int, in_shape: object = None) -> tuple[int, ...]:
    """The per-example feature shape: ``in_shape`` (positive ints) or ``(width,)``."""
    if in_shape is None:
        return (width,)
    try:
        shape = tuple(int(s) for s in in_shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise SimulationError(f"in_shape must be a tuple of ints, got {in_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise SimulationError(f"in_shape must be a non-empty tuple of ints >= 1, got {in_shape}")
    return shape


class CritsymNet(nn.Module):
    """``depth`` blocks for ``n_nets`` independent networks; layer l = output of block l.

    ``forward(h0)`` maps ``(n_nets, *batch, width)`` to h^depth; :meth:`trajectory` returns
    every layer.  Two storage modes with the same weights:

    * eager (``build(..., stream=False)``): ``blocks`` is a ``ModuleList`` holding every block,
      so ``blocks.3`` names block 4's module (used by :func:`critsym.apjn`);
    * streaming (``build(..., stream=True)``): ``blocks`` is None and each pass draws block l's
      weights when it reaches block l, from the per-network generators rewound to their
      initial state, and drops them after use.  Draws happen in the same order as an eager
      build, so the weights are bit-identical, and peak memory holds about two blocks.
    """

    def __init__(self, blocks: list[nn.Module] | None, *, arch: Op, width: int, n_nets: int,
                 values: dict[str, float], in_shape: tuple[int, ...],
                 ctx: BuildContext | None = None, depth: int | None = None):
        super().__init__()
        self.blocks = None if blocks is None else nn.ModuleList(blocks)
        self.arch = arch
        self.width = width
        self.n_nets = n_nets
        self.values = dict(values)
        self.in_shape = tuple(in_shape)
        self._ctx = ctx
        self._depth = len(blocks) if blocks is not None else depth
        if blocks is None:
            if ctx is None or depth is None:
                raise SimulationError("a streaming CritsymNet needs its BuildContext and depth")
            self._start_states = [g.get_state() for g in ctx.generators]

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def streaming(self) -> bool:
        return self.blocks is None

    @property
    def dtype(self) -> torch.dtype:
        if self.streaming:
            return self._ctx.dtype
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.float64

    def iter_blocks(self, start: int = 0, stop: int | None = None) -> Iterator[nn.Module]:
        """Blocks ``start .. stop-1`` in order.  Streaming: drawn now (blocks before ``start``
        are drawn and dropped to advance the generators); do not interleave two iterations."""
        stop = self.depth if stop is None else stop
        if not self.streaming:
            yield from (self.blocks[k] for k in range(start, stop))
            return
        for g, state in zip(self._ctx.generators, self._start_states, strict=True):
            g.set_state(state)
        for k in range(stop):
            mod = draw_block(self.arch, self._ctx, self.in_shape).to(device=self._ctx.device)
            if k >= start:
                yield mod
            del mod

    def _check(self, h: torch.Tensor) -> None:
        k = len(self.in_shape)
        if h.dim() < k + 1 or h.shape[0] != self.n_nets or tuple(h.shape[-k:]) != self.in_shape:
            raise SimulationError(
                f"input of shape {tuple(h.shape)} does not fit {self.n_nets} networks with "
                f"features {self.in_shape}: pass (n_nets, *batch, *features) = "
                f"({self.n_nets}, ..., {', '.join(map(str, self.in_shape))})"
            )
        if h.dtype != self.dtype:
            raise SimulationError(f"input dtype {h.dtype} differs from the network's "
                                  f"{self.dtype}; convert it with .to({self.dtype})")

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        self._check(h0)
        h = h0
        for b in self.iter_blocks():
            h = b(h)
        return h

    def trajectory(self, h: torch.Tensor, start: int = 0, stop: int | None = None,
                   deltas: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """[h^start, ..., h^stop] from h = h^start; ``deltas[k]`` (if given) is added to
        h^{start+k} before it enters the next block (zero perturbations for reverse mode)."""
        stop = self.depth if stop is None else stop
        self._check(h)
        blocks = self.iter_blocks(start, stop)
        out = []
        for k, lay in enumerate(range(start, stop + 1)):
            if deltas is not None:
                h = h + deltas[k]
            out.append(h)
            if lay < stop:
                h = next(blocks)(h)
        return out


def build(arch: Op, width: int, depth: int, *, n_nets: int = 1, seed: int = 0,
          first_net: int = 0, dtype: object = torch.float64, device: object = None,
          ln_eps: float = 1e-12, in_shape: tuple[int, ...] | None = None,
          stream: bool = False, **hp: float) -> CritsymNet:
    r"""``n_nets`` independent networks of ``depth`` blocks ``arch`` at width ``width``.

    Hyperparameters are keyword arguments (``sigma_w=1.3, sigma_b=0.2, mu=1``).  Network i
    (counted from ``first_net``) takes its weights from a generator seeded by (seed, i), so the
    same seed gives the same networks however they are chunked.  Each operator builds its own
    forward map (``Op.to_torch``), so new operators need no change here.  ``in_shape``: the
    per-example feature shape of h^l (default ``(width,)``; e.g. ``(tokens, channels)`` for
    operators on several axes), which every block must preserve.  ``stream=True`` draws each
    block's weights only when a pass reaches it (see :class:`CritsymNet`): the same numbers, a
    few blocks' memory instead of ``depth``.
    """
    arch = as_op(arch)
    width = check_positive_int(width, "width")
    depth = check_positive_int(depth, "depth")
    n_nets = check_positive_int(n_nets, "n_nets")
    dev = default_device(device)
    dt = check_dtype(dtype)
    values = {}
    for k, v in hp.items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError):
            raise SimulationError(f"hyperparameter {k} must be a number, got {v!r}") from None
    needed = {s.name for s in arch.hyperparameters()}
    missing = sorted(needed - set(values))
    if missing:
        raise SimulationError(
            f"missing hyperparameter values {missing} for {arch!r}; pass e.g. "
            f"{', '.join(f'{m}=1.0' for m in missing)}"
        )
    unknown = sorted(set(values) - needed)
    if unknown:
        raise SimulationError(
            f"unknown hyperparameters {unknown}: {arch!r} has {sorted(needed) or 'none'}"
        )
    gens = network_generators(seed, first_net, first_net + n_nets, dev)
    ctx = BuildContext(n_nets=n_nets, width=width, values=values, generators=gens, dtype=dt,
                       device=dev, ln_eps=ln_eps)
    shape = feature_shape(width, in_shape)
    if stream:
        return CritsymNet(None, arch=arch, width=width, n_nets=n_nets, values=values,
                          in_shape=shape, ctx=ctx, depth=depth)
    blocks = build_blocks(arch, ctx, shape, depth)
    return CritsymNet(blocks, arch=arch, width=width, n_nets=n_nets, values=values,
                      in_shape=shape).to(device=dev)


def draw_block(arch, ctx, shape: tuple[int, ...]) -> nn.Module:
    """One draw of the block's torch forward map (``Op.to_torch``), checked to keep the feature
    shape so that the block can repeat."""
    mod, out = arch.to_torch(ctx, shape)
    if tuple(out) != tuple(shape):
        raise SimulationError(
            f"block {arch!r} maps feature shape {tuple(shape)} to {tuple(out)}; a repeated "
            "block must keep it (for a Mixer use equal tokens and channels, or set width)"
        )
    return mod


def build_stack(layers, widths, ctx, shape: tuple[int, ...]) -> tuple[list, tuple[int, ...]]:
    """A stack that does not repeat: layer k's forward map (``Op.to_torch``) built with
    ``ctx.width = widths[k]`` (the fan-out of its Linear maps) on the shape layer k-1 gives, all
    from the same generators in order.  Returns the modules and the output shape."""
    layers, widths = list(layers), [check_positive_int(w, "width") for w in widths]
    if len(layers) != len(widths):
        raise SimulationError(f"{len(layers)} layers but {len(widths)} widths: give one width "
                              "per layer")
    mods = []
    for op, w in zip(layers, widths, strict=True):
        mod, shape = as_op(op).to_torch(replace(ctx, width=w), tuple(shape))
        mods.append(mod)
    return mods, tuple(shape)


def build_blocks(arch, ctx, shape: tuple[int, ...], depth: int) -> list:
    """``depth`` independent draws of the block (:func:`draw_block`), in order."""
    return [draw_block(arch, ctx, shape) for _ in range(depth)]
