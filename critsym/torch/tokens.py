r"""Monte Carlo of token networks: the state (q, p, O_T) and the two-part Jacobian (j, k).

A token network maps h⁰ of shape (n tokens, d channels) to h^l.  Per network and layer:

* K = q = (1/(n d)) Σ_{a,c} (h_ac)², the per-token variance;
* O_C = p = (1/d) Σ_c (1/(n(n−1))) Σ_{a≠b} h_ac h_bc, the covariance of two different tokens at
  one channel (unbiased for the per-neuron component);
* O_T = (1/n) Σ_a [(mean_c h_ac)² − var_c(h_a·)/d], the per-token offset (unbiased);
* j = (1/(n d)) Σ_a ‖∂h_a/∂h⁰‖_F² and k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a/∂h⁰, ∂h_b/∂h⁰⟩_F.  Since
  Σ_{a,b} ⟨∂h_a, ∂h_b⟩ = ‖∂(Σ_a h_a)/∂h⁰‖_F², both come from one forward-mode pass with
  Hutchinson probes v (E vvᵀ = I): with t = J v (n × d) and t̄ its token mean,
  j ≈ ‖t‖²/(n d) and k ≈ ‖t̄‖²/d − ‖t‖²/(n² d) (:func:`token_norms`).

The inputs are exchangeable: h⁰_ac = √p⁰ m_c + √(q⁰ − p⁰) e_ac with m, e i.i.d. N(0, 1), drawn
per network, so the standard errors include the input's randomness as the theory averages over
it.  Values are network means with standard errors std/√n_nets.  :func:`validate_tokens` scores
them against a theory run with :func:`critsym.torch.validate.score` (1/d extrapolation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from ..errors import SimulationError
from ..ops.base import Op
from ..stats import mean_se
from .build import (
    build_blocks,
    check_dtype,
    check_positive_int,
    default_device,
    network_generators,
    network_range,
)
from .estimators import make_probes, token_norms
from .modules import BuildContext
from .simulate import _Progress, aligned_chunks

#: the quantities a token simulation estimates, by their RunResult names
TOKEN_QUANTITIES = ("K", "O_C", "O_T", "J", "k")


@dataclass(frozen=True)
class TokenResult:
    """Per-network estimates, each of shape (depth + 1, n_nets): ``K`` (q), ``O_C`` (p),
    ``O_T``, ``J`` (j) and ``k``; the properties without ``_nets`` are network means and
    ``*_se`` their standard errors."""

    shape: tuple[int, int]
    K_nets: np.ndarray
    O_C_nets: np.ndarray
    O_T_nets: np.ndarray
    J_nets: np.ndarray
    k_nets: np.ndarray
    seconds: float
    q0: float
    p0: float

    @property
    def n_nets(self) -> int:
        return self.K_nets.shape[-1]

    @property
    def depth(self) -> int:
        return self.K_nets.shape[0] - 1

    def mean(self, name: str) -> np.ndarray:
        return mean_se(getattr(self, name + "_nets"))[0]

    def se(self, name: str) -> np.ndarray:
        return mean_se(getattr(self, name + "_nets"))[1]

    K = property(lambda self: self.mean("K"))
    K_se = property(lambda self: self.se("K"))
    O_C = property(lambda self: self.mean("O_C"))
    O_C_se = property(lambda self: self.se("O_C"))
    O_T = property(lambda self: self.mean("O_T"))
    O_T_se = property(lambda self: self.se("O_T"))
    J = property(lambda self: self.mean("J"))
    J_se = property(lambda self: self.se("J"))
    k = property(lambda self: self.mean("k"))
    k_se = property(lambda self: self.se("k"))

    def __repr__(self) -> str:
        return (f"TokenResult(shape={self.shape}, depth={self.depth}, n_nets={self.n_nets}, "
                f"J^L={self.J[-1]:.4g}±{self.J_se[-1]:.2g}, k^L={self.k[-1]:.4g}"
                f"±{self.k_se[-1]:.2g})")


def token_inputs(shape: tuple[int, int], q0: float, p0: float, generators, dtype, device
                 ) -> torch.Tensor:
    """h⁰ of shape (n_nets, n, d): h_ac = √p0·m_c + √(q0 − p0)·e_ac, one draw per generator."""
    n, d = shape
    m = torch.stack([torch.randn(1, d, generator=g, dtype=dtype, device=device)
                     for g in generators])
    e = torch.stack([torch.randn(n, d, generator=g, dtype=dtype, device=device)
                     for g in generators])
    return math.sqrt(p0) * m + math.sqrt(q0 - p0) * e


def state_statistics(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K, O_C, O_T) per network of h (n_nets, n, d) (see the module docstring)."""
    n, d = h.shape[-2], h.shape[-1]
    K = (h * h).mean((-2, -1))
    col = h.sum(-2)  # Σ_a h_ac
    O_C = ((col * col - (h * h).sum(-2)) / (n * (n - 1))).mean(-1)
    O_T = (h.mean(-1) ** 2 - h.var(-1, unbiased=True) / d).mean(-1)
    return K, O_C, O_T


