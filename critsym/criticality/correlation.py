r"""Correlation map fixed points: c*, χ_c = ∂c^{l+1}/∂c^l and the correlation depth ξ_c.

For two inputs of equal variance K, c^{l+1} = G(K, K, cK)/F(K) (at the variance fixed point
K = K*).  χ_c(c) = K ∂G/∂K_12 (K, K, cK) / F(K), where the derivative of a bivariate expectation
uses Price's theorem, ∂/∂C E[f(u,v)] = E[∂_u∂_v f] (and ∂/∂V_1 E = ½E[∂_u² f]).  At c = 1 closed
forms can be 0·∞ (relu's arc-cosine kernel); χ_c(1) is then the limit, extrapolated from
c = 1 − δ, δ = 1e-6·4^k (k = 0..3), by a cubic in √δ (error ~1e-9).
For vanilla blocks χ_c(1) = χ_J* (Schoenholz et al.).  The stable correlation c*: 1 when
χ_c(1) ≤ 1, else the root of c_map(c) − c in [−1, 1) found by vectorised bisection.
ξ_c = −1/log χ_c(c*).

Multi-axis theories (a Mixer, :class:`~critsym.theory.Theory`) carry a cross state
x = (K_12, O_T12[, O_C12]) with c = K_12/K: at the state fixed point (K*, O_T*, O_C*), c* is the
stable fixed point of the cross map (iterated from c = 0 when the diagonal x = (K*, O_T*, …) is
unstable), and χ_c is the leading eigenvalue of the cross map's Jacobian there (by
backward differences into the admissible side, Richardson-extrapolated, error ~1e-8 for smooth
activations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import warn_if_nan
from ..gaussian.expectation import GaussE2
from ..symbols import K11, K12, K22
from .fixed_point import K_MIN, depth_scale, fixed_point


def d_dK12(expr: sp.Expr) -> sp.Expr:
    """∂expr/∂K_12, differentiating bivariate expectation nodes by Price's theorem (and, for a
    node whose covariance or integrand holds an earlier layer's expectations, by the chain rule
    through them: d/dK_12 E_C[f] = E_C[∂_u∂_v f] dC/dK_12 + ½E[∂_u² f] dV_1/dK_12 + …)."""
    nodes = sorted(expr.atoms(GaussE2), key=sp.default_sort_key)
    reps = {n: sp.Dummy(f"E2_{i}") for i, n in enumerate(nodes)}
    e = expr.xreplace(reps)
    out = sp.diff(e, K12)
    for n, d in reps.items():
        de = sp.diff(e, d)
        if de == 0:
            continue
        lam, V1, V2, C = n.args
        u, v = lam.variables
        f = lam.expr
        dn = sp.S.Zero
        for arg, integrand in ((C, sp.diff(f, u, v)), (V1, sp.diff(f, u, 2) / 2),
                               (V2, sp.diff(f, v, 2) / 2)):
            da = d_dK12(arg)
            if da != 0:
                dn += da * GaussE2(sp.Lambda((u, v), integrand), V1, V2, C)
        df = d_dK12(f)
        if df != 0:
            dn += GaussE2(sp.Lambda((u, v), df), V1, V2, C)
        out += de * dn
    return out.xreplace({d: n for n, d in reps.items()})


_DELTA0 = 1e-6


def _compiled_dG(theory):
    return theory.lambdify(d_dK12(theory.G), state=(K11, K22, K12))


def chi_c(theory, c, K, **hp) -> np.ndarray:
    """χ_c(c) = ∂c^{l+1}/∂c^l at equal variances K (c = 1 taken as a limit where needed)."""
    vals = theory.values(hp)
    K = np.asarray(K, dtype=float)
    c = np.asarray(c, dtype=float)
    dG = _compiled_dG(theory)
    with np.errstate(all="ignore"):
        FK = theory.lambdify("F")(K, *vals)

        def at(cc):
            return K * dG(K, K, cc * K, *vals) / FK

        out = at(c)
        bad = ~np.isfinite(out)
        if np.any(bad):
            # polynomial in s = sqrt(δ) through δ = δ0·4^k, k = 0..3, extrapolated to s = 0
            s = np.sqrt(_DELTA0) * 2.0 ** np.arange(4)
            w = np.linalg.solve(np.vander(s, 4, increasing=True).T, np.eye(4)[:, 0])
            lim = sum(wk * at(c - sk**2) for wk, sk in zip(w, s, strict=True))
            out = np.where(bad, lim, out)
    return out


@dataclass(frozen=True)
class Correlation:
    """c* (stable fixed point of the c-map at K*), χ_c at c* and at c = 1, ξ_c = −1/log χ_c(c*)."""

    c_star: np.ndarray
    chi_c: np.ndarray
    chi_c1: np.ndarray
    K_star: np.ndarray

    @property
    def xi_c(self) -> np.ndarray:
        return depth_scale(self.chi_c)


def correlation(theory, K0: object = 1.0, *, bisections: int = 60, **hp) -> Correlation:
    """The correlation fixed point at the variance fixed point reached from ``K0``.

    Where K* = 0 the limit K → 0 is taken at K_MIN; where K grows without bound c* etc. are NaN.
    """
    if not getattr(theory, "has_c_map", True):
        theory.covariance_map()  # raises a DerivationError that says why
    if len(theory.state_symbols) > 1:
        return _state_correlation(theory, K0, **hp)
    fp = fixed_point(theory, K0=K0, **hp)
    Ks = np.where(fp.status == "zero", K_MIN, np.asarray(fp.K_star, dtype=float))
    Ks = np.where(np.isfinite(Ks), Ks, np.nan)
    vals = theory.values(hp)
    Fc, Gc = theory.lambdify("F"), theory.lambdify("G")
    shape = np.shape(Ks)
    X1 = np.broadcast_to(chi_c(theory, 1.0, Ks, **hp), shape)
    cstar = np.ones(shape)
    need = X1 > 1
    if np.any(need):
        with np.errstate(all="ignore"):
            def h(c):
                return Gc(Ks, Ks, c * Ks, *vals) / Fc(Ks, *vals) - c

            lo = np.full(shape, -1.0)
            hi = np.full(shape, 1.0 - 1e-9)
            for _ in range(bisections):
                mid = (lo + hi) / 2
                pos = np.broadcast_to(h(mid), shape) >= 0
                lo = np.where(pos, mid, lo)
                hi = np.where(pos, hi, mid)
        cstar = np.where(need, (lo + hi) / 2, 1.0)
    cstar = np.where(np.isnan(Ks), np.nan, cstar)
    Xs = np.where(need, np.broadcast_to(chi_c(theory, cstar, Ks, **hp), shape), X1)

    def sc(x):
        x = np.asarray(x, dtype=float)
        return x[()] if x.ndim == 0 else x

    warn_if_nan("c*, χ_c are undefined (NaN) where the variance has no finite fixed point (K "
                "grows without bound: see fixed_point(...).status) or the maps are 0/0 there",
                cstar, Xs, X1)
    return Correlation(c_star=sc(cstar), chi_c=sc(Xs), chi_c1=sc(X1), K_star=sc(Ks))


def _state_correlation(theory, K0, *, iterations: int = 2000, **hp) -> Correlation:
    """c*, χ_c of a multi-axis theory (see the module docstring); vectorised over ``hp``."""
    fp = fixed_point(theory, K0=K0, **hp)
    shape = np.shape(fp.K_star)
    n = int(np.prod(shape))
    vals = [np.broadcast_to(v, shape).reshape(n) for v in theory.values(hp)]
    st = [np.broadcast_to(np.asarray(x, dtype=float), shape).reshape(n)
          for x in (fp.K_star, fp.O_T_star, fp.O_C_star)]
    st[2] = np.nan_to_num(st[2])  # O_C is not iterated where nothing depends on it
    d = len(theory.cross_feedback)
    step = theory.cross_kernel(st, vals)
    diag = np.stack(st[:d])  # c = 1: the cross state equals the state
    ok = np.isfinite(st[0]) & (fp.status == "finite")

    # directions that stay admissible below the diagonal: lower K_12 alone, or K_12 together
    # with one offset covariance (the remainder's correlation then stays <= 1)
    D = np.eye(d)
    D[0, :] = 1.0

    def jacobian(x):
        """Backward differences along D, Richardson-extrapolated (the offsets' covariance sits
        on its upper bound, so only the lower side is admissible)."""
        h = 1e-4 * st[0]
        fx = step(x)
        cols = []
        for j in range(d):
            dj = D[:, j][:, None] * h

            def diff(hh, dj=dj):
                return (fx - step(x - dj * hh)) / (hh * h)

            cols.append(2 * diff(0.5) - diff(1.0))
        M = np.stack(cols, axis=-1).transpose(1, 0, 2)  # (n, d, d) in the basis D
        with np.errstate(all="ignore"):
            A = M @ np.linalg.inv(D)
        A = np.nan_to_num(A, nan=0.0, posinf=0.0, neginf=0.0)
        ev = np.linalg.eigvals(A)
        return np.take_along_axis(ev, np.argmax(np.abs(ev), axis=1)[:, None], 1)[:, 0].real

    X1 = np.where(ok, jacobian(diag), np.nan)
    cstar, Xs = np.where(ok, 1.0, np.nan), X1.copy()
    need = ok & (X1 > 1)
    if np.any(need):
        x = diag * np.where(need, 0.0, 1.0)
        x[1:] = diag[1:]  # the offsets are weight-borne, shared by both inputs
        for _ in range(iterations):
            xn = step(x)
            xn = np.where(need, xn, x)
            if np.all(np.abs(xn - x) <= 1e-13 * np.maximum(1, np.abs(diag))):
                x = xn
                break
            x = xn
        cstar = np.where(need, x[0] / st[0], cstar)
        Xs = np.where(need, jacobian(np.where(need, x, diag)), X1)

    def sc(v):
        v = np.asarray(v, dtype=float).reshape(shape)
        return v[()] if v.ndim == 0 else v

    return Correlation(c_star=sc(cstar), chi_c=sc(Xs), chi_c1=sc(X1), K_star=sc(st[0]))
