r"""Monte Carlo of BatchNorm networks over whole batches, and its comparison with the theory.

For each of ``n_nets`` independent networks (one :func:`~critsym.torch.build.build` stack), a batch
of B examples h^0 with i.i.d. N(0, K_0) entries (so each neuron's batch vector is Gaussian with
pairwise correlation c_0 = 0) goes through ``depth`` blocks in training mode, and

* K^l = mean of (h^l)² over the examples and features,
* c^l = mean over pairs of examples a ≠ b of h_a·h_b/(|h_a||h_b|),
* J^{0,l} = (1/(B N_l)) ‖∂H^l/∂H^0‖_F², the APJN of the whole batch (H = the B examples),
  by Hutchinson's estimator (Gaussian probes on the whole batch, forward mode; the probes are
  folded into an axis *before* the batch axis, so BatchNorm's statistics stay per batch).

Values are network means with standard errors std/√n_nets.  :func:`validate_batch` compares them
with the theory after the 1/N extrapolation of :func:`critsym.torch.validate.extrapolate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import mean_se
from ..torch.build import build, check_positive_int, feature_shape, network_generators
from ..torch.estimators import jvp_norms_folded, make_probes
from ..torch.validate import ScoredRows, score
from .theory import split_block


def _batch_of(arch: Op):
    from ..ops.batchnorm import BatchNorm

    def walk(op):
        if isinstance(op, BatchNorm):
            yield op.batch_size
        for c in op.children():
            yield from walk(c)

    return set(walk(arch))


@dataclass(frozen=True)
class BatchSimulation:
    """Per-layer (axis 0) per-network estimates (axis 1) of K, c and the whole-batch APJN."""

    arch: Op
    width: int
    depth: int
    batch_size: int
    hp: dict
    K0: float
    K_nets: np.ndarray
    c_nets: np.ndarray
    J_nets: np.ndarray
    seconds: float

    K = property(lambda self: mean_se(self.K_nets)[0])
    K_se = property(lambda self: mean_se(self.K_nets)[1])
    c = property(lambda self: mean_se(self.c_nets)[0])
    c_se = property(lambda self: mean_se(self.c_nets)[1])
    J = property(lambda self: mean_se(self.J_nets)[0])
    J_se = property(lambda self: mean_se(self.J_nets)[1])


def simulate_batch(arch: Op, width: int, depth: int, batch_size: int | None = None, *,
                   n_nets: int = 16, n_probes: int = 2, K0: float = 1.0, seed: int = 0,
                   chunk_size: int = 8, spatial: tuple[int, ...] = (),
                   dtype=torch.float64, device=None, ln_eps: float = 1e-12,
                   **hp: float) -> BatchSimulation:
    """Simulate ``n_nets`` BatchNorm networks on batches of ``batch_size`` examples (see the
    module doc).  ``batch_size`` defaults to the architecture's ``BatchNorm(B)``; it is
    required for ``BatchNorm()`` (the infinite-batch rule, approached at large B).
    ``spatial``: the spatial size of channels-last feature maps (features (*spatial, width))."""
    arch = as_op(arch)
    sizes = _batch_of(arch) - {None}
    if len(sizes) > 1:
        raise SimulationError(f"{arch!r} has BatchNorms with different batch sizes {sizes}")
    if batch_size is None:
        if not sizes:
            raise SimulationError(
                "pass batch_size=B: the architecture's BatchNorm() is the infinite-batch rule, "
                "simulated at a finite (large) batch")
        batch_size = sizes.pop()
    elif sizes and batch_size not in sizes:
        raise SimulationError(f"batch_size={batch_size} differs from the architecture's "
                              f"BatchNorm({sizes.pop()})")
    B = check_positive_int(batch_size, "batch_size")
    if B < 4:
        raise SimulationError(f"batch_size must be >= 4, got {B}")
    width = check_positive_int(width, "width")
    depth = check_positive_int(depth, "depth")
    n_nets = check_positive_int(n_nets, "n_nets")
    P = check_positive_int(n_probes, "n_probes")
    if not (isinstance(K0, (int, float)) and math.isfinite(K0) and K0 > 0):
        raise SimulationError(f"K0 must be a finite number > 0, got {K0!r}")
    shape = feature_shape(width, (*spatial, width))
    n_feat = math.prod(shape)
    t0 = time.perf_counter()
    Ks, cs, Js = [], [], []
    for start in range(0, n_nets, chunk_size):
        nc = min(chunk_size, n_nets - start)
        net = build(arch, width, depth, n_nets=nc, seed=seed, first_net=start, dtype=dtype,
                    device=device, ln_eps=ln_eps, in_shape=shape, **hp)
        dev = next(net.parameters()).device
        X = torch.stack([torch.randn(B, *shape, generator=g, dtype=dtype, device=dev)
                         for g in network_generators(seed + 31337, start, start + nc, dev)])
        X = X * math.sqrt(K0)
        with torch.no_grad():
            traj = net.trajectory(X)
        flat = [h.reshape(nc, B, -1) for h in traj]
        Ks.append(torch.stack([(h * h).mean((1, 2)) for h in flat]))
        cs.append(torch.stack([_pair_corr(h) for h in flat]))
        gens = network_generators(seed + 99991, start, start + nc, dev)
        V = make_probes("gaussian", P, (nc, B, *shape), generators=gens, dtype=dtype,
                        device=dev)
        sq = jvp_norms_folded(lambda z, net=net: net.trajectory(z), X, V)  # (P, L+1, nc)
        Js.append(sq.mean(0) / (B * n_feat))
    cat = [torch.cat(p, dim=-1).cpu().numpy() for p in (Ks, cs, Js)]
    return BatchSimulation(arch=arch, width=width, depth=depth, batch_size=B, hp=dict(hp),
                           K0=float(K0), K_nets=cat[0], c_nets=cat[1], J_nets=cat[2],
                           seconds=time.perf_counter() - t0)


def _pair_corr(h: torch.Tensor) -> torch.Tensor:
    """Mean over pairs a ≠ b of the cosine of examples a and b, per network: h (n, B, F)."""
    u = h / h.norm(dim=-1, keepdim=True)
    g = u @ u.transpose(1, 2)
    B = h.shape[1]
    return (g.sum((1, 2)) - B) / (B * (B - 1))


def batch_theory(arch: Op, depth: int, batch_size: int, K0: float = 1.0, **hp):
    """The theory's K^l, J^{0,l}, c^l for a batch of i.i.d. examples (c_0 = 0): the finite-batch
    theory for ``BatchNorm(B)`` blocks, the fold (per-neuron offset O_C^0 = 0) otherwise."""
    from ..derive import derive

    if split_block(arch) is not None:
        return derive(arch).run(depth, K0=K0, c0=0.0, **hp)
    th = derive(arch)
    if getattr(th, "multi_axis", False):
        return th.run(depth, K0=K0, c0=0.0, O_C0=0.0, **hp)
    return th.run(depth, K0=K0, c0=0.0, **hp)


@dataclass(frozen=True)
class BatchValidation(ScoredRows):
    """Rows (quantity, layer, theory, per-width MC ± SE, N → ∞ ± SE, z) and the verdict
    (:class:`~critsym.torch.validate.ScoredRows`: the rule of :func:`critsym.validate`)."""

    rows: list[dict]
    sims: list[BatchSimulation]
    z_max: float

    def to_text(self) -> str:
        lines = [f"{'q':>2} {'l':>3} {'theory':>12} {'N->inf':>22} {'z':>7}"]
        for r in self.rows:
            z = "unscored" if r["reason"] else "-" if r["z"] is None else f"{r['z']:+.2f}"
            lines.append(f"{r['quantity']:>2} {r['layer']:>3} {r['theory']:>12.6g} "
                         f"{r['extrapolated']:>12.6g} ±{r['extrapolated_se']:<8.2g} {z:>7}")
        lines.append(f"max |z| = {self.max_abs_z:.2f} (threshold {self.z_max:g})")
        return "\n".join(lines)


def _score(quantity: str, layer: int, theory: float, xs: Sequence[float],
           mc: Sequence[float], se: Sequence[float]) -> dict:
    """:func:`critsym.torch.validate.score` of one entry, extrapolated linearly in 1/x (x the
    widths, or the batch sizes); layer 0 (K^0 and J^{0,0}, fixed by the inputs) is not scored."""
    if layer == 0:
        mc, se = [float(v) for v in mc], [float(v) for v in se]
        return dict(quantity=quantity, layer=0, theory=float(theory), mc=mc, mc_se=se,
                    extrapolated=mc[-1], extrapolated_se=0.0, slope=0.0, z=None, reason=None)
    return score(quantity, layer, theory, xs, mc, se)


def validate_batch(arch: Op, widths: Sequence[int], depth: int, batch_size: int | None = None,
                   *, n_nets: int | Sequence[int] = 16, n_probes: int = 2, K0: float = 1.0,
                   seed: int = 0, z_max: float = 4.0, quantities: Sequence[str] = ("K", "J"),
                   theory=None, spatial: tuple[int, ...] = (), **hp: float) -> BatchValidation:
    """Simulate at each width, extrapolate in 1/N (weighted least squares, as
    :func:`critsym.validate`), and score z = (MC_∞ − theory)/SE against ``theory`` (a
    :class:`~critsym.theory.RunResult`; default :func:`batch_theory`)."""
    arch = as_op(arch)
    widths = tuple(widths)
    nn = [n_nets] * len(widths) if isinstance(n_nets, int) else list(n_nets)
    sims = [simulate_batch(arch, w, depth, batch_size, n_nets=n, n_probes=n_probes, K0=K0,
                           seed=seed + 17 * i, spatial=spatial, **hp)
            for i, (w, n) in enumerate(zip(widths, nn, strict=True))]
    B = sims[0].batch_size
    th = theory if theory is not None else batch_theory(arch, depth, B, K0, **hp)
    rows = []
    for q in quantities:
        for layer in range(depth + 1):
            tv = float(np.asarray(getattr(th, q))[layer])
            mc = [float(getattr(s, q)[layer]) for s in sims]
            se = [float(getattr(s, q + "_se")[layer]) for s in sims]
            rows.append(_score(q, layer, tv, widths, mc, se))
    return BatchValidation(rows=rows, sims=sims, z_max=z_max)


def validate_batch_limit(arch: Op, widths: Sequence[int], depth: int,
                         batch_sizes: Sequence[int], *, n_nets: int = 16, n_probes: int = 2,
                         K0: float = 1.0, seed: int = 0, z_max: float = 4.0,
                         quantities: Sequence[str] = ("K", "J"), theory=None,
                         **hp: float) -> BatchValidation:
    """The infinite-batch check: for each batch size the 1/N-extrapolated K^l, J^{0,l} (as in
    :func:`validate_batch`), then a second weighted fit linear in 1/B gives the B → ∞ value,
    scored against the fold's ``BatchNorm()`` theory (per-neuron offset O_C^0 = 0 for i.i.d.
    examples; or ``theory``, a :class:`~critsym.theory.RunResult`).  ``batch_sizes`` should be
    large enough that O(1/B²) is below the errors."""
    arch = as_op(arch)
    if None not in _batch_of(arch) or len(_batch_of(arch)) != 1:
        raise SimulationError("validate_batch_limit checks the infinite-batch rule: use an "
                              "architecture whose BatchNorms are all BatchNorm()")
    th = theory if theory is not None else batch_theory(arch, depth, 0, K0, **hp)
    per_B = [validate_batch(arch, widths, depth, B, n_nets=n_nets, n_probes=n_probes, K0=K0,
                            seed=seed + 1000 * i, quantities=quantities, theory=th, **hp)
             for i, B in enumerate(batch_sizes)]
    rows = []
    for j, r0 in enumerate(per_B[0].rows):
        q, layer = r0["quantity"], r0["layer"]
        tv = float(np.asarray(getattr(th, q))[layer])
        vals = [v.rows[j]["extrapolated"] for v in per_B]
        ses = [v.rows[j]["extrapolated_se"] for v in per_B]
        reasons = [v.rows[j]["reason"] for v in per_B if v.rows[j]["reason"]]
        row = _score(q, layer, tv, batch_sizes, vals, ses)
        if reasons:  # a batch size whose own entry could not be scored
            row.update(z=None, reason=reasons[0])
        rows.append(row)
    return BatchValidation(rows=rows, sims=[s for v in per_B for s in v.sims], z_max=z_max)
