r"""Verified interpolation tables of Gaussian expectations (speed at quadrature accuracy).

**Variance tables** (1-D).  m(V) = E_{x~N(0,1)}[g(√V x)] as piecewise Chebyshev interpolants in
u = log V on [log V_MIN, log V_MAX] (:class:`VarianceTable`), verified against the quadrature at
points between the interpolation nodes (relative error <= :data:`TABLE_RTOL`).

**Correlation tables** (2-D).  At equal variances V the bivariate mean of a separable integrand
h(u, v) = Σ_j f_j(u) g_j(v) is a function of (V, r) only.  In polar coordinates of the standard
pair (x₁, x₂) = ρ(cos φ, sin φ), u = √V ρ cos φ and v = √V ρ cos(φ − θ) with r = cos θ, so

    m(V, r) = ∫₀^∞ ρ e^{-ρ²/2} dρ · (1/2π)∮ F(ρ, φ) G(ρ, φ − θ) dφ = Σ_k a_k(V) T_k(r),

a circular cross-correlation in φ: with the Fourier coefficients F̂_k(ρ), Ĝ_k(ρ) (real, the
integrands being even in φ), a_0 = ∫ F̂_0 Ĝ_0 and a_k = 2 ∫ F̂_k Ĝ_k for k ≥ 1 (cos kθ = T_k(r)).
The φ-rule is the trapezoid rule (spectrally accurate for periodic analytic integrands), with the
number of points doubled until the Fourier tails fall below 1e-14 of the largest coefficient; the
ρ-rule is the panel rule of :mod:`critsym.gaussian.rules` on [0, 12] (graded towards 0, and towards
ρ ~ 1/√V for large V).  Each a_k(V) is interpolated in u = log V by Chebyshev pieces.
A piece in u is built on first use, and used only if it agrees with the nested 2-D quadrature
(and with the direct polar sum) at check points between its nodes to
|Δm| <= :data:`TABLE2_RTOL` · s(V), s(V) = Σ_j (E f_j(u)² E g_j(v)²)^{1/2} >= |m| (Cauchy–Schwarz);
otherwise points in it keep the quadrature.  Evaluation is Clenshaw in r, chunked (bounded
memory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.polynomial import chebyshev as cheb

from .rules import CHUNK_NODES, HALF_EDGES, L_CUT, legendre

#: tabulated range of variances (1-D tables) and the verified relative accuracy of a table
V_MIN, V_MAX = 1e-12, 1e12
TABLE_RTOL = 1e-10
#: tabulated range of variances of the 2-D tables and their verified accuracy (relative to s(V))
V2_MIN, V2_MAX = 1e-12, 1e4
TABLE2_RTOL = 1e-11


def _cheb_points(n: int) -> np.ndarray:
    """Chebyshev points of the first kind on [-1, 1], descending."""
    return np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _cheb_coefficients(t: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Coefficients c_k of the interpolant Σ c_k T_k through ``vals`` (last axis) at the
    Chebyshev points ``t``: c_k = (2/n) Σ_j f(t_j) T_k(t_j), c_0 halved (NaN-tolerant)."""
    n = len(t)
    with np.errstate(all="ignore"):
        coef = vals @ cheb.chebvander(t, n - 1) * (2.0 / n)
    coef[..., 0] /= 2
    return coef


def _check_points(n: int) -> np.ndarray:
    """Points between consecutive Chebyshev points (and at the ends), three per gap."""
    s = np.sort(_cheb_points(n))
    chk = np.concatenate([[-1.0, 1.0], (s[:-1] + s[1:]) / 2, (s[:-1] * 3 + s[1:]) / 4,
                          (s[:-1] + 3 * s[1:]) / 4])
    return np.clip(chk, -1, 1)


