r"""Fixed points of the variance map K^{l+1} = F(K^l), vectorised over hyperparameter grids.

The fixed point reported is the one the recursion reaches from ``K0`` (the stable fixed point of
its basin).  For the monotone maps of the standard blocks the iteration K ← F(K) never jumps over
a fixed point, so the search is:

1. a few plain iterations from ``K0``;
2. a bracket in u = log K: steps of growing size in the direction of sign(log F(e^u) − u) until
   the sign changes (a bracket) or u leaves [log K_MIN, log K_MAX];
3. vectorised Illinois (modified regula falsi) iterations inside the bracket to |Δu| ≤ 1e-14.

Leaving below K_MIN means K^l → 0: status ``"zero"`` (K* = 0, e.g. tanh at σ_b = 0, σ_w ≤ 1).
Leaving above K_MAX means unbounded growth: status ``"unbounded"``, with the growth law read off
F at large K: ``"exponential"`` when F(K)/K → r > 1 (K^l ∝ r^l, e.g. relu with σ_w² > 2),
``"linear"`` when F(K) − K → B > 0 (K^l ≈ B l, residual μ = 1), ``"power"`` when
F(K) − K ≈ B K^β (K^l ∝ l^{1/(1−β)}).  A map with F(K) = K on a whole range (relu at σ_w² = 2,
σ_b = 0) has every K as a fixed point: status ``"neutral"``, K* = K0.
χ_J* is χ_J(K*) (χ_J(0) for ``"zero"``, χ_J(K_MAX) — the large-K limit — for ``"unbounded"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HyperparameterError, warn_if_nan

K_MIN = 1e-14
K_MAX = 1e12
STATUSES = ("finite", "zero", "unbounded", "neutral", "unconverged")


def depth_scale(chi) -> np.ndarray:
    """ξ = −1/log χ: the depth over which a quantity multiplied by χ per layer changes by e
    (positive in the ordered phase, negative in the chaotic phase, infinite at χ = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -1.0 / np.log(chi)


def classify_phase(chi, tol: float = 1e-9) -> np.ndarray:
    """"ordered" (χ* < 1), "chaotic" (χ* > 1) or "critical" (|χ* − 1| ≤ tol), elementwise."""
    c = np.asarray(chi)
    return np.where(c > 1 + tol, "chaotic", np.where(c < 1 - tol, "ordered", "critical"))


@dataclass(frozen=True)
class FixedPoint:
    """Fixed point(s) of the variance map; every field has the broadcast hyperparameter shape.

    ``K_star``: K* (0 for status "zero", inf for "unbounded"); ``dF_dK``: stability F'(K*);
    ``chi_star``: χ_J* (the large-K limit for "unbounded"); ``status``: one of
    :data:`STATUSES`; ``growth``: "none", "exponential", "linear" or "power";
    ``growth_rate``: r (K^{l+1}/K^l → r) for exponential, B (K^l ≈ B l^q) for linear/power;
    ``growth_power``: q (1 for linear).
    """

    K_star: np.ndarray
    dF_dK: np.ndarray
    chi_star: np.ndarray
    status: np.ndarray
    growth: np.ndarray
    growth_rate: np.ndarray
    growth_power: np.ndarray

    @property
    def xi_J(self) -> np.ndarray:
        """ξ_J = −1/log χ_J* (depth scale of the APJN; inf at χ* = 1; negative when chaotic
        — its magnitude is the growth depth)."""
        return depth_scale(self.chi_star)

    def phase(self, tol: float = 1e-9) -> np.ndarray:
        """"ordered" (χ* < 1), "chaotic" (χ* > 1) or "critical" (|χ* − 1| ≤ tol)."""
        out = classify_phase(self.chi_star, tol)
        return out[()] if out.ndim == 0 else out

    @property
    def stable(self) -> np.ndarray:
        """|F'(K*)| ≤ 1 (marginal included)."""
        return np.abs(self.dF_dK) <= 1 + 1e-9

    def item(self) -> dict:
        """A scalar result as a dict of Python values."""
        if np.ndim(self.K_star) != 0:
            raise HyperparameterError("item() needs a scalar fixed point; index the arrays instead")
        return {k: getattr(self, k).item() for k in self.__dataclass_fields__}


def _illinois(g, a, b, ga, gb, tol=1e-14, maxiter=200):
    """Vectorised Illinois iterations for roots of g bracketed by [a, b] (ga·gb ≤ 0)."""
    a, b, ga, gb = (np.array(x, dtype=float) for x in (a, b, ga, gb))
    side = np.zeros(a.shape, dtype=int)
    active = np.abs(b - a) > tol * np.maximum(1.0, np.abs(a))
    active &= (ga != 0) & (gb != 0)
    for _ in range(maxiter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        A, B, GA, GB = a[idx], b[idx], ga[idx], gb[idx]
        with np.errstate(all="ignore"):
            c = (A * GB - B * GA) / (GB - GA)
        bad = ~np.isfinite(c) | (c <= np.minimum(A, B)) | (c >= np.maximum(A, B))
        c = np.where(bad, (A + B) / 2, c)
        gc = g(c, idx)
        left = np.sign(gc) == np.sign(GA)  # root in [c, B]: replace A
        s = side[idx]
        # Illinois: halve the retained end's value when the same end is kept twice
        newA = np.where(left, c, A)
        newGA = np.where(left, gc, np.where(s == -1, GA / 2, GA))
        newB = np.where(left, B, c)
        newGB = np.where(left, np.where(s == 1, GB / 2, GB), gc)
        side[idx] = np.where(left, 1, -1)
        a[idx], b[idx], ga[idx], gb[idx] = newA, newB, newGA, newGB
        done = (np.abs(newB - newA) <= tol * np.maximum(1.0, np.abs(c))) | (gc == 0)
        done |= np.abs(gc) <= 1e-15
        a[idx[done]] = c[done]
        b[idx[done]] = c[done]
        active[idx[done]] = False
    root = np.where(np.abs(ga) <= np.abs(gb), a, b)
    root = np.where(a == b, a, root)
    return root, active


def fixed_point(theory, K0: object = 1.0, *, iterations: int = 6, **hp) -> FixedPoint:
    """The fixed point of ``theory``'s variance map reached from ``K0`` (vectorised).

    Hyperparameters may be arrays, broadcast together with ``K0``.  Never raises for a missing
    finite fixed point: see :class:`FixedPoint` ``status`` and ``growth``.  Theories with a
    vector state (``theory.state_symbols``, e.g. a Mixer's (K, O_T, O_C)) are solved by
    :func:`~critsym.criticality.state_fixed_point.state_fixed_point` (extra keywords O_T0, O_C0).
    """
    if len(theory.state_symbols) > 1:
        from .state_fixed_point import state_fixed_point

        return state_fixed_point(theory, K0, **hp)
    vals = theory.values(hp)
    try:
        K0 = np.asarray(K0, dtype=float)
    except (TypeError, ValueError):
        raise HyperparameterError(f"K0 must be a number > 0 (a starting variance), got {K0!r}"
                                  ) from None
    if not np.all(np.isfinite(K0)) or np.any(K0 <= 0):
        raise HyperparameterError(f"K0 must be finite and > 0 (a starting variance), got {K0}")
    shape = np.broadcast_shapes(K0.shape, *(v.shape for v in vals))
    n = int(np.prod(shape))
    V = [np.broadcast_to(v, shape).reshape(n) for v in vals]
    Fc, chic, dFc = theory.lambdify("F"), theory.lambdify("chi"), theory.lambdify("dF_dK")

    def F(K, idx=None):
        args = V if idx is None else [v[idx] for v in V]
        with np.errstate(all="ignore"):
            return np.asarray(Fc(K, *args), dtype=float) * np.ones_like(K)

    def g(u, idx=None):
        with np.errstate(all="ignore"):
            out = np.log(F(np.exp(u), idx)) - u
        return np.where(np.isnan(out), -np.inf, out)

    u_min, u_max = np.log(K_MIN), np.log(K_MAX)
    K = np.broadcast_to(K0, shape).reshape(n).astype(float)
    prev = K.copy()
    for _ in range(iterations):
        Kn = F(np.clip(K, K_MIN, K_MAX))
        prev, K = K, np.where(np.isfinite(Kn), Kn, K_MAX)
    u = np.log(np.clip(K, K_MIN, K_MAX))
    gu = g(u)
    status = np.full(n, "unconverged", dtype=object)
    Kstar = np.full(n, np.nan)

    # neutral maps: F(K) = K at K and at K·e^{±1}
    flat = np.abs(gu) <= 1e-13
    if np.any(flat):
        i = np.nonzero(flat)[0]
        flat[i] = (np.abs(g(u[i] + 1, i)) <= 1e-13) & (np.abs(g(u[i] - 1, i)) <= 1e-13)
    status[flat] = "neutral"
    Kstar[flat] = K[flat]
    exact = (gu == 0) & ~flat
    status[exact] = "finite"
    Kstar[exact] = K[exact]

    # bracket search
    todo = np.nonzero(status == "unconverged")[0]
    direction = np.sign(gu[todo])
    step = np.maximum(2 * np.abs(np.log(np.clip(K[todo], K_MIN, None))
                                 - np.log(np.clip(prev[todo], K_MIN, None))), 0.05)
    lo, glo = u[todo], gu[todo]
    hi, ghi = lo.copy(), glo.copy()
    found = np.zeros(todo.size, bool)
    out_low = np.zeros(todo.size, bool)
    out_high = np.zeros(todo.size, bool)
    for _ in range(60):
        act = ~(found | out_low | out_high)
        if not np.any(act):
            break
        j = np.nonzero(act)[0]
        ut = np.clip(lo[j] + direction[j] * step[j], u_min, u_max)
        gt = g(ut, todo[j])
        sc = np.sign(gt) != np.sign(glo[j])
        hi[j], ghi[j] = ut, gt
        found[j[sc]] = True
        nsc = j[~sc]
        lo[nsc], glo[nsc] = ut[~sc], gt[~sc]
        step[nsc] *= 2
        out_low[nsc] = ut[~sc] <= u_min
        out_high[nsc] = ut[~sc] >= u_max
    if np.any(found):
        f = np.nonzero(found)[0]
        root, unconv = _illinois(lambda c, idx: g(c, todo[f][idx]), lo[f], hi[f], glo[f], ghi[f])
        Kstar[todo[f]] = np.exp(root)
        status[todo[f]] = np.where(unconv, "unconverged", "finite")
    status[todo[out_low]] = "zero"
    Kstar[todo[out_low]] = 0.0
    status[todo[out_high]] = "unbounded"
    Kstar[todo[out_high]] = np.inf

    # stability, chi*
    # the K -> 0 limits are taken at K_MIN (some expressions carry 1/K factors)
    Keval = np.where(status == "unbounded", K_MAX, np.where(np.isfinite(Kstar), Kstar, K_MAX))
    Keval = np.where(np.isnan(Keval), K_MAX, np.maximum(Keval, K_MIN))
    with np.errstate(all="ignore"):
        chi = np.asarray(chic(Keval, *V), dtype=float) * np.ones(n)
        dF = np.asarray(dFc(Keval, *V), dtype=float) * np.ones(n)

    growth = np.full(n, "none", dtype=object)
    rate = np.full(n, np.nan)
    power = np.full(n, np.nan)
    ub = np.nonzero(status == "unbounded")[0]
    if ub.size:
        K1, K2 = 1e8, 1e7
        F1, F2 = F(np.full(ub.size, K1), ub), F(np.full(ub.size, K2), ub)
        r = F1 / K1
        expo = r > 1 + 1e-6
        d1, d2 = F1 - K1, F2 - K2
        with np.errstate(all="ignore"):
            beta = np.log(d1 / d2) / np.log(K1 / K2)
        lin = ~expo & (np.abs(beta) < 0.02)
        growth[ub] = np.where(expo, "exponential", np.where(lin, "linear", "power"))
        rate[ub] = np.where(expo, r, np.where(lin, d1, np.nan))
        with np.errstate(all="ignore"):
            q = 1 / (1 - beta)
            # K ≈ B l^q with B from dK/dl = d K^β: B = (d/K^β (1 − β))^q
            Bp = ((d1 / K1**beta) * (1 - beta)) ** q
        power[ub] = np.where(expo, np.nan, np.where(lin, 1.0, q))
        rate[ub] = np.where(~expo & ~lin, Bp, rate[ub])

    def shaped(x):
        x = np.asarray(x).reshape(shape)
        return x[()] if x.ndim == 0 else x

    warn_if_nan("χ_J* or F'(K*) is undefined (NaN) here: the maps are 0/0 at this fixed point "
                "(e.g. a LayerNorm of a signal that vanishes when sigma_w = sigma_b = 0), or "
                "K* was not found (status 'unconverged')", chi, dF, Kstar)
    return FixedPoint(
        K_star=shaped(Kstar), dF_dK=shaped(dF), chi_star=shaped(chi),
        status=shaped(status.astype(str)), growth=shaped(growth.astype(str)),
        growth_rate=shaped(rate), growth_power=shaped(power),
    )
