r"""A small Monte Carlo of shaped networks in torch, to validate the network maps.

The block (any critsym architecture with numeric hyperparameters; shaped activations are
operators too) is built ``depth`` times at width N by the core's torch build, with independent
weights, W = σ_w·O (O Haar-orthogonal, ``weights="orthogonal"``) or W_ij ~ N(0, σ_w²/N)
(``"gaussian"``), b_i ~ N(0, σ_b²), float64.  Two inputs with per-coordinate variance K^0 and
correlation c^0 are propagated:

* the output correlation c^L = <h_a, h_b> / (|h_a| |h_b|) estimates the network C map C_f(c^0);
* the APJN J^{0,L} = ||∂h^L/∂h^0||_F² / N is estimated by Hutchinson probes
  (E_v ||Jᵀv||² = ||J||_F² for v ~ N(0, I)), one VJP per probe.

Means over networks with their standard errors are returned, so that tests can use tolerances
from the measured spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SimulationError
from ..ops.base import Op, as_op
from ..stats import mean_se


def build_layers(block: Op, width: int, depth: int, weights: str, gen: torch.Generator):
    """``depth`` draws of the block's torch forward map (the core's ``Op.to_torch`` through
    :func:`critsym.torch.build.build_blocks`) for one network, weights from ``gen``; LayerNorm
    without eps."""
    from ..torch.build import build_blocks
    from ..torch.modules import BuildContext

    free = sorted(s.name for s in block.hyperparameters())
    if free:
        raise SimulationError(
            f"the block has symbolic hyperparameters {free}; give the architecture numbers "
            "(arch.subs({...}))")
    ctx = BuildContext(n_nets=1, width=width, values={}, generators=[gen], ln_eps=0.0,
                       weights=weights)
    return build_blocks(block, ctx, (width,), depth)


@dataclass(frozen=True)
class MCResult:
    """Per-network measurements (arrays over networks) and their means / standard errors."""

    c: np.ndarray
    J: np.ndarray

    @staticmethod
    def _se(a):
        return float(mean_se(a)[1]) if len(a) > 1 else float("inf")

    @property
    def c_mean(self) -> float:
        return float(np.mean(self.c))

    @property
    def c_se(self) -> float:
        return self._se(self.c)

    @property
    def J_mean(self) -> float:
        return float(np.mean(self.J))

    @property
    def J_se(self) -> float:
        return self._se(self.J)


def simulate(block: Op, depth: int, *, width: int = 256, c0: float = 0.0, K0: float = 1.0,
             networks: int = 8, probes: int = 4, weights: str = "orthogonal",
             seed: int = 0) -> MCResult:
    """Output correlation and APJN of ``depth`` random blocks, per network (see module doc)."""
    if weights not in ("orthogonal", "gaussian"):
        raise SimulationError(f"weights must be 'orthogonal' or 'gaussian', got {weights!r}")
    if not -1 <= c0 <= 1:
        raise SimulationError(f"c0 must lie in [-1, 1], got {c0}")
    if width < 2 or depth < 1 or networks < 1 or probes < 1:
        raise SimulationError("width >= 2, depth >= 1, networks >= 1 and probes >= 1 required")
    block = as_op(block)
    gen = torch.Generator().manual_seed(seed)
    cs, Js = [], []
    for _ in range(networks):
        layers = build_layers(block, width, depth, weights, gen)
        g = torch.randn(2, width, generator=gen, dtype=torch.float64)
        e1 = g[0] / g[0].norm()
        e2 = g[1] - (g[1] @ e1) * e1
        e2 = e2 / e2.norm()
        s = np.sqrt(K0 * width)
        x = torch.stack([s * e1, s * (c0 * e1 + np.sqrt(1 - c0 * c0) * e2)])
        x.requires_grad_(True)
        h = x.unsqueeze(0)  # one network
        for f in layers:
            h = f(h)
        h = h[0]
        ha, hb = h[0].detach(), h[1].detach()
        cs.append(float(ha @ hb / (ha.norm() * hb.norm())))
        tot = 0.0
        for _ in range(probes):
            v = torch.randn(width, generator=gen, dtype=torch.float64)
            (gx,) = torch.autograd.grad(h[0], x, v, retain_graph=True)
            tot += float((gx[0] ** 2).sum()) / width
        Js.append(tot / probes)
    return MCResult(np.array(cs), np.array(Js))