class VarianceTable:
    r"""m(V) = E_{x~N(0,1)}[g(\sqrt{V} x)] as piecewise Chebyshev interpolants in u = log V.

    ``pieces`` equal pieces on [log V_MIN, log V_MAX], ``degree`` + 1 Chebyshev points each.
    :attr:`max_rel_error` is the largest relative deviation from ``quad`` found at the check
    points (three per gap between interpolation nodes) -- the table is only used when it is
    <= :data:`TABLE_RTOL`.
    """

    def __init__(self, quad: Callable[[np.ndarray], np.ndarray], pieces: int, degree: int):
        self.u0, self.u1 = np.log(V_MIN), np.log(V_MAX)
        self.pieces, self.degree = pieces, degree
        self.width = (self.u1 - self.u0) / pieces
        t = _cheb_points(degree + 1)
        left = self.u0 + self.width * np.arange(pieces)
        u = left[:, None] + (t[None, :] + 1) * self.width / 2
        vals = np.asarray(quad(np.exp(u)), dtype=float)
        self.coef = _cheb_coefficients(t, vals)  # (pieces, degree + 1)
        chk = _check_points(degree + 1)
        uc = (left[:, None] + (chk[None, :] + 1) * self.width / 2).ravel()
        exact = np.asarray(quad(np.exp(uc)), dtype=float)
        with np.errstate(all="ignore"):
            approx = self.eval_u(uc)
            rel = np.abs(approx - exact) / np.abs(exact)
        rel = np.where(exact == approx, 0.0, rel)
        self.max_rel_error = float(np.max(rel)) if np.all(np.isfinite(rel)) else np.inf

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= TABLE_RTOL

    def eval_u(self, u: np.ndarray) -> np.ndarray:
        """Clenshaw evaluation at u = log V (u inside the range)."""
        y = (u - self.u0) / self.width
        idx = np.clip(np.floor(y).astype(np.intp), 0, self.pieces - 1)
        t = 2 * (y - idx) - 1
        if t.size <= 64:  # few points: T_k(t) = cos(k arccos t) in one step, not a k-loop
            T = np.cos(np.arccos(np.clip(t, -1, 1))[..., None] * np.arange(self.degree + 1))
            return np.einsum("...k,...k->...", self.coef[idx], T)
        return cheb.chebval(t, np.moveaxis(self.coef[idx], -1, 0), tensor=False)

    def __call__(self, V: np.ndarray, fallback: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        V = np.asarray(V, dtype=float)
        if V.size and V.min() >= V_MIN and V.max() <= V_MAX:
            return self.eval_u(np.log(V))
        inside = (V >= V_MIN) & (V <= V_MAX)
        out = np.empty(V.shape)
        if inside.any():
            out[inside] = self.eval_u(np.log(V[inside]))
        if not inside.all():
            out[~inside] = fallback(V[~inside])
        return out


#: (pieces, degree) of the variance tables :func:`build_table` tries, cheapest first
TABLE_SIZES = ((48, 16), (96, 20), (192, 24))


def table_points(pieces: int, degree: int) -> int:
    """Quadrature points a :class:`VarianceTable` costs: ``degree`` + 1 nodes and
    3·``degree`` + 2 check points per piece."""
    return pieces * (degree + 1) + pieces * len(_check_points(degree + 1))


#: quadrature points of the cheapest variance table (3216)
TABLE_POINTS = table_points(*TABLE_SIZES[0])


def build_table(quad: Callable[[np.ndarray], np.ndarray]) -> VarianceTable | None:
    """The cheapest :class:`VarianceTable` of ``quad`` meeting :data:`TABLE_RTOL`, or None."""
    for pieces, degree in TABLE_SIZES:
        tab = VarianceTable(quad, pieces, degree)
        if tab.ok:
            return tab
    return None


# ---------------------------------------------------------------- 2-D (correlation) tables

Fn = Callable[[np.ndarray], np.ndarray]


def _radial_rule(s: float, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ∫₀^L ρ e^{-ρ²/2} dρ (total mass 1), panels graded towards 0 and,
    for s = √V > 1, also towards ρ ~ 1/s (where the integrand's features in u = sρ cos φ lie)."""
    edges = np.concatenate([[0.0], HALF_EDGES])
    if s > 1:
        edges = np.unique(np.concatenate([edges, HALF_EDGES[HALF_EDGES < L_CUT * s] / s]))
    a, b = edges[:-1], edges[1:]
    t, w = legendre(n)
    half = (b - a)[:, None] / 2
    rho = ((a + b)[:, None] / 2 + half * t).ravel()
    W = (half * w).ravel() * rho * np.exp(-0.5 * rho**2)
    return rho, W


def polar_coefficients(pairs: Sequence[tuple[Fn, Fn]], V: float, max_points: int = 1 << 15
                       ) -> tuple[np.ndarray, float] | None:
    r"""(a_k(V), s(V)) of m(V, r) = Σ_k a_k T_k(r) for h = Σ_j f_j(u) g_j(v) (see the module
    docstring); None when the φ-rule does not converge within ``max_points`` points."""
    s = float(np.sqrt(V))
    rho, W = _radial_rule(s)
    n = 256
    while True:
        phi = 2 * np.pi * np.arange(n) / n
        arg = s * rho[:, None] * np.cos(phi)[None, :]
        total = np.zeros(n // 2)
        scale = 0.0
        converged = True
        with np.errstate(all="ignore"):
            for f, g in pairs:
                spectra = []
                for fn in (f, g):
                    vals = np.broadcast_to(np.asarray(fn(arg), dtype=float), arg.shape)
                    if not np.all(np.isfinite(vals)):
                        return None
                    spec = np.fft.rfft(vals, axis=-1).real[:, : n // 2] / n
                    head = W @ np.abs(spec).max(axis=-1)
                    tail = W @ np.abs(spec[:, n // 4:]).max(axis=-1)
                    if tail > 1e-14 * head:
                        converged = False
                    spectra.append(spec)
                    spectra.append(W @ (vals**2).mean(axis=-1))
                Fk, Ef2, Gk, Eg2 = spectra
                a = 2 * (W @ (Fk * Gk))
                a[0] /= 2
                total += a
                scale += float(np.sqrt(Ef2 * Eg2))
        if converged:
            return total, scale
        n *= 2
        if n > max_points:
            return None


class CorrelationTable:
    r"""m(V, r) = E[Σ_j f_j(u) g_j(v)], (u, v) ~ N(0, V [[1, r], [r, 1]]), tabulated in
    (u = log V, r) on [V2_MIN, V2_MAX] × [-1, 1] (see the module docstring).

    ``reference(V, r)`` is the nested 2-D quadrature used to verify each piece (and as the
    fallback of points outside verified pieces).
    """

    pieces_per_unit = 1 / 1.25  # pieces per unit of log V (width 1.25)
    degree = 16

    def __init__(self, pairs: Sequence[tuple[Fn, Fn]],
                 reference: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.pairs = tuple(pairs)
        self.reference = reference
        self.u0, self.u1 = np.log(V2_MIN), np.log(V2_MAX)
        self.pieces = int(np.ceil((self.u1 - self.u0) * self.pieces_per_unit))
        self.width = (self.u1 - self.u0) / self.pieces
        self._coef: dict[int, np.ndarray | None] = {}
        #: largest verified |Δm|/s(V) of each built piece (inf where it failed)
        self.errors: dict[int, float] = {}

    def _piece(self, i: int) -> np.ndarray | None:
        if i not in self._coef:
            self._coef[i] = self._build(i)
        return self._coef[i]

    def _u(self, i: int, t: np.ndarray) -> np.ndarray:
        return self.u0 + self.width * (i + (t + 1) / 2)

    def _build(self, i: int) -> np.ndarray | None:
        t = _cheb_points(self.degree + 1)
        rows = [polar_coefficients(self.pairs, float(np.exp(u))) for u in self._u(i, t)]
        if any(r is None for r in rows):
            self.errors[i] = np.inf
            return None
        nk = max(len(r[0]) for r in rows)
        vals = np.zeros((len(rows), nk))
        for j, (a, _) in enumerate(rows):
            vals[j, : len(a)] = a
        # drop modes below 1e-17 of the scale at every node
        scale = max(r[1] for r in rows)
        keep = np.nonzero(np.abs(vals).max(axis=0) > 1e-17 * scale)[0]
        nk = int(keep[-1]) + 1 if keep.size else 1
        coef = _cheb_coefficients(t, vals[:, :nk].T).T  # (degree + 1, nk)
        # verification: against the direct polar sum at every u between the nodes and at
        # correlations across [-1, 1], and against the nested quadrature at a subset
        r_chk = np.cos(np.linspace(0, np.pi, 25))
        r_chk = np.unique(np.concatenate([r_chk, [0.999, 0.99999, -0.999]]))
        s_chk = np.sort(t)
        t_chk = (s_chk[:-1] + s_chk[1:]) / 2
        worst = 0.0
        for tc in t_chk:
            direct = polar_coefficients(self.pairs, float(np.exp(self._u(i, tc))))
            if direct is None:
                self.errors[i] = np.inf
                return None
            a, sc = direct
            exact = cheb.chebval(r_chk, a)
            approx = self._eval_piece(coef, np.full(r_chk.shape, tc), r_chk)
            worst = max(worst, float(np.max(np.abs(approx - exact))) / sc)
        for tc in t_chk[[0, len(t_chk) // 2, -1]]:
            V = float(np.exp(self._u(i, tc)))
            r_q = np.array([-0.9, -0.3, 0.2, 0.7, 0.97, 0.999])
            exact = self.reference(np.full(r_q.shape, V), r_q)
            approx = self._eval_piece(coef, np.full(r_q.shape, tc), r_q)
            sc = polar_coefficients(self.pairs, V)[1]
            worst = max(worst, float(np.max(np.abs(approx - exact))) / sc)
        self.errors[i] = worst if np.isfinite(worst) else np.inf
        return coef if self.errors[i] <= TABLE2_RTOL else None

    @staticmethod
    def _eval_piece(coef: np.ndarray, t: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Σ_{j,k} coef_{jk} T_j(t) T_k(r), chunked over points."""
        out = np.empty(t.shape)
        step = max(1, CHUNK_NODES // coef.shape[1])
        for lo in range(0, t.size, step):
            sl = slice(lo, lo + step)
            A = cheb.chebvander(t[sl], coef.shape[0] - 1) @ coef  # (m, nk)
            if A.shape[0] <= 64:  # few points: T_k(r) = cos(k arccos r) in one step
                T = np.cos(np.arccos(np.clip(r[sl], -1, 1))[:, None] * np.arange(A.shape[1]))
                out[sl] = np.einsum("mk,mk->m", A, T)
            else:
                out[sl] = cheb.chebval(r[sl], A.T, tensor=False)
        return out

    def covers(self, V: np.ndarray) -> np.ndarray:
        """Mask of variances inside the tabulated range."""
        return (V >= V2_MIN) & (V <= V2_MAX)

    def __call__(self, V: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, done): m(V, r) at flat arrays inside :meth:`covers`; ``done`` is False where
        the piece failed verification (the caller computes those by quadrature)."""
        y = (np.log(V) - self.u0) / self.width
        idx = np.clip(np.floor(y).astype(np.intp), 0, self.pieces - 1)
        t = 2 * (y - idx) - 1
        out = np.zeros(V.shape)
        done = np.zeros(V.shape, dtype=bool)
        for i in np.unique(idx):
            sel = idx == i
            coef = self._piece(int(i))
            if coef is None:
                continue
            out[sel] = self._eval_piece(coef, t[sel], r[sel])
            done[sel] = True
        return out, done
