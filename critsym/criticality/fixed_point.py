r"""Fixed points of the variance map K^{l+1} = F(K^l), vectorised over hyperparameter grids.

All fixed points in range, with their stability, and the one a given ``K0`` flows to.

With u = log K and g(u) = log F(e^u) − u, the fixed points are the roots of g.  The search:

1. a scan of g on a log grid of ``per_decade`` points per decade over [K_MIN, K_top],
   K_top = max(K_MAX, 10³·max(K0, F(1))) (the range follows the scale of the map: a bias
   σ_b = 10⁶ puts K* at 10¹², inside the range);
2. a bracket at every sign change of g; where |g| has a local minimum between two scan
   points of the same sign, or stays below 0.05 at both ends of a bracket (flat maps near a
   cusp), a fine scan of 40 points and a golden-section search for the extremum of g between
   them: roots hidden between scan points (the pair near a saddle-node) get their brackets;
3. vectorised Illinois (modified regula falsi) iterations inside every bracket to |Δu| ≤ 1e-14.

A root where g goes from + to − (F'(K*) < 1) attracts from both sides (``roots_stable``).
K = 0 attracts when F(K) < K at K_MIN, unbounded growth attracts when F(K) > K at the top of the
range.  The variance maps of the built-in blocks are non-decreasing in K, so the orbit from
``K0`` never jumps over a fixed point: it converges to the first root in the direction of
sign g(log K0) (``reached``), to 0 (status ``"zero"``) or grows without bound
(``"unbounded"``).  Several attractors (``attractors`` ≥ 2, :attr:`FixedPoint.bistable`) mean
that the fate of the network depends on K0: a first-order transition between them is found by
:func:`critsym.criticality.critical_point`.

For ``"unbounded"`` the growth law is read off F at large K (:func:`growth_law`):
``"exponential"`` when F(K)/K → r > 1 (K^l ∝ r^l, e.g. relu with σ_w² > 2), ``"linear"`` when
F(K) − K → B > 0 (K^l ≈ B l, residual μ = 1), ``"power"`` when F(K) − K ≈ B K^β
(K^l ∝ l^{1/(1−β)}).  A map with F(K) = K on a whole range (relu at σ_w² = 2, σ_b = 0) has every
K as a fixed point: status ``"neutral"``, K* = K0.

χ_J* is χ_J(K*): χ_J(K_MIN) for ``"zero"`` (the K → 0 limit) and, for ``"unbounded"``, the
K → ∞ limit of χ_J (:func:`large_K_limit`: from the largest K ≤ K_top with a finite value,
Aitken-extrapolated where χ_J converges geometrically on a ladder of K).  Where no finite
value exists χ_J* is NaN and the phase is ``"undetermined"`` (NaN is never a phase).
"""

from __future__ import annotations

import numpy as np

from ..errors import HyperparameterError, warn_if_nan
from .fixed_point_result import (  # noqa: F401  (re-exported: public names of this module)
    K_MAX,
    K_MIN,
    FixedPoint,
    classify_phase,
    depth_scale,
    growth_law,
)

PER_DECADE = 2
ZERO_TOL = 1e-13
#: a bracket whose ends both have |g| below this gets a fine scan for hidden roots
REFINE_G = 0.05
STATUSES = ("finite", "zero", "unbounded", "neutral", "unconverged")
PHASES = ("ordered", "critical", "chaotic", "undetermined")
_CHUNK = 16384


def _aitken(x):
    """One Aitken Δ² step on a sequence (axis 0), NaN where the differences do not shrink
    geometrically (ratio outside (0, 0.9)) or are at rounding level."""
    d0, d1 = x[:-2] - x[1:-1], x[1:-1] - x[2:]
    with np.errstate(all="ignore"):
        rho = d0 / d1
        out = x[:-2] + d0 * rho / (1 - rho)
    ok = (rho > 0) & (rho < 0.9) & (np.abs(d0) > 1e-13 * np.abs(x[:-2]))
    return np.where(ok, out, np.nan), np.abs(d0) <= 1e-13 * np.abs(x[:-2])


