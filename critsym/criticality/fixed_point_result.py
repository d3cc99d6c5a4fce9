"""The result type of :func:`critsym.criticality.fixed_point.fixed_point` and the helpers it
shares with :func:`critsym.criticality.state_fixed_point.state_fixed_point` (moved here from
``fixed_point`` so that neither solver module imports the other; all names stay importable from
:mod:`critsym.criticality.fixed_point`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError

K_MIN = 1e-14
#: top of the scanned range (raised to 10³·max(K0, F(1)) for maps of a larger scale)
K_MAX = 1e12


def depth_scale(chi) -> np.ndarray:
    """ξ = −1/log χ: the depth over which a quantity multiplied by χ per layer changes by e
    (positive in the ordered phase, negative in the chaotic phase, infinite at χ = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -1.0 / np.log(chi)


def classify_phase(chi, tol: float = 1e-9) -> np.ndarray:
    """"ordered" (χ* < 1), "chaotic" (χ* > 1), "critical" (|χ* − 1| ≤ tol) or
    "undetermined" (χ* is NaN), elementwise."""
    c = np.asarray(chi, dtype=float)
    out = np.where(c > 1 + tol, "chaotic", np.where(c < 1 - tol, "ordered", "critical"))
    return np.where(np.isnan(c), "undetermined", out)


def growth_law(K1, F1, K2, F2):
    """(growth, rate, power) of unbounded growth from the map at two large states K1 > K2.

    F(K)/K → r > 1: ``"exponential"`` (rate r); F(K) − K ≈ B K^β with β = log(d1/d2)/log(K1/K2),
    d = F − K: ``"linear"`` (|β| < 0.02, rate B = d1, power 1) or ``"power"`` (K^l ≈ B l^q,
    q = 1/(1 − β), B = (d1 K1^{−β} (1 − β))^q from dK/dl = d K^β).  Also returns ``grows``
    (r > 1 or d1 > 0)."""
    with np.errstate(all="ignore"):
        r = F1 / K1
        expo = r > 1 + 1e-6
        d1, d2 = F1 - K1, F2 - K2
        beta = np.log(d1 / d2) / np.log(K1 / K2)
        lin = ~expo & (np.abs(beta) < 0.02)
        q = 1 / (1 - beta)
        Bp = ((d1 / K1**beta) * (1 - beta)) ** q
    growth = np.where(expo, "exponential", np.where(lin, "linear", "power")).astype(object)
    rate = np.where(expo, r, np.where(lin, d1, Bp))
    power = np.where(expo, np.nan, np.where(lin, 1.0, q))
    return growth, rate, power, expo | (d1 > 0)



@dataclass(frozen=True)
class FixedPoint:
    """Fixed point(s) of the variance map; every field has the broadcast hyperparameter shape
    (the ``roots_*`` fields one more trailing axis over the fixed points, NaN-padded).

    ``K_star``: K* reached from K0 (0 for status "zero", inf for "unbounded"); ``dF_dK``:
    stability F'(K*); ``chi_star``: χ_J* (the large-K limit for "unbounded"); ``status``: one
    of :data:`STATUSES`; ``growth``: "none", "exponential", "linear" or "power";
    ``growth_rate``: r (K^{l+1}/K^l → r) for exponential, B (K^l ≈ B l^q) for linear/power;
    ``growth_power``: q (1 for linear).

    All fixed points in range (one-component maps): ``roots_K`` (ascending), ``roots_stable``
    (attracting from both sides), ``roots_dF`` (F'(K)), ``roots_chi`` (χ_J there);
    ``attractors``: number of attractors (stable roots, plus K = 0 and unbounded growth where
    they attract); ``reached``: index into ``roots_K`` of the fixed point K0 flows to (−1 for
    "zero", "unbounded", "neutral", "unconverged").
    """

    K_star: np.ndarray
    dF_dK: np.ndarray
    chi_star: np.ndarray
    status: np.ndarray
    growth: np.ndarray
    growth_rate: np.ndarray
    growth_power: np.ndarray
    roots_K: np.ndarray | None = None
    roots_stable: np.ndarray | None = None
    roots_dF: np.ndarray | None = None
    roots_chi: np.ndarray | None = None
    attractors: np.ndarray | None = None
    reached: np.ndarray | None = None

    @property
    def xi_J(self) -> np.ndarray:
        """ξ_J = −1/log χ_J* (depth scale of the APJN; inf at χ* = 1; negative when chaotic
        — its magnitude is the growth depth)."""
        return depth_scale(self.chi_star)

    def phase(self, tol: float = 1e-9) -> np.ndarray:
        """"ordered" (χ* < 1), "chaotic" (χ* > 1), "critical" (|χ* − 1| ≤ tol) or
        "undetermined" (χ* NaN)."""
        out = classify_phase(self.chi_star, tol)
        return out[()] if out.ndim == 0 else out

    @property
    def stable(self) -> np.ndarray:
        """|F'(K*)| ≤ 1 (marginal included)."""
        return np.abs(self.dF_dK) <= 1 + 1e-9

    @property
    def bistable(self) -> np.ndarray:
        """Two or more attractors: the fixed point reached depends on K0."""
        if self.attractors is None:
            return np.zeros(np.shape(self.K_star), bool)[()]
        return np.asarray(self.attractors) >= 2

    def item(self) -> dict:
        """A scalar result as a dict of Python values (lists for the ``roots_*`` fields)."""
        if np.ndim(self.K_star) != 0:
            raise HyperparameterError("item() needs a scalar fixed point; index the arrays instead")
        out = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = None if v is None else np.asarray(v).tolist()
        return out