def _check_arch(arch, hp: dict) -> dict[str, float]:
    values = {}
    for k, v in hp.items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError):
            raise SimulationError(f"hyperparameter {k} must be a number, got {v!r}") from None
    if isinstance(arch, Op):
        needed = {s.name for s in arch.hyperparameters()}
        if needed != set(values):
            raise SimulationError(f"hyperparameters of {arch!r} are {sorted(needed)}; got "
                                  f"{sorted(values)}")
    elif not callable(getattr(arch, "to_torch", None)):
        raise SimulationError(f"arch must be a critsym operator (or have to_torch(ctx, shape)), "
                              f"got {type(arch).__name__}")
    return values


def simulate_tokens(arch, shape: Sequence[int], depth: int, *, n_nets: int | None = None,
                    n_probes: int = 4, q0: float = 1.0, p0: float = 0.0, seed: int = 0,
                    width: int | None = None, device: object = None,
                    dtype: object = torch.float64, chunk_size: int | None = None,
                    progress: bool | None = None, inputs=None, **hp: float) -> TokenResult:
    r"""Monte Carlo q, p, O_T, j, k of ``depth`` blocks ``arch`` on ``shape`` = (tokens,
    channels), for ``n_nets`` independent networks (default 16; weights from per-network
    generators seeded by (seed, i), so chunking does not change the numbers).

    ``q0``, ``p0``: the input's per-token variance and cross-token covariance (0 ≤ p0 < q0).
    ``width``: the Linear output width (default ``shape[-1]``).  Forward mode, ``n_probes``
    Gaussian probes per network from their own generators.  A progress bar over the network
    chunks shows on a terminal (``progress=False``: never).  ``inputs``: a function
    ``(networks: range, dtype, device) -> h⁰`` of shape (len(networks), tokens, channels) in
    place of the Gaussian input (e.g. a real embedding stage; q0, p0 are then only recorded).
    """
    t0 = time.perf_counter()
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise SimulationError(f"shape must be (tokens, channels), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 1 or shape[0] < 2:
        raise SimulationError(f"shape must be (tokens, channels) with at least 2 tokens, got "
                              f"{shape}")
    depth = check_positive_int(depth, "depth")
    n_probes = check_positive_int(n_probes, "n_probes")
    for name, v in (("q0", q0), ("p0", p0)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise SimulationError(f"{name} must be a finite number, got {v!r}")
    if not 0 <= p0 < q0:
        raise SimulationError(f"the input needs 0 <= p0 < q0 (cross-token covariance below the "
                              f"per-token variance), got q0={q0}, p0={p0}")
    values = _check_arch(arch, hp)
    nets = network_range(n_nets, None, default=16)
    step = len(nets) if chunk_size is None else check_positive_int(chunk_size, "chunk_size")
    dt, dev = check_dtype(dtype), default_device(device)
    chunks = aligned_chunks(nets, step)
    bar = _Progress(len(nets), progress if len(chunks) > 1 or progress else False,
                    "token networks")
    parts = []
    try:
        for lo, hi in chunks:
            ctx = BuildContext(n_nets=hi - lo, width=width or shape[-1], values=values,
                               generators=network_generators(seed, lo, hi, dev), dtype=dt,
                               device=dev)
            blocks = nn.ModuleList(build_blocks(arch, ctx, shape, depth)).to(dev)
            parts.append(token_statistics(blocks, shape, range(lo, hi), n_probes=n_probes,
                                          q0=q0, p0=p0, seed=seed, dtype=dt, device=dev,
                                          inputs=inputs))
            bar.update(hi - lo)
    finally:
        bar.close()
    stats = [np.concatenate([p[i] for p in parts], -1) for i in range(5)]
    res = TokenResult(shape, *stats, seconds=time.perf_counter() - t0, q0=float(q0),
                      p0=float(p0))
    if not np.all(np.isfinite(res.J_nets)):
        raise SimulationError("non-finite APJN: the network overflowed; use a smaller depth")
    return res


def _trajectory(blocks, h):
    out = [h]
    for b in blocks:
        h = b(h)
        out.append(h)
    return out


def token_statistics(blocks: Sequence[nn.Module], shape: tuple[int, int], networks: range, *,
                     n_probes: int = 4, q0: float = 1.0, p0: float = 0.0, seed: int = 0,
                     dtype: torch.dtype | None = None, device: object = None, inputs=None
                     ) -> tuple[np.ndarray, ...]:
    """Per-network (K, O_C, O_T, j, k), each (depth + 1, n_nets), of already built stacked
    ``blocks`` (one module per block, ``n_nets = len(networks)`` networks on (n, d) tokens).
    Network i's input and probes come from generators seeded by (seed, i): the same
    ``seed`` and ``networks`` give the same inputs and probes, so two variants of one set of
    networks can be compared pairwise (``inputs``: as in :func:`simulate_tokens`).
    ``dtype``, ``device``: the blocks' (default: those of
    their first parameter, else float64 on the CPU)."""
    first = next((q for b in blocks for q in b.parameters()), None)
    dt = dtype or (first.dtype if first is not None else torch.float64)
    dev = torch.device(device) if device is not None else \
        (first.device if first is not None else torch.device("cpu"))
    lo, hi = networks.start, networks.stop
    if inputs is None:
        x = token_inputs(shape, q0, p0, network_generators(seed + 31337, lo, hi, dev), dt, dev)
    else:
        x = inputs(networks, dt, dev)
        if tuple(x.shape) != (hi - lo, *shape):
            raise SimulationError(f"inputs gave shape {tuple(x.shape)}, expected "
                                  f"{(hi - lo, *shape)} (networks, tokens, channels)")
    V = make_probes("gaussian", n_probes, x.shape,
                    generators=network_generators(seed + 99991, lo, hi, dev), dtype=dt,
                    device=dev)  # (P, G, n, d)
    P = n_probes
    shape = tuple(shape)
    X = x.unsqueeze(1).expand(x.shape[0], P, *shape).contiguous()
    with fwAD.dual_level():
        outs = _trajectory(blocks, fwAD.make_dual(X, V.movedim(0, 1).contiguous()))
        prim = [fwAD.unpack_dual(o).primal.detach()[:, 0] for o in outs]
        tangents = [fwAD.unpack_dual(o).tangent for o in outs]
    if any(t is None for t in tangents):
        raise SimulationError("a layer output does not depend on the input")
    K, O_C, O_T = (torch.stack(s) for s in zip(*(state_statistics(h) for h in prim),
                                                 strict=True))
    jk = [token_norms(t) for t in tangents]  # each (j, k) of shape (G, P)
    j = torch.stack([a.mean(-1) for a, _ in jk])
    k = torch.stack([b.mean(-1) for _, b in jk])
    return tuple(t.detach().cpu().numpy() for t in (K, O_C, O_T, j, k))


def validate_tokens(arch, n_tokens: int, widths: Sequence[int] = (32, 64), depth: int = 4, *,
                    theory=None, n_nets: int = 32, n_probes: int = 4, q0: float = 1.0,
                    p0: float = 0.0, seed: int = 0, z_max: float = 4.0,
                    quantities: Sequence[str] = ("K", "O_C", "J", "k"),
                    progress: bool | None = None, **hp: float):
    r"""Token Monte Carlo at each width d (``n_tokens`` × d) against a theory trajectory, with
    :func:`critsym.torch.validate.score`: per quantity and layer l ≥ 1 the 1/d extrapolation
    of the network means and z = (X_∞ − theory)/SE(X_∞); passes when every entry is scored and
    |z| ≤ ``z_max``.  ``theory``: an object with arrays ``.K, .O_C, .O_T, .J, .k`` over layers
    0..depth (default: ``critsym.derive(arch).run(depth, K0=q0, O_C0=p0, J0=1, k0=0, **hp)``).
    Returns a :class:`~critsym.torch.validate.ValidationResult` (its ``sims`` are
    :class:`TokenResult` objects).
    """
    from .validate import MIN_NETS, ValidationResult, score

    if isinstance(n_nets, bool) or not isinstance(n_nets, int) or n_nets < MIN_NETS:
        raise SimulationError(f"n_nets={n_nets!r}: validate_tokens needs at least {MIN_NETS} "
                              "networks per width (the spread across networks is the error)")
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or len(set(widths)) != len(widths):
        raise SimulationError(f"validate_tokens needs two or more distinct widths for the 1/d "
                              f"extrapolation, got {widths}")
    bad = set(quantities) - set(TOKEN_QUANTITIES)
    if bad or not quantities:
        raise SimulationError(f"quantities must be among {TOKEN_QUANTITIES}, got "
                              f"{list(quantities)}")
    if theory is None:
        from ..derive import derive

        theory = derive(arch).run(depth, K0=q0, O_C0=p0, J0=1.0, k0=0.0, **hp)
    sims = [simulate_tokens(arch, (n_tokens, w), depth, n_nets=n_nets, n_probes=n_probes, q0=q0,
                            p0=p0, seed=seed + 17 * i, progress=progress, **hp)
            for i, w in enumerate(widths)]
    rows = []
    for q in quantities:
        th = np.asarray(getattr(theory, q), dtype=float)
        if th.shape[0] < depth + 1:
            raise SimulationError(f"the theory's {q} has {th.shape[0]} layers, need {depth + 1}")
        for layer in range(1, depth + 1):
            rows.append(score(q, layer, float(th[layer]), widths,
                              [float(s.mean(q)[layer]) for s in sims],
                              [float(s.se(q)[layer]) for s in sims]))
    return ValidationResult(arch=arch, hp=dict(hp), widths=widths, depth=depth, rows=rows,
                            sims=sims, theory=theory, z_max=z_max)