def large_K_limit(chi_at, K_top, steps: int = 25) -> np.ndarray:
    """lim_{K→∞} χ(K) (vectorised over the entries of ``K_top``).

    A coarse ladder K_top·10^{−j/2}, j < ``steps``, finds the largest K with a finite value
    K_f; seven values on the fine ladder K_f·10^{−i/8} are then Aitken-extrapolated up to three
    times (each step removes one power K^{−γ} of the approach), as long as the differences
    shrink geometrically and are above rounding level; a converged ladder is used as it is.
    elu/selu (χ_J = σ_w²λ²/2 + O(K^{−1/2}), quadrature NaN above K ≈ 3·10³): error ≲ 1e-8."""
    K_top = np.asarray(K_top, dtype=float)
    ladder = K_top[None, :] * 10.0 ** (-np.arange(steps)[:, None] / 2)
    with np.errstate(all="ignore"):
        vals = np.asarray(chi_at(ladder), dtype=float) * np.ones_like(ladder)
    fin = np.isfinite(vals)
    j0 = np.argmax(fin, axis=0)
    Kf = ladder[j0, np.arange(K_top.size)]
    fine = Kf[None, :] * 10.0 ** (-np.arange(7)[:, None] / 8)
    with np.errstate(all="ignore"):
        fv = np.asarray(chi_at(fine), dtype=float) * np.ones_like(fine)
    out = np.full(K_top.size, np.nan)
    for i in range(K_top.size):
        if not fin[:, i].any():
            continue
        x = fv[:, i]
        if not np.all(np.isfinite(x)):
            out[i] = vals[j0[i], i]
            continue
        out[i] = x[0]
        for _ in range(3):
            if x.size < 3:
                break
            a, flat = _aitken(x)
            if flat[0] or not np.all(np.isfinite(a)):
                break
            out[i], x = a[0], a
    return out


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


class _Map:
    """F, χ_J and F' of a one-component theory at flat hyperparameter arrays (the theory's
    compiled maps, :meth:`~critsym.theory.Theory.lambdify`); ``idx`` selects entries,
    evaluation is chunked."""

    def __init__(self, theory, V: dict):
        self.V = [V[nm] for nm in theory.hyperparameter_names]
        self.fns = {k: theory.lambdify(k) for k in ("F", "chi", "dF_dK")}

    def _call(self, name, K, idx):
        K = np.asarray(K, dtype=float)
        sub = self.V if idx is None else [v[idx] for v in self.V]
        shape = np.broadcast_shapes(K.shape, *(v.shape for v in sub))
        flatK = np.broadcast_to(K, shape).reshape(-1)
        flat = [np.broadcast_to(v, shape).reshape(-1) for v in sub]
        res = np.empty(flatK.size)
        fn = self.fns[name]
        for s in range(0, flatK.size, _CHUNK):
            sl = slice(s, s + _CHUNK)
            with np.errstate(all="ignore"):
                r = fn(flatK[sl], *(v[sl] for v in flat))
            res[sl] = np.asarray(r, dtype=float) * np.ones(flatK[sl].shape)
        return res.reshape(shape)

    def F(self, K, idx=None):
        return self._call("F", K, idx)

    def chi(self, K, idx=None):
        return self._call("chi", K, idx)

    def dF(self, K, idx=None):
        return self._call("dF_dK", K, idx)

    def g(self, u, idx=None):
        """log F(e^u) − u (−inf where F ≤ 0, NaN where F is not finite)."""
        u = np.asarray(u, dtype=float)
        Fv = self.F(np.exp(u), idx)
        with np.errstate(all="ignore"):
            out = np.log(np.where(Fv > 0, Fv, 0.0)) - u
        return np.where(np.isfinite(Fv), out, np.nan)


def _signs(g):
    s = np.where(np.abs(g) <= ZERO_TOL, 0, np.sign(g))
    return np.where(np.isnan(g), 2, s).astype(int)


