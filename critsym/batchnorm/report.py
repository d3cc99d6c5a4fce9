r"""The criticality report of a BatchNorm block: its gradient explosion rate and the rate's limit.

A BatchNorm MLP block has no critical initialization: the per-layer APJN growth at the fixed
point is the same for every σ_w and σ_b — λ(B) at batch size B, E φ'(z)²/Var φ(z) at infinite
batch — and exceeds 1 unless φ is linear (where it is (B − 2)/(B − 3), → 1 as B → ∞).
:func:`explosion_report` measures the rate on a grid of initializations (so the claim "for every
σ_w" is checked, not assumed) and names its B → ∞ limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DerivationError
from ..ops.base import Op, as_op
from .theory import FiniteBatchTheory, explosion_line

SIGMA_W = np.geomspace(0.05, 10.0, 21)
SIGMA_B = np.array([0.0, 0.3, 1.0, 3.0])


@dataclass(frozen=True)
class ExplosionReport:
    """``rate``: per-layer APJN growth at the fixed point; ``limit``: its B → ∞ value;
    ``spread``: max − min of the rate over the (σ_w, σ_b) grid checked."""

    architecture: str
    batch_size: int | None
    rate: float
    limit: float
    spread: float
    text: str

    def __repr__(self) -> str:
        return self.text


def explosion_report(arch: Op, depth: int = 4, **hp) -> ExplosionReport:
    """The explosion rate of a BatchNorm block for every initialization (module doc).

    ``hp``: values for hyperparameters other than sigma_w, sigma_b (e.g. an activation
    parameter).  The rate is χ_J after ``depth`` blocks (the BatchNorm MLP reaches its fixed point
    in one block).  Raises :class:`DerivationError` when the rate depends on σ_w or σ_b (then the
    block has a phase diagram: use :func:`critsym.summary`)."""
    from ..derive import derive

    arch = as_op(arch)
    th = derive(arch)
    sw, sb = np.meshgrid(SIGMA_W, SIGMA_B)
    vals = {"sigma_w": sw, "sigma_b": sb, **hp}
    vals = {k: v for k, v in vals.items() if k in th.hyperparameter_names}
    if isinstance(th, FiniteBatchTheory):
        chi = th.run(depth, **vals).chi[-1] * np.ones_like(sw)
        B, limit = th.batch_size, th.growth_infinite
    else:
        kw = {"O_C0": 0.0} if getattr(th, "multi_axis", False) else {}
        chi = np.asarray(th.run(depth, K0=1.0, **kw, **vals).chi[-1])
        B, limit = None, float(np.median(chi))
    spread = float(np.max(chi) - np.min(chi))
    rate = float(np.median(chi))
    if spread > 1e-9 * rate:
        raise DerivationError(
            f"{arch!r}: the per-layer growth depends on the initialization (from {np.min(chi):.4g} "
            f"to {np.max(chi):.4g} over sigma_w in [0.05, 10]); it has a phase diagram: use "
            "critsym.summary / critsym.critical_point")
    return ExplosionReport(architecture=repr(arch), batch_size=B, rate=rate, limit=limit,
                           spread=spread, text=explosion_line(rate, limit, B))
