r"""Fixed points of a vector state map s^{l+1} = M(s^l), s = (K, O_T[, O_C]) (multi-axis blocks).

Same result conventions as :func:`critsym.criticality.fixed_point` (status "finite", "zero",
"unbounded", "unconverged"; growth law), for theories that declare ``state_symbols`` (an
multi-axis :class:`~critsym.theory.Theory`).  Vectorised over hyperparameter grids:

1. ``iterations`` plain steps s ← M(s) from s⁰ = (K0, O_T0[, O_C0]);
2. Newton steps s ← s − (DM − I)⁻¹ (M(s) − s) with a forward-difference Jacobian DM, a step
   being replaced by a plain step when it leaves the admissible set (K > 0, 0 ≤ O ≤ K);
   converged when |M(s) − s| ≤ 1e-12 (1 + K) in every component (M(s) projected onto the
   admissible set: collapsed tokens put the fixed point on its boundary O_C = K − O_T, where a
   conserved component or an offset held at zero by the map is left out of the Newton step);
   (relative to K, so that a state of rounding size is no fixed point);
3. a converged point is "finite" when it is stable (spectral radius of DM ≤ 1); the reported
   ``dF_dK`` is the eigenvalue of DM of largest modulus (the rate at which the state approaches
   s*; for a one-component state it is F'(K*));
4. "zero" (the trivial fixed point of a block without biases) if K^l fell below K_MIN, or if
   the state ended below 10⁻⁶·max(K0, 1) and the map linearised at 0 does not expand (its
   leading eigenvalue, by power iteration of M(K_MIN·ŝ)/K_MIN, is ≤ 1): the orbit creeps
   towards 0 near a continuous transition out of K* = 0.  There χ_J* is χ_J at K_MIN along
   the direction of approach and ``dF_dK`` that eigenvalue (the two agree: the network is
   linear there, see :mod:`critsym.criticality.trivial`);
5. otherwise: the growth law along the asymptotic ray
   O = ρK (ρ from the increments of the map at K = 10⁸): F(K)/K → r > 1 exponential,
   F(K) − K → B > 0 linear (residual μ = 1), F(K) − K ≈ B K^β power; χ_J* is then χ_J on the
   ray at K_MAX (the large-K limit), as for one-component maps.  The growth law is the one
   classifier of one-component maps, :func:`~critsym.criticality.fixed_point.growth_law`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CritsymError, HyperparameterError, NumericalError
from .fixed_point_result import K_MAX, K_MIN, FixedPoint, growth_law

#: an unconverged orbit below SMALL_K·max(K0, 1) whose map does not expand is heading to K = 0
SMALL_K = 1e-6


@dataclass(frozen=True)
class StateFixedPoint(FixedPoint):
    """:class:`FixedPoint` plus the offset variances at the fixed point (``O_T_star``,
    ``O_C_star``; NaN where not iterated) and, for unbounded growth, the ray ``O_T ≈ rho_T K``
    (``rho_T``; NaN otherwise)."""

    O_T_star: np.ndarray | None = None
    O_C_star: np.ndarray | None = None
    rho_T: np.ndarray | None = None


def _admissible(s):
    K = s[0]
    ok = np.isfinite(s).all(axis=0) & (K > 0)
    off = s[1:]
    ok &= np.all(off >= -1e-12 * np.maximum(K, 1), axis=0)
    ok &= off.sum(axis=0) <= K * (1 + 1e-12) + 1e-300
    return ok


def _project(s):
    """``s`` with rounding excursions removed: offsets clipped to >= 0 and their sum to <= K
    (token states converge onto that boundary when the tokens collapse, O_C → K)."""
    s = s.copy()
    K = s[0]
    off = np.clip(s[1:], 0.0, None)
    total = off.sum(axis=0)
    with np.errstate(all="ignore"):
        scale = np.where(total > K, K / np.where(total > 0, total, 1.0), 1.0)
    s[1:] = off * scale
    return s


def _safe(kern, kernel, idx, x):
    """``kern(x)``; where the batch fails numerically (a difference quotient that leaves the
    domain of a quadrature), point by point with NaN for the points that fail."""
    try:
        return kern(x)
    except NumericalError:
        out = np.full(x.shape, np.nan)
        for c, i in enumerate(idx):
            try:
                out[:, c] = kernel(np.array([i]))(x[:, c:c + 1])[:, 0]
            except NumericalError:
                pass
        return out


def _rate_at_zero(step, ratio, iterations: int = 60) -> np.ndarray:
    """The leading eigenvalue of the state map linearised at the trivial fixed point, by power
    iteration of s ← M(K_MIN·ŝ)/K_MIN from the direction (1, ``ratio``) (the offsets stay in
    the admissible cone): the factor by which K shrinks per block near 0."""
    v = np.vstack([np.ones((1, ratio.shape[1])), ratio])
    lam = np.full(ratio.shape[1], np.nan)
    for _ in range(iterations):
        with np.errstate(all="ignore"):
            w = step(K_MIN * v) / K_MIN
            prev, lam = lam, w[0] / v[0]
            v = _project(w / np.where(w[0] > 0, w[0], 1.0))
        if np.all(np.abs(lam - prev) <= 1e-14 * np.abs(lam)):
            break
    return lam


#: the drift search scans t = |r⁰|·2^k along the drift direction, at most this many doublings
DRIFT_DOUBLINGS = 60
#: the drift search looks for the attractor below this multiple of max(K, 1) of the orbit
DRIFT_K_RANGE = 1e3


def _max_step(x, u):
    """The largest t >= 0 with x + t u admissible (K > 0, offsets >= 0, their sum <= K), per
    column; inf where the ray stays admissible."""
    with np.errstate(all="ignore"):
        a = np.vstack([x[1:], x[0:1] - x[1:].sum(axis=0, keepdims=True)])
        b = np.vstack([u[1:], u[0:1] - u[1:].sum(axis=0, keepdims=True)])
        t = np.where(b < 0, np.maximum(a, 0.0) / -b, np.inf)
    return t.min(axis=0)


def drift_search(step, x0, free, iterations: int = 80):
    r"""Where a slowly creeping orbit goes: the first zero of the drift along its direction.

    ``step(x, i)``: the state map at the columns ``i`` of the points (hyperparameters per
    column); ``x0``: the orbit after its plain steps (d × m); ``free``: the components the
    map changes.  With r⁰ = M(x⁰) − x⁰ and the direction u = r⁰/|r⁰| (free components), the
    drift along the ray g(t) = u·(M(x⁰ + tu) − x⁰ − tu) is positive at t = 0; the first sign
    change of g on t = |r⁰|·2^k, k = 0, 1, …, is bracketed and solved by the Illinois method.
    For a one-component state (or a map whose orbit moves along a line) this is the attractor
    the orbit creeps to; otherwise it is the start of Newton's polish.  Where g stays positive
    up to the edge of the admissible set (tokens collapsing onto O_C = K), the edge point is
    returned (the map keeps a collapsed state collapsed).  Points where no bracket is found
    (g undefined, or g > 0 up to K = DRIFT_K_RANGE·max(K⁰, 1), e.g. a state that grows without
    bound) are returned unchanged.
    """
    x0 = _project(np.asarray(x0, float))
    d, m = x0.shape
    idx = np.arange(m)

    def drift(x, cols):
        try:
            y = step(x, cols)
        except CritsymError:  # e.g. a state outside a quadrature's range: that point only
            y = np.full(x.shape, np.nan)
            for c in range(len(cols)):
                try:
                    y[:, c] = step(x[:, c:c + 1], cols[c:c + 1])[:, 0]
                except CritsymError:
                    pass
        r = _project(np.where(np.isfinite(y), y, 0.0)) - x
        r[:, ~np.isfinite(y).all(axis=0)] = np.nan
        r[~free] = 0.0
        return r

    r0 = drift(x0, idx)
    norm = np.sqrt(np.nansum(r0 * r0, axis=0))
    ok = np.isfinite(r0).all(axis=0) & (norm > 0)
    u = np.where(ok, r0 / np.where(ok, norm, 1.0), 0.0)
    tmax = np.where(ok, _max_step(x0, u), 0.0)
    # the search stays below DRIFT_K_RANGE·max(K, 1): a fixed point far above the orbit (or a
    # state growing without bound, whose drift never changes sign) is not its business
    with np.errstate(all="ignore"):
        tcap = np.where(u[0] > 0, (DRIFT_K_RANGE - 1) * np.maximum(x0[0], 1.0) / u[0], np.inf)
    out = x0.copy()

    def g(t, cols):
        x = x0[:, cols] + t * u[:, cols]
        return np.sum(u[:, cols] * drift(x, cols), axis=0)

    lo, glo = np.zeros(m), norm.copy()
    hi, ghi = np.full(m, np.nan), np.full(m, np.nan)
    t = norm.copy()
    search = ok.copy()
    for _ in range(DRIFT_DOUBLINGS):
        cols = np.nonzero(search)[0]
        if cols.size == 0:
            break
        tc = np.minimum(t[cols], np.minimum(tmax[cols], tcap[cols]))
        gc = g(tc, cols)
        at_edge = tc >= tmax[cols]
        capped = ~at_edge & (tc >= tcap[cols])
        # on a root already; at the edge of the set, rounding of the map counts as a root
        exact = (gc == 0) | (at_edge & (np.abs(gc) <= 1e-13 * np.maximum(x0[0, cols], 1.0)))
        out[:, cols[exact]] = _project(x0[:, cols[exact]] + tc[exact] * u[:, cols[exact]])
        crossed = (gc < 0) & ~exact
        hi[cols[crossed]], ghi[cols[crossed]] = tc[crossed], gc[crossed]
        edge = ~crossed & ~exact & np.isfinite(gc) & at_edge
        out[:, cols[edge]] = _project(x0[:, cols[edge]] + tmax[cols[edge]] * u[:, cols[edge]])
        lost = ~np.isfinite(gc) | (capped & (gc > 0))
        up = ~crossed & ~edge & ~lost & ~exact
        lo[cols[up]], glo[cols[up]] = tc[up], gc[up]
        t[cols] *= 2.0
        search[cols[crossed | edge | lost | exact]] = False
    # Illinois (modified regula falsi) inside each bracket
    cols = np.nonzero(np.isfinite(hi))[0]
    side = np.zeros(m)
    for _ in range(iterations):
        if cols.size == 0:
            break
        a, b, fa, fb = lo[cols], hi[cols], glo[cols], ghi[cols]
        with np.errstate(all="ignore"):
            c = np.where(fa != fb, b - fb * (b - a) / (fb - fa), 0.5 * (a + b))
        c = np.where((c > a) & (c < b), c, 0.5 * (a + b))
        fc = g(c, cols)
        fc = np.where(np.isfinite(fc), fc, 0.0)
        right = fc <= 0  # the root is in [a, c]
        hi[cols[right]], ghi[cols[right]] = c[right], fc[right]
        lo[cols[~right]], glo[cols[~right]] = c[~right], fc[~right]
        # Illinois: halve the stale end's value when the same end moves twice
        s_new = np.where(right, 1.0, -1.0)
        stale = side[cols] == s_new
        glo[cols[stale & right]] *= 0.5
        ghi[cols[stale & ~right]] *= 0.5
        side[cols] = s_new
        width = hi[cols] - lo[cols]
        cols = cols[(width > 1e-15 * np.maximum(hi[cols], 1e-300)) & (fc != 0)]
    br = np.nonzero(np.isfinite(hi))[0]
    tr = np.where(np.abs(glo[br]) <= np.abs(ghi[br]), lo[br], hi[br])
    out[:, br] = _project(x0[:, br] + tr * u[:, br])
    return out


def state_fixed_point(theory, K0: object = 1.0, *, iterations: int | None = None,
                      newton: int = 40, O_T0: object = 0.0, O_C0: object = 0.0,
                      **hp) -> StateFixedPoint:
    """The fixed point of ``theory``'s state map reached from (K0, O_T0, O_C0) (vectorised).

    ``iterations``: plain steps before Newton's (default 8; 200 for a token state, whose
    tokens typically collapse onto the boundary O_C = K, where Newton's difference quotients
    are one-sided)."""
    if iterations is None:
        iterations = 200 if getattr(theory, "token_state", False) else 8
    vals = theory.values(hp)
    K0 = np.asarray(K0, dtype=float)
    if not np.all(np.isfinite(K0)) or np.any(K0 <= 0):
        raise HyperparameterError(f"K0 must be finite and > 0 (a starting variance), got {K0}")
    OT0, OC0 = np.asarray(O_T0, float), np.asarray(O_C0, float)
    if np.any(OT0 < 0) or np.any(OC0 < 0) or np.any(OT0 + OC0 > K0):
        raise HyperparameterError("O_T0, O_C0 must be >= 0 with O_T0 + O_C0 <= K0")
    shape = np.broadcast_shapes(K0.shape, OT0.shape, OC0.shape, *(v.shape for v in vals))
    n = int(np.prod(shape))
    V = [np.broadcast_to(v, shape).reshape(n).astype(float) for v in vals]
    d = len(theory.feedback_state)
    K0f = np.broadcast_to(K0, shape).reshape(n).astype(float)
    s = np.stack([np.broadcast_to(x, shape).reshape(n).astype(float)
                  for x in (K0, OT0, OC0)][:d])
    P = theory.state_constants(V)  # the expensive state-independent integrals, once
    step_full, chi_full = theory.state_kernel(V, P)

    def kernel(i):
        return theory.state_kernel([v[i] for v in V], [p[i] for p in P])[0]

    # components the map conserves exactly (e.g. O_T' = O_T in a block without token-axis
    # linear layers) are held at their start: DM − I is singular along them, and on the
    # boundary of the admissible set (collapsed tokens) they have no admissible neighbour
    maps = theory.state_maps
    free = np.array([maps[sym] != sym for sym in theory.feedback_state])

    zero = np.zeros(n, bool)
    for _ in range(iterations):
        live = np.nonzero(~zero & (s[0] < K_MAX))[0]  # blown-up points stop stepping
        if live.size == 0:
            break
        sn = (step_full if live.size == n else kernel(live))(s[:, live])
        zero[live] |= sn[0] < K_MIN
        keep = np.isfinite(sn).all(axis=0) & ~zero[live]
        s[:, live] = np.where(keep, _project(sn), s[:, live])
    plain = s.copy()  # where the plain steps left the orbit
    done = np.zeros(n, bool)
    jac = np.full((n, d, d), np.nan)

    def newton_from(act):
        for _ in range(newton):
            if act.size == 0:
                break
            x = _project(s[:, act])
            kern = kernel(act) if act.size != n else step_full
            Mx = kern(x)
            r = _project(Mx) - x  # on the boundary the map's rounding points outside it
            # relative to K: an absolute test would accept any tiny state as a fixed point
            # (near a continuous transition out of K* = 0 the orbit creeps towards 0)
            conv = np.all(np.abs(r) <= 1e-12 * x[0], axis=0)
            D = np.zeros((act.size, d, d))
            held = np.zeros((act.size, d), bool)
            for j in range(d):
                if not free[j]:  # a conserved component: M_j(s) = s_j
                    D[:, j, j] = 1.0
                    continue
                h = 1e-7 * np.maximum(x[0], 1e-8)
                xp = x.copy()
                xp[j] += h
                # a backward difference where the forward step leaves the admissible set (a
                # state on its boundary, e.g. collapsed tokens O_C = K)
                xm = x.copy()
                xm[j] -= h
                back = ~_admissible(xp) & _admissible(xm)
                stuck = ~_admissible(xp) & ~back  # no admissible neighbour: a plain step follows
                xp = np.where(back, xm, np.where(stuck, x, xp))
                with np.errstate(all="ignore"):
                    D[:, :, j] = ((_safe(kern, kernel, act, xp) - Mx) / np.where(back, -h, h)).T
                # an offset at zero that the map keeps at zero (an invariant face, e.g. O_T = 0
                # at collapsed tokens, whose neighbours are all outside the admissible set) is
                # held there: its row and column are zero (no Newton step along it)
                held[:, j] = stuck & (x[j] == 0) & (r[j] == 0)
                D[stuck & ~held[:, j], :, j] = np.nan
            for j in range(d):
                D[held[:, j], :, j] = 0.0
                D[held[:, j], j, :] = 0.0
            jac[act] = D
            done[act[conv]] = True
            with np.errstate(all="ignore"):
                A = (D - np.eye(d))[:, free][:, :, free]
                ok = np.isfinite(A).all(axis=(1, 2))
                ok[ok] = np.abs(np.linalg.det(A[ok])) > 1e-14
                dx = np.zeros_like(x)
                if np.any(ok):
                    sol = np.linalg.solve(A[ok], -r[free][:, ok].T[..., None])[..., 0].T
                    dx[np.ix_(free, np.nonzero(ok)[0])] = sol
            xn = _project(x + dx)  # a fixed point on the boundary (collapsed tokens) is reached
            bad = ~ok | ~_admissible(xn)  # from both sides of it: steps past it are projected
            xn[:, bad] = Mx[:, bad]
            blow = xn[0] >= K_MAX
            s[:, act] = np.where(conv, x, xn)
            # Newton steps towards the trivial fixed point K = 0 (an attracting K = 0 with no
            # other root in between): reached once K drops below K_MIN
            low = ~conv & (xn[0] < K_MIN)
            zero[act[low]] = True
            act = act[~conv & ~blow & ~low & _admissible(xn)]

    newton_from(np.nonzero(~zero & _admissible(s) & (s[0] < K_MAX))[0])
    # an orbit that creeps towards its attractor (a map with a Jacobian eigenvalue near 1,
    # e.g. tokens that collapse by 1e-5 per block) is not reached by the plain steps, and
    # Newton's step may head for a repelling root instead: search along the drift
    slow = np.nonzero(~done & ~zero & _admissible(s) & (s[0] < K_MAX))[0]
    if slow.size:
        found = drift_search(lambda x, i: kernel(slow[i])(x), plain[:, slow], free)
        moved = np.any(found != _project(plain[:, slow]), axis=0) & _admissible(found)
        s[:, slow[moved]] = found[:, moved]
        newton_from(slow[moved])
    ev = np.linalg.eigvals(np.nan_to_num(jac[:, free][:, :, free]))  # conserved parts: 1
    rho = np.max(np.abs(ev), axis=1)
    lead = np.take_along_axis(ev, np.argmax(np.abs(ev), axis=1)[:, None], 1)[:, 0].real
    finite = done & (rho <= 1 + 1e-9)
    # near a continuous transition out of K* = 0 the orbit creeps towards 0 (algebraically at
    # the transition, where the map linearised at 0 has spectral radius 1), and a state of
    # rounding size passes any convergence test: a small state goes to K = 0 when the
    # linearised map there does not expand (the nontrivial fixed point of a supercritical
    # transition exists only where it does)
    small = np.nonzero(~zero & (s[0] > 0) & (s[0] < SMALL_K * np.maximum(K0f, 1.0)))[0]
    if small.size:
        with np.errstate(all="ignore"):
            rat = np.clip(np.nan_to_num(s[1:, small] / s[0, small]), 0.0, 1.0)
        shrinks = _rate_at_zero(kernel(small), rat) <= 1 + 1e-12
        zero[small[shrinks]] = True
        finite &= ~zero

    status = np.full(n, "unconverged", dtype=object)
    status[finite] = "finite"
    status[zero & ~finite] = "zero"
    growth = np.full(n, "none", dtype=object)
    rate, power, rho_T = (np.full(n, np.nan) for _ in range(3))
    Kstar = np.where(finite, s[0], np.where(status == "zero", 0.0, np.nan))
    chi_at = np.where(finite[None], s, np.nan)
    dF = np.where(finite, lead, np.nan)

    rest = np.nonzero(status == "unconverged")[0]
    if rest.size:
        kern = kernel(rest)
        K1, K2 = 1e8, 1e7
        ratio = np.where(s[0, rest] > 0, s[1:, rest] / s[0, rest], 0.0)

        def ray(Kv, rat):
            return np.vstack([np.full((1, rest.size), Kv), Kv * rat])

        try:
            for _ in range(5):  # increments along the ray fix its direction
                M1 = kern(ray(K1, ratio))
                with np.errstate(all="ignore"):
                    inc = (M1[1:] - K1 * ratio) / (M1[0] - K1)
                ratio = np.where(np.isfinite(inc) & (M1[0] > K1), np.clip(inc, 0, 1), ratio)
            F1, F2 = kern(ray(K1, ratio))[0], kern(ray(K2, ratio))[0]
        except CritsymError:
            # the map has no value at K = 1e8 (e.g. a softmax-moment quadrature beyond its
            # logit-variance range) while the orbit stayed small: no growth law, the points
            # stay "unconverged"
            F1 = F2 = np.full(rest.size, np.nan)
        gr, rt, pw, grows = growth_law(K1, F1, K2, F2)
        grows = grows & np.isfinite(F1)
        g_idx = rest[grows]
        status[g_idx] = "unbounded"
        Kstar[g_idx] = np.inf
        growth[g_idx] = gr[grows]
        rate[g_idx] = rt[grows]
        power[g_idx] = pw[grows]
        rho_T[g_idx] = ratio[0, grows]
        chi_at[:, g_idx] = ray(K_MAX, ratio)[:, grows]
    zi = np.nonzero(status == "zero")[0]
    # the K → 0 limit along the direction of approach (offsets in proportion to K)
    with np.errstate(all="ignore"):
        ratio0 = np.where(s[0, zi] > 0, s[1:, zi] / s[0, zi], 0.0)
    ratio0 = np.where(np.isfinite(ratio0), np.clip(ratio0, 0.0, 1.0), 0.0)
    chi_at[0, zi] = K_MIN
    chi_at[1:, zi] = K_MIN * ratio0
    if zi.size:  # the rate of approach: leading eigenvalue of the map linearised at 0
        dF[zi] = _rate_at_zero(kernel(zi), ratio0)
    with np.errstate(all="ignore"):
        # placeholders (K = 1, no offsets: an admissible state) where there is no point
        filled = np.where(np.isfinite(chi_at), chi_at, np.r_[1.0, np.zeros(d - 1)][:, None])
        chi = np.where(np.isfinite(chi_at[0]), chi_full(filled), np.nan)

    def shaped(x):
        x = np.asarray(x).reshape(shape)
        return x[()] if x.ndim == 0 else x

    OC = s[2] if d > 2 else np.full(n, np.nan)
    at_zero = status == "zero"
    return StateFixedPoint(
        K_star=shaped(Kstar), dF_dK=shaped(dF), chi_star=shaped(chi),
        status=shaped(status.astype(str)), growth=shaped(growth.astype(str)),
        growth_rate=shaped(rate), growth_power=shaped(power),
        O_T_star=shaped(np.where(finite, s[1], np.where(at_zero, 0.0, np.nan))),
        O_C_star=shaped(np.where(finite, OC, np.where(at_zero, 0.0, np.nan))),
        rho_T=shaped(rho_T),
    )
