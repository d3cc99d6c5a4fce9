r"""Finite-batch theory of the BatchNorm MLP block  BN_B → φ → W  at infinite width.

State.  At infinite width a neuron's batch vector of preactivations h ∈ ℝ^B is Gaussian and
exchangeable (covariance K_d I + K_o 11ᵀ-type).  BatchNorm maps it to y = G h/√v, with
G = I − 11ᵀ/B and v = |G h|²/B the batch variance: y is uniform on the sphere |y|² = B in 1⊥,
*whatever the covariance*, and independent of v.  So the forward map reaches its fixed point in
one block:  K = σ_w² q + σ_b², the covariance of two examples σ_w² q c* + σ_b², with
q = E φ(y_1)², q c* = E φ(y_1)φ(y_2).  The next preactivations have G h ~ N(0, σ_w² q(1 − c*) G),
so v ~ σ_w² q (1 − c*) χ²_{B−1}/B and

    E[1/v] = B / ((B − 3) σ_w² q (1 − c*))        (finite only for B ≥ 4).

Jacobian.  y = G h/√(|Gh|²/B) gives J_BN = (1/√v)(G − yyᵀ/B) = P/√v with P the orthogonal
projection onto 1⊥ ∩ y⊥, so J_BN J_BNᵀ = (1/v)(G − yyᵀ/B).  A forward tangent t (per neuron a
B-vector) goes through a block as t'_i = Σ_j W_ij D_j P_j t_j/√v_j (D = diag φ'(y)).  Its
covariance C (the same for every neuron at infinite width; the tangent is independent of the
neuron's own y by the probe's sign symmetry) maps as

    C' = σ_w² E[1/v] E[D P C P D].

For C = c I + β 11ᵀ, P C P = c P, and E[D P D] = α I + β' 11ᵀ by exchangeability, with

    α = E[φ'(y_1)²(1 − 1/B − y_1²/B) + φ'(y_1)φ'(y_2)(1/B + y_1 y_2/B)]   (diagonal − off-diag.),
    d = E[φ'(y_1)²(1 − 1/B − y_1²/B)]                                        (diagonal).

The APJN of the whole batch is J = tr C/B.  From an isotropic input tangent (C⁰ = I, J^{0,0} = 1)
the first block gives J^{0,1} = σ_w² E[1/v_0] d, and every later block multiplies it by

    λ(B) = σ_w² E[1/v] α = B α / ((B − 3) q (1 − c*)),

independent of σ_w and σ_b (centring removes the bias).  For the input: a batch whose examples
have variance K_0 and pairwise correlation c_0 (Gaussian per neuron, e.g. i.i.d. entries for
c_0 = 0) has E[1/v_0] = B/((B − 3) K_0 (1 − c_0)).  Linear φ: α = (B − 2)/(B − 1),
q(1 − c*) = B/(B − 1), λ = (B − 2)/(B − 3).  As B → ∞, λ → E[φ'(z)²]/Var φ(z), z ~ N(0, 1), the
infinite-batch value that the fold derives for ``BatchNorm()``.

The sphere expectations are computed by :mod:`critsym.batchnorm.sphere` (stated accuracy 1e-10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp

from ..activations import x as _x
from ..errors import DerivationError, HyperparameterError
from ..gaussian.numeric import compile_expr
from ..ops.activation import Act
from ..ops.base import Op, Sequential
from ..ops.batchnorm import BatchNorm
from ..ops.linear import Linear
from ..theory import RunResult, Theory
from .sphere import check_batch, sphere_expect1, sphere_expect2


@dataclass(frozen=True)
class BatchMoments:
    """The sphere moments of φ at batch size B (``B = None``: the Gaussian B → ∞ limit).

    ``q`` = E φ(y_1)², ``qc`` = E φ(y_1)φ(y_2), ``d`` and ``alpha`` as in the module doc,
    ``err``: the largest quadrature error estimate."""

    B: int | None
    q: float
    qc: float
    d: float
    alpha: float
    err: float

    @property
    def growth(self) -> float:
        """λ(B) = B α/((B − 3) q(1 − c*)); at B = None, E φ'(z)²/Var φ(z)."""
        if self.B is None:
            return float(self.alpha / (self.q - self.qc))
        return float(self.B * self.alpha / ((self.B - 3) * (self.q - self.qc)))


def _numeric(act: Act):
    """(φ, φ', kink points) of an activation as numpy functions."""
    for name, val in act.params:
        if sp.sympify(val).free_symbols:
            raise DerivationError(f"{act!r}: the finite-batch theory needs numeric activation "
                                  f"parameters, {name} = {val} is symbolic")
    e = act.phi(_x)
    de = sp.diff(e, _x)
    f, df = compile_expr(e, (_x,)), compile_expr(de, (_x,))
    kinks = []
    for atom in (e.atoms(sp.Heaviside, sp.Abs, sp.Max, sp.Min, sp.sign)
                 | {a for a in e.atoms(sp.Function) if type(a).__name__ in ("ReLU", "ELU")}):
        for arg in atom.args:
            if arg.has(_x) and sp.diff(arg, _x, 2) == 0:
                pt = sp.solve(arg, _x)
                kinks += [float(p) for p in pt if p.is_real]
    return (lambda y: np.asarray(f(y), dtype=float) * np.ones_like(y),
            lambda y: np.asarray(df(y), dtype=float) * np.ones_like(y), tuple(kinks))