def _pair_candidates(S, G):
    """(i, p): scan points where |g| has a local minimum (≤ 1) between same-sign neighbours —
    two roots may lie in [u_{i−1}, u_{i+1}]."""
    if S.shape[0] < 3:
        return np.zeros(0, int), np.zeros(0, int)
    Si, A = S[1:-1], np.abs(G)
    cand = ((S[:-2] == Si) & (S[2:] == Si) & (np.abs(Si) == 1)
            & (A[1:-1] < A[:-2]) & (A[1:-1] <= A[2:]) & (A[1:-1] <= 1.0))
    ii, pp = np.nonzero(cand)
    return ii + 1, pp


def _golden_pairs(m, U, G, S):
    """Brackets for pairs of roots between two scan points: at :func:`_pair_candidates`,
    search the extremum of g on [u_{i−1}, u_{i+1}] (golden section on −sign·g); a sign flip
    there gives two brackets."""
    i, pp = _pair_candidates(S, G)
    if i.size == 0:
        return []
    sg = S[i, pp].astype(float)
    a, b = U[i - 1, pp], U[i + 1, pp]
    ga_, gb_ = G[i - 1, pp], G[i + 1, pp]
    ratio = (np.sqrt(5) - 1) / 2
    x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
    f1, f2 = sg * m.g(x1, pp), sg * m.g(x2, pp)
    best_x, best_f = np.where(f1 < f2, x1, x2), np.minimum(f1, f2)
    act = np.nonzero(best_f >= 0)[0]
    for _ in range(20):  # only candidates whose sign has not flipped yet
        if act.size == 0:
            break
        A_, B_, X1, X2, F1, F2 = a[act], b[act], x1[act], x2[act], f1[act], f2[act]
        left = F1 < F2  # minimum of sg·g in [a, x2]
        B_ = np.where(left, X2, B_)
        A_ = np.where(left, A_, X1)
        x2n = np.where(left, X1, A_ + ratio * (B_ - A_))
        x1n = np.where(left, B_ - ratio * (B_ - A_), X2)
        newx = np.where(left, x1n, x2n)
        fnew = sg[act] * m.g(newx, pp[act])
        f1[act], f2[act] = np.where(left, fnew, F2), np.where(left, F1, fnew)
        a[act], b[act], x1[act], x2[act] = A_, B_, x1n, x2n
        better = fnew < best_f[act]
        best_x[act] = np.where(better, newx, best_x[act])
        best_f[act] = np.where(better, fnew, best_f[act])
        act = act[best_f[act] >= 0]
    flip = best_f < 0
    out = []
    for k in np.nonzero(flip)[0]:
        p, lo, hi, xm, gm = pp[k], U[i[k] - 1, pp[k]], U[i[k] + 1, pp[k]], best_x[k], best_f[k]
        gmv = sg[k] * gm
        out.append((p, lo, xm, ga_[k], gmv))
        out.append((p, xm, hi, gmv, gb_[k]))
    return out


class _Sub:
    """The map restricted to the entries ``P`` (index k of a sub-array is entry P[k])."""

    def __init__(self, m, P):
        self.m, self.P = m, P

    def g(self, u, idx=None):
        return self.m.g(u, self.P if idx is None else self.P[idx])


def _fine_brackets(m, P, a, b, nf: int = 40):
    """All root brackets in the intervals [a_k, b_k] of entries P_k: sign changes on an
    ``nf``-point grid, and pairs between its points (:func:`_golden_pairs`)."""
    if P.size == 0:
        return []
    Uf = a[None, :] + np.linspace(0.0, 1.0, nf)[:, None] * (b - a)[None, :]
    sub = _Sub(m, P)
    Gf = sub.g(Uf)
    Sf = _signs(Gf)
    ok = (Sf[:-1] != 2) & (Sf[1:] != 2) & (Sf[:-1] * Sf[1:] < 0)
    ii, kk = np.nonzero(ok)
    out = [(P[k], Uf[i, k], Uf[i + 1, k], Gf[i, k], Gf[i + 1, k])
           for i, k in zip(ii, kk, strict=True)]
    out += [(P[int(k)], lo, hi, ga, gb) for k, lo, hi, ga, gb in _golden_pairs(sub, Uf, Gf, Sf)]
    return out