def batch_moments(act: Act, B: int | None) -> BatchMoments:
    """q, q c*, d, α of :class:`BatchMoments` for activation ``act`` at batch size ``B``."""
    phi, dphi, kinks = _numeric(act)
    if B is None:
        from scipy.integrate import quad

        def gauss(fn):
            pts = sorted({0.0, *kinks})
            edges = [-40.0, *pts, 40.0]
            tot, err = 0.0, 0.0
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                v, e = quad(lambda z: fn(np.array(z)) * math.exp(-z * z / 2), lo, hi,
                            epsabs=1e-13, epsrel=1e-12, limit=200)
                tot, err = tot + v, err + e
            return tot / math.sqrt(2 * math.pi), err

        q, e1 = gauss(lambda z: phi(z) ** 2)
        m, e2 = gauss(phi)
        d, e3 = gauss(lambda z: dphi(z) ** 2)
        return BatchMoments(None, q, m * m, d, d, max(e1, e2, e3))
    B = check_batch(B)
    q, e1 = sphere_expect1(lambda y: phi(y) ** 2, B, kinks=kinks)
    qc, e2 = sphere_expect2(lambda a, b: phi(a) * phi(b), B)
    d, e3 = sphere_expect1(lambda y: dphi(y) ** 2 * (1 - 1 / B - y * y / B), B, kinks=kinks)
    o, e4 = sphere_expect2(lambda a, b: dphi(a) * dphi(b) * (1 / B + a * b / B), B)
    return BatchMoments(B, q, qc, d, d + o, max(e1, e2, e3, e4))


def growth_rate(act: Act | str, batch_size: int | None = None) -> float:
    """The per-layer APJN growth λ(B) of BN_B → φ → W (``batch_size=None``: B → ∞)."""
    act = Act(act) if isinstance(act, str) else act
    return batch_moments(act, batch_size).growth


def split_block(arch: Op) -> tuple[BatchNorm, Act, Linear] | None:
    """The (BatchNorm, Act, Linear) of a block ``BatchNorm(B) >> Act(φ) >> Linear()``, None if
    ``arch`` has no finite-batch BatchNorm; :class:`DerivationError` for other blocks with one."""

    def finite(op):
        return (isinstance(op, BatchNorm) and op.batch_size is not None) or any(
            finite(c) for c in op.children())

    if not finite(arch):
        return None
    ops = arch.ops if isinstance(arch, Sequential) else (arch,)
    if (len(ops) == 3 and isinstance(ops[0], BatchNorm) and isinstance(ops[1], Act)
            and isinstance(ops[2], Linear)):
        return ops  # type: ignore[return-value]
    raise DerivationError(
        f"{arch!r}: the finite-batch theory covers the MLP block BatchNorm(B) >> Act(phi) >> "
        "Linear(); for other architectures use BatchNorm() (the infinite-batch rule, exact as "
        "B -> infinity, in particular for conv nets whose BatchNorm pools B*H*W positions)"
    )


@dataclass(frozen=True)
class FiniteBatchTheory(Theory):
    """Mean-field theory of ``BatchNorm(B) >> Act(φ) >> Linear()`` at batch size B (module doc).

    As a :class:`~critsym.theory.Theory`: F = σ_w² q + σ_b² (the one-block fixed point),
    χ_J = λ(B) (the per-layer growth from the second block on, for every σ_w, σ_b), and
    G = σ_w² q c* + σ_b² (the covariance of two examples of the batch), so the criticality
    tools (fixed point, phase, critical_point, summary) apply.  :meth:`run` is exact from the
    input batch on (its first block has J^{0,1} = σ_w² E[1/v_0] d).
    """

    @classmethod
    def from_arch(cls, arch: Op) -> FiniteBatchTheory:
        parts = split_block(arch)
        if parts is None:
            raise DerivationError(f"{arch!r} has no finite-batch BatchNorm")
        _, act, lin = parts
        mo = batch_moments(act, parts[0].batch_size)
        sw2, sb2 = lin.sigma_w**2, lin.sigma_b**2
        return cls(arch=arch, F=sw2 * sp.Float(mo.q) + sb2, chi=sp.Float(mo.growth),
                   G=sw2 * sp.Float(mo.qc) + sb2)

    #: the correlation of one pair of examples is not a map of (K, K_12) at finite batch
    has_c_map = False

    @cached_property
    def parts(self) -> tuple[BatchNorm, Act, Linear]:
        return split_block(self.arch)  # type: ignore[return-value]

    def covariance_map(self, *args, **kw):
        """Not defined at finite batch: raises :class:`DerivationError` saying why."""
        raise DerivationError(
            "at a finite batch the covariance of one pair of examples depends on the whole "
            "batch's law, not on (K11, K22, K12) alone; for the exchangeable batch of i.i.d. "
            "examples it is sigma_w^2 q c* + sigma_b^2 after every block: see run(...).c")

    def c_map(self, *args, **kw):
        return self.covariance_map()

    @cached_property
    def general(self):
        return self.F, self.chi, self.G

    @property
    def batch_size(self) -> int:
        return int(self.parts[0].batch_size)  # type: ignore[arg-type]

    @cached_property
    def moments(self) -> BatchMoments:
        return batch_moments(self.parts[1], self.batch_size)

    @cached_property
    def moments_infinite(self) -> BatchMoments:
        return batch_moments(self.parts[1], None)

    @property
    def growth(self) -> float:
        """λ(B): J^{0,l+1} = λ J^{0,l} for l ≥ 1, for every σ_w, σ_b."""
        return self.moments.growth

    @property
    def growth_infinite(self) -> float:
        """lim_{B→∞} λ(B) = E φ'(z)²/Var φ(z)."""
        return self.moments_infinite.growth

    def _sigmas(self, hp: dict) -> tuple[np.ndarray, np.ndarray]:
        vals = self.values(hp)
        lin = self.parts[2]
        out = []
        for e in (lin.sigma_w, lin.sigma_b):
            f = sp.lambdify(list(self.hyperparameters), e, "numpy")
            out.append(np.asarray(f(*vals), dtype=float))
        return out[0], out[1]

    def run(self, depth: int, K0: object = 1.0, c0: object = 0.0, *,
            allow_nonfinite: bool = False, **hp) -> RunResult:
        """K^l and J^{0,l} for ``depth`` blocks from an input batch with example variance K0 and
        pairwise correlation c0 (Gaussian per neuron; i.i.d. entries: c0 = 0).  ``c[l]`` is the
        correlation of two examples of the batch."""
        if not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        sw, sb = self._sigmas(hp)
        K0 = np.asarray(K0, dtype=float)
        c0 = np.asarray(c0, dtype=float)
        if np.any(~np.isfinite(K0)) or np.any(K0 <= 0):
            raise HyperparameterError(f"K0 must be finite and > 0, got {K0}")
        if np.any(~np.isfinite(c0)) or np.any(c0 >= 1) or np.any(c0 < -1 / (self.batch_size - 1)):
            raise HyperparameterError(
                f"c0 must lie in [-1/(B-1), 1) (the pairwise correlation of a batch of "
                f"{self.batch_size} examples that are not all equal), got {c0}")
        mo, B = self.moments, self.batch_size
        shape = np.broadcast_shapes(sw.shape, sb.shape, K0.shape, c0.shape)
        K = sw**2 * mo.q + sb**2
        K12 = sw**2 * mo.qc + sb**2
        chi0 = sw**2 * B * mo.d / ((B - 3) * K0 * (1 - c0))
        Ks = [np.broadcast_to(K0, shape)] + [np.broadcast_to(K, shape)] * depth
        cs = [np.broadcast_to(c0, shape)] + [np.broadcast_to(K12 / K, shape)] * depth
        chis = [np.broadcast_to(chi0, shape)] + [np.full(shape, mo.growth)] * (depth - 1)
        chis = chis[:depth]
        J = np.cumprod(np.stack([np.ones(shape), *chis]), axis=0)
        return RunResult(K=np.stack(Ks).astype(float), J=J,
                         chi=np.stack(chis) if chis else np.zeros((0, *shape)),
                         c=np.stack(cs).astype(float))

    def summary(self) -> str:
        """One line: the explosion rate, for every initialization, and its limit."""
        return explosion_line(self.growth, self.growth_infinite, self.batch_size)

    def __repr__(self) -> str:
        return f"FiniteBatchTheory({self.arch!r}: lambda(B={self.batch_size}) = {self.growth:.6g})"


def explosion_line(rate: float, limit: float, B: int | None) -> str:
    """"BatchNorm: gradients grow by λ per layer for every sigma_w; no critical point"."""
    at = "infinite batch" if B is None else f"batch size {B}"
    lim = "" if B is None else f" (B -> infinity limit {limit:.6g})"
    if abs(rate - 1) <= 1e-12:
        return (f"BatchNorm at {at}: gradients are preserved (factor 1 per layer) for every "
                f"sigma_w and sigma_b{lim}; critical everywhere")
    kind = "grow" if rate > 1 else "shrink"
    return (f"BatchNorm at {at}: gradients {kind} by a factor {rate:.6g} per layer for every "
            f"sigma_w and sigma_b{lim}; no critical point")