def fixed_point(theory, K0: object = 1.0, *, per_decade: int = PER_DECADE,
                **hp) -> FixedPoint:
    """All fixed points of ``theory``'s variance map and the one reached from ``K0``
    (vectorised; see the module docstring).

    Hyperparameters may be arrays, broadcast together with ``K0``.  Never raises for a missing
    finite fixed point: see :class:`FixedPoint` ``status`` and ``growth``.  Theories with a
    vector state (``theory.state_symbols``, e.g. a Mixer's (K, O_T, O_C)) are solved by
    :func:`~critsym.criticality.state_fixed_point.state_fixed_point` (extra keywords O_T0, O_C0).
    """
    if len(theory.state_symbols) > 1:
        from .state_fixed_point import state_fixed_point

        return state_fixed_point(theory, K0, **hp)
    hp.pop("iterations", None)  # accepted for compatibility: the search does not iterate
    vals = theory.values(hp)
    names = theory.hyperparameter_names
    try:
        K0 = np.asarray(K0, dtype=float)
    except (TypeError, ValueError):
        raise HyperparameterError(f"K0 must be a number > 0 (a starting variance), got {K0!r}"
                                  ) from None
    if not np.all(np.isfinite(K0)) or np.any(K0 <= 0):
        raise HyperparameterError(f"K0 must be finite and > 0 (a starting variance), got {K0}")
    if not isinstance(per_decade, (int, np.integer)) or per_decade < 1:
        raise HyperparameterError(f"per_decade must be an integer >= 1, got {per_decade!r}")
    shape = np.broadcast_shapes(K0.shape, *(v.shape for v in vals))
    n = int(np.prod(shape))
    V = {nm: np.broadcast_to(v, shape).reshape(n).astype(float)
         for nm, v in zip(names, vals, strict=True)}
    m = _Map(theory, V)
    K0f = np.broadcast_to(K0, shape).reshape(n).astype(float)

    # 1. scan of g on a log grid reaching K_MAX, or 1e3 times the scale of the map
    F1 = m.F(np.ones(n))
    scale = np.nan_to_num(np.maximum(K0f, F1), nan=1.0)
    top = np.clip(np.maximum(K_MAX, 1e3 * scale), K_MAX, 1e300)
    u_lo, u_hi = np.log(K_MIN), np.log(top)
    decades = float(np.max(u_hi - u_lo)) / np.log(10)
    M = int(np.ceil(per_decade * decades)) + 1
    t = np.linspace(0.0, 1.0, M)[:, None]
    U = u_lo + t * (u_hi - u_lo)[None, :]
    G = m.g(U)
    # a scan point on a root (K0 = 1 at the σ_w where 1 is a fixed point) would hide a second
    # root next to it: such interior points are moved by a tenth of the spacing
    zi, zp = np.nonzero(np.abs(G[1:-1]) <= ZERO_TOL)
    if zi.size:
        du = 0.1 * (u_hi - u_lo)[zp] / (M - 1)
        U[zi + 1, zp] += du
        G[zi + 1, zp] = m.g(U[zi + 1, zp], zp)
    S = _signs(G)

    u0 = np.log(np.clip(K0f, K_MIN, None))
    g0 = m.g(u0)
    neutral = ((np.abs(g0) <= ZERO_TOL) & (np.abs(m.g(u0 + 1)) <= ZERO_TOL)
               & (np.abs(m.g(u0 - 1)) <= ZERO_TOL))

    # 2. brackets (point, a, b, ga, gb): sign changes and pairs between scan points; runs of
    # rounding-level g inside the range are roots (left and right signs from their ends)
    valid = (S[:-1] != 2) & (S[1:] != 2)
    ii, pp = np.nonzero(valid & (S[:-1] * S[1:] < 0))
    # where g stays small over a scan interval (flat maps near a cusp) several roots may hide
    # in it: such intervals and the pair candidates get a fine scan
    small = np.minimum(np.abs(G[ii, pp]), np.abs(G[ii + 1, pp])) < REFINE_G
    ci, cp = _pair_candidates(S, G)
    fine = _fine_brackets(
        m, np.concatenate([pp[small], cp]),
        np.concatenate([U[ii[small], pp[small]], U[ci - 1, cp]]),
        np.concatenate([U[ii[small] + 1, pp[small]], U[ci + 1, cp]]))
    ii, pp = ii[~small], pp[~small]
    P = [pp]
    A, B, GA, GB = [U[ii, pp]], [U[ii + 1, pp]], [G[ii, pp]], [G[ii + 1, pp]]
    pairs = fine
    if pairs:
        arr = np.array(pairs, dtype=float)
        P.append(arr[:, 0].astype(int))
        for lst, k in zip((A, B, GA, GB), (1, 2, 3, 4), strict=True):
            lst.append(arr[:, k])
    P, A, B, GA, GB = (np.concatenate(x) for x in (P, A, B, GA, GB))
    keep = ~neutral[P]
    P, A, B, GA, GB = P[keep], A[keep], B[keep], GA[keep], GB[keep]
    R_p, R_u, R_l, R_r = [P], [], [np.sign(GA).astype(int)], [np.sign(GB).astype(int)]
    if P.size:
        R_u.append(_illinois(lambda c, idx: m.g(c, P[idx]), A, B, GA, GB)[0])
    zero = (S == 0)
    start = zero & np.vstack([np.ones((1, n), bool), ~zero[:-1]])
    zi, zp = np.nonzero(start[1:-1])
    zi = zi + 1
    if zi.size:
        ends = []
        for i, p in zip(zi, zp, strict=True):  # only runs inside the range: rare
            j = i
            while j + 1 < M and S[j + 1, p] == 0:
                j += 1
            ends.append(j)
        ends = np.array(ends)
        inner = (ends < M - 1) & ~neutral[zp]
        zi, zp, ends = zi[inner], zp[inner], ends[inner]
        R_p.append(zp)
        R_u.append(U[zi, zp])
        R_l.append(S[zi - 1, zp])
        R_r.append(S[np.minimum(ends + 1, M - 1), zp])
    Rp = np.concatenate(R_p)
    Ru = np.concatenate(R_u) if R_u else np.zeros(0)
    Rl, Rr = np.concatenate(R_l), np.concatenate(R_r)
    order = np.lexsort((Ru, Rp))
    Rp, Ru, Rl, Rr = Rp[order], Ru[order], Rl[order], Rr[order]
    counts = np.bincount(Rp, minlength=n)
    nr = max(int(counts.max()) if n else 0, 1)  # at least one (NaN) column
    rank = np.arange(Rp.size) - np.repeat(np.cumsum(counts) - counts, counts)
    rK = np.full((n, nr), np.nan)
    rstab = np.zeros((n, nr), bool)
    rK[Rp, rank] = np.exp(Ru)
    rstab[Rp, rank] = (Rl > 0) & (Rr < 0)
    rdF = np.full((n, nr), np.nan)
    rchi = np.full((n, nr), np.nan)
    if Rp.size:
        rdF[Rp, rank] = m.dF(np.exp(Ru), Rp)
        rchi[Rp, rank] = m.chi(np.exp(Ru), Rp)

    # 3. the attractor reached from K0: the first root in the direction of g(log K0)
    nz = (S != 0) & (S != 2)
    first = np.argmax(nz, axis=0)
    last = M - 1 - np.argmax(nz[::-1], axis=0)
    cols = np.arange(n)
    anynz = nz.any(axis=0)
    top_valid = (S[-1] != 2) & anynz
    zero_att = (S[first, cols] == -1) & anynz
    inf_att = (S[last, cols] == 1) & top_valid
    with np.errstate(invalid="ignore", divide="ignore"):
        us = np.log(rK)
    status = np.full(n, "unconverged", dtype=object)
    Kstar = np.full(n, np.nan)
    reached = np.full(n, -1)
    on = (np.abs(g0) <= ZERO_TOL) & ~neutral
    near = np.abs(us - u0[:, None]) < 1e-6
    jn = np.argmax(near, axis=1)
    hit = on & near.any(axis=1)
    status[on], Kstar[on] = "finite", K0f[on]
    reached[hit], Kstar[hit] = jn[hit], rK[hit, jn[hit]]
    up = ~neutral & ~on & (g0 > 0)
    above = us > u0[:, None]
    ja = np.argmax(above, axis=1)
    ha = up & above.any(axis=1)
    status[ha], Kstar[ha], reached[ha] = "finite", rK[ha, ja[ha]], ja[ha]
    ub_ = up & ~above.any(axis=1) & inf_att
    status[ub_], Kstar[ub_] = "unbounded", np.inf
    down = ~neutral & ~on & (g0 < 0)
    below = us < u0[:, None]
    jb = nr - 1 - np.argmax(below[:, ::-1], axis=1)
    hb = down & below.any(axis=1)
    status[hb], Kstar[hb], reached[hb] = "finite", rK[hb, jb[hb]], jb[hb]
    zr = down & ~below.any(axis=1) & (S[0] != 2)
    status[zr], Kstar[zr] = "zero", 0.0
    status[neutral], Kstar[neutral] = "neutral", K0f[neutral]
    attractors = rstab.sum(axis=1) + zero_att + inf_att

    # 4. stability and chi* at the reached point
    dF = np.full(n, np.nan)
    chi = np.full(n, np.nan)
    fin = np.nonzero((status == "finite") | (status == "neutral"))[0]
    if fin.size:
        chi[fin] = m.chi(Kstar[fin], fin)
        dF[fin] = m.dF(Kstar[fin], fin)
    zi = np.nonzero(status == "zero")[0]
    if zi.size:  # the K → 0 limits are taken at K_MIN (some maps carry 1/K factors)
        chi[zi] = m.chi(np.full(zi.size, K_MIN), zi)
        dF[zi] = m.dF(np.full(zi.size, K_MIN), zi)

    growth = np.full(n, "none", dtype=object)
    rate = np.full(n, np.nan)
    power = np.full(n, np.nan)
    ub = np.nonzero(status == "unbounded")[0]
    if ub.size:
        Ka = 1e-4 * top[ub]
        Fa = m.F(Ka, ub)
        # slow growth (F(K) − K ≪ K there): move down until F − K is 1e-8 of K, so that
        # rounding of F does not read as a power law
        slow = np.abs(Fa - Ka) < 1e-8 * Ka
        if np.any(slow):
            Ka = np.where(slow, np.maximum(np.abs(Fa - Ka) * 1e8, 1e3), Ka)
            Fa = np.where(slow, m.F(Ka, ub), Fa)
        Kb = Ka / 10
        Fb = m.F(Kb, ub)
        gr, rt, pw, _ = growth_law(Ka, Fa, Kb, Fb)
        growth[ub], rate[ub], power[ub] = gr, rt, pw
        Ktop = top[ub]
        chi[ub] = large_K_limit(lambda Kl: m.chi(Kl, ub), Ktop)
        dF[ub] = (Fa - Fb) / (Ka - Kb)  # the large-K slope of F

    def shaped(x, extra=()):
        x = np.asarray(x).reshape(shape + tuple(extra))
        return x[()] if x.ndim == 0 else x

    warn_if_nan("χ_J* or F'(K*) is undefined (NaN) here: the maps are 0/0 at this fixed point "
                "(e.g. a LayerNorm of a signal that vanishes when sigma_w = sigma_b = 0), or "
                "K* was not found (status 'unconverged')", chi, dF, Kstar)
    return FixedPoint(
        K_star=shaped(Kstar), dF_dK=shaped(dF), chi_star=shaped(chi),
        status=shaped(status.astype(str)), growth=shaped(growth.astype(str)),
        growth_rate=shaped(rate), growth_power=shaped(power),
        roots_K=shaped(rK, (nr,)), roots_stable=shaped(rstab, (nr,)),
        roots_dF=shaped(rdF, (nr,)), roots_chi=shaped(rchi, (nr,)),
        attractors=shaped(attractors), reached=shaped(reached),
    )
