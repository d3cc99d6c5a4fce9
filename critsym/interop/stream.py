r"""Post-activation residual bodies: blocks x ↦ φ(μ·x + Σ_k y_k(x)), whose stream is not Gaussian.

A torchvision or Hugging Face ResNet applies its activation *after* the residual sum:

    x^{l+1} = φ(u^{l+1}),   u^{l+1} = μ·x^l + Σ_k y_k^l(x^l),

with y_k the branches: the residual branch conv → BN → φ → conv → BN, and in the first block of
a later stage a projection shortcut conv1×1 (stride s) → BN in place of the identity (μ = 0).
The operators are the ordinary ones: ``Residual(branch, μ) >> Act(φ)`` or
``Parallel(shortcut, branch) >> Act(φ)``; a block closes after the activation when the pattern
repeats (:func:`post_activation_joins`).  The fold cannot repeat such a block, because the
stream u = μ φ(u_prev) + y is not Gaussian; the state at a block boundary is a *law*.

What is Gaussian is each branch, and the fold derives it (multi-axis state, rows = examples ×
positions).  A branch sees its input only through m_2 = E[x²], the per-neuron offset O (the
part of a channel shared by all rows) and the input's APJN, so the fold of the branch on a
Gaussian surrogate with (K, O_C) = (m_2, O) is exact for it: its output y_k is Gaussian with
variance v_k, independent of x and of the other branches (their last weights are independent),
with APJN factor g_k = χ_{J,k}(m_2, O).  The theory requires every branch to end in a
normalisation:

* BatchNorm: then v_k = 1 and y_k has no per-neuron offset, so with independent examples the
  stream never acquires a per-neuron random part and O = (E x)² from the second block on (at
  the body input O is the measured offset);
* a per-example normalisation (GroupNorm(1, C), read as ``LayerNorm`` over the channels):
  y = z / √(E_ex z²) with the example's own second moment (its mean over channels and
  positions vanishes for zero-mean weights), so again v_k = 1, but y_k keeps a per-neuron
  offset O_y = O_z / K_z: a Gaussian part a_c shared by the rows of neuron c.  The law of one
  row, p' = E_x[N(u' − μx; 0, v)], is unchanged (a_c + e_c(row) ~ N(0, v), independent of
  x_c: the last weights are independent of everything before), but the stream's own offset is
  no longer (E x)² and is not carried.  The branch needs none where (v_k, g_k) do not depend
  on O (each normalisation per example: LayerNorm divides by K − O_T, never O_C); this is
  checked at both ends of O's range, (E x)² ≤ O ≤ K, and such a branch is refused otherwise,
  as is a BatchNorm branch after it (BatchNorm divides by K − O).

The law and the tangent follow a one-dimensional recursion (exact at infinite width and batch).
The state at a boundary is the law of x with the tangent weight τ(x) = E[t_x² | x]·P(x); for
the law of u with density p and w(u) = E[t_u² | u] p(u) (t the forward tangent),

    p'(u') = E_x[N(u' − μx; 0, v)],                       v = Σ_k v_k,
    w'(u') = μ² ∫ τ(x) N(u' − μx; 0, v) dx + g·J_x·p'(u'),   g = Σ_k g_k,  J_x = ∫ τ,

and then x' = φ(u'), τ'(u') = φ'(u')² w'(u'); K = E[x²], J^{0,l} = ∫ τ.  The tangent is not
independent of u (the skip keeps the previous tangent, correlated with u), which is why τ is
carried as a function.  At the body input (or a restart at a block boundary) τ = P: a probe
independent of x with unit variance.  A strided conv has the per-position map of an unstrided
one (:class:`~critsym.ops.conv.Conv`), so the projection shortcut is just another branch.

Numerics: u on a grid of spacing ``H`` with a node at 0 (trapezoid weights, φ'² at a kink the
mean of both sides); the body input's law is its empirical law binned to the same spacing.
This is :class:`critsym.batchnorm.BasicBlockTheory` for blocks that differ, projection
shortcuts and a measured input law.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.signal import fftconvolve

from ..errors import DerivationError, HyperparameterError
from ..ops.base import Op, Sequential

#: grid spacing of the stream law (h and h/2 agree to < 1e-4 relative, see the tests)
H = 0.01
#: the grid reaches this many branch standard deviations beyond the law's support
PAD = 12.0
#: operators that sum branches (the residual sum before the activation)
SUMS = ("Residual", "Parallel")


@dataclass(frozen=True, eq=False)
class StreamLaw:
    """The law of a block boundary's x as weighted points: values ``x``, probabilities ``p``
    and tangent weights ``tau`` = E[t² | x]·p (so J = Σ τ); ``offset``: the per-neuron offset
    O the next branches see (None: (E x)², independent examples)."""

    x: np.ndarray
    p: np.ndarray
    tau: np.ndarray
    offset: float | None = None

    @property
    def K(self) -> float:
        return float(np.sum(self.p * self.x * self.x))

    @property
    def mean(self) -> float:
        return float(np.sum(self.p * self.x))

    @property
    def J(self) -> float:
        return float(np.sum(self.tau))

    @property
    def O(self) -> float:  # noqa: E743 - the offset's name in the theory
        return self.mean ** 2 if self.offset is None else self.offset

    def __repr__(self) -> str:
        return f"StreamLaw(K={self.K:.5g}, E x={self.mean:.4g}, J={self.J:.5g})"


def gaussian_law(K: float, offset: float = 0.0) -> StreamLaw:
    """x ~ N(0, K) on the grid, with a unit tangent."""
    if not (np.isfinite(K) and K > 0):
        raise HyperparameterError(f"K0 must be a finite number > 0, got {K!r}")
    sd = np.sqrt(K)
    n = int(np.ceil(PAD * sd / H))
    x = H * np.arange(-n, n + 1)
    p = np.exp(-0.5 * (x / sd) ** 2)
    p /= p.sum()
    return StreamLaw(x, p, p.copy(), offset)


def empirical_law(samples: np.ndarray, offset: float | None = None) -> StreamLaw:
    """The empirical law of ``samples`` binned to the grid spacing, with a unit tangent."""
    s = np.asarray(samples, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise HyperparameterError("the body input law needs at least one finite sample")
    idx = np.rint(s / H).astype(np.int64)
    lo = idx.min()
    counts = np.bincount(idx - lo).astype(np.float64)
    keep = counts > 0
    # bin means keep the first two moments of the samples closer than the bin centres
    sums = np.bincount(idx - lo, weights=s)
    x = sums[keep] / counts[keep]
    p = counts[keep] / s.size
    return StreamLaw(x, p, p.copy(), offset)


# ------------------------------------------------------------------------------ the blocks
@dataclass(frozen=True)
class PostActivation:
    """A block φ(μ·x + Σ_k branch_k(x)) read from ``Residual(b, μ) >> Act(φ)`` or
    ``Parallel(b_1, …) >> Act(φ)`` (identity branches count in μ)."""

    act: Op
    mu: float | object
    branches: tuple[Op, ...]


def post_activation(op: Op) -> PostActivation | None:
    """The block's parts when ``op`` is a residual / parallel sum followed by an activation."""
    if not isinstance(op, Sequential) or len(op.ops) != 2:
        return None
    s, a = op.ops
    if type(a).__name__ != "Act" or type(s).__name__ not in SUMS:
        return None
    if type(s).__name__ == "Residual":
        return PostActivation(a, s.mu, (s.branch,))
    mu, rest = 0, []
    for b in s.branches:
        if type(b).__name__ == "Act" and b.name == "identity":
            mu += 1
        else:
            rest.append(b)
    return PostActivation(a, mu, tuple(rest))


def post_activation_joins(items) -> set[int]:
    """Indices of residual / parallel sums in a chain's elements that close their block only
    after the activation that follows them: the sum is followed by an ``Act`` and either every
    branch of the sum ends in BatchNorm or a per-example LayerNorm (the stream theory's
    block), or the next element is again a sum (the activation's output is the next block's
    skip), or the previous block is such a block (the last two: a post-activation body the
    theory refuses with the reason)."""
    out: set[int] = set()
    names = [type(e.op).__name__ if e.ok else "" for e in items]
    for i in range(len(items) - 1):
        if names[i] not in SUMS or names[i + 1] != "Act":
            continue
        parts = post_activation(Sequential(items[i].op, items[i + 1].op))
        normalised = parts is not None and bool(parts.branches) and all(
            _last_norm(b) is not None for b in parts.branches)
        if normalised or (i + 2 < len(items) and names[i + 2] in SUMS) or (i - 2) in out:
            out.add(i)
    return out


#: the last operators a branch may end in: over the batch, or per example (GroupNorm(1, C))
BRANCH_NORMS = ("BatchNorm", "LayerNorm")


def _last_norm(op: Op) -> str | None:
    """The name of the normalisation a branch ends in (one of :data:`BRANCH_NORMS`), or None."""
    while isinstance(op, Sequential):
        op = op.ops[-1]
    name = type(op).__name__
    return name if name in BRANCH_NORMS else None


@lru_cache(maxsize=128)
def _branch_theory(branch: Op):
    """The fold's theory of a branch (it ends in BatchNorm: the multi-axis state)."""
    from ..derive import derive

    return derive(branch)


class LawStateError(DerivationError, AttributeError):
    """A :class:`~critsym.theory.Theory` method asked of a post-activation block, whose state
    is a law (an ``AttributeError`` too, so ``getattr(theory, name, default)`` still works)."""


class PostActivationTheory:
    """The stream theory of one post-activation block (module doc): ``step(law, values)``
    maps the law at the block input to the law at its output.  It runs only within a body
    (:func:`critsym.interop.run_blocks`, ``ImportResult.network_run`` / ``J_theory``); the
    single-block :class:`~critsym.theory.Theory` API (``run``, ``chi_J``, fixed points) does
    not apply to a law state and raises :class:`LawStateError` saying so."""

    multi_axis = True
    token_state = False
    stream = True

    def __init__(self, block: Op):
        parts = post_activation(block)
        if parts is None:
            raise DerivationError(f"{block!r} is not a post-activation residual block "
                                  "(a Residual or Parallel sum followed by an Act)")
        if not parts.branches:
            raise DerivationError(f"{block!r}: a sum of identities has no branch")
        for b in parts.branches:
            if _last_norm(b) is None:
                raise DerivationError(
                    f"the branch {b!r} of the post-activation block {block!r} does not end in "
                    "BatchNorm or GroupNorm: its output variance follows the stream, and the "
                    "stream law theory (critsym.interop.stream) needs branches normalised "
                    "over the batch or per example (conv → BN or conv → GroupNorm, as in "
                    "torchvision and Hugging Face ResNets)")
        self.block, self.parts = block, parts
        self.norms = tuple(_last_norm(b) for b in parts.branches)
        self.branch_theories = tuple(_branch_theory(b) for b in parts.branches)
        self.arch = block

    def __repr__(self) -> str:
        return f"PostActivationTheory({self.block!r})"

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise LawStateError(
            f"{name!r} is not available for the post-activation block {self.block!r}: its state "
            "is the law of a non-Gaussian stream, run through a body with "
            "critsym.interop.run_blocks or ImportResult.network_run() / J_theory(); with "
            "BatchNorm in every branch it has no critical initialization (gradients explode "
            "at every initialization, docs/batchnorm.md), with GroupNorm none is more critical "
            "than another (critsym.init.critical_ says why)")

    def _values(self, th, values: dict) -> dict:
        names = {s.name for s in th.arch.hyperparameters()}
        missing = names - set(values)
        if missing:
            raise HyperparameterError(f"{self.block!r} needs values for {sorted(missing)}")
        return {k: float(v) for k, v in values.items() if k in names}

    def branch_moments(self, K: float, O: float, values: dict, mean: float | None = None
                       ) -> tuple[float, float]:
        """(v, g): the summed variance and APJN factor of the branches for an input with
        E x² = K and per-neuron offset O (NaN: not carried, after a per-example normalised
        branch; ``mean`` = E x bounds it from below, (E x)² ≤ O ≤ K)."""
        v = g = 0.0
        for b, th, norm in zip(self.parts.branches, self.branch_theories, self.norms,
                               strict=True):
            hp = self._values(th, values)
            if norm == "LayerNorm":
                vk, gk = self._offset_free(b, th, K, (mean or 0.0) ** 2, hp)
            else:
                if not np.isfinite(O):
                    raise DerivationError(
                        f"the branch {b!r} ends in BatchNorm, which divides by the variance "
                        "over the batch, K − O, but an earlier branch normalised per example "
                        "(GroupNorm) left the stream a per-neuron offset O the stream theory "
                        "does not carry; use one kind of normalisation in the body")
                r = th.run(1, K0=K, O_T0=0.0, O_C0=O, **hp)
                off = float(r.O_C[1]) if r.O_C is not None else 0.0
                vk, gk = float(r.K[1]), float(r.J[1])
                if abs(off) > 1e-9 * max(vk, 1.0):
                    raise DerivationError(
                        f"the branch {b!r} leaves a per-neuron offset {off:.3g}")
            v += vk
            g += gk
        return v, g

    @staticmethod
    def _offset_free(branch, th, K: float, lo: float, hp: dict) -> tuple[float, float]:
        """(v_k, g_k) of a per-example normalised branch, the same at both ends of the input
        offset's range [lo, K] (module doc), or refused.  A branch whose theory has the state
        (K) alone holds no offset: its run is the answer."""
        if not th.multi_axis:
            r = th.run(1, K0=K, **hp)
            return float(r.K[1]), float(r.J[1])
        ends = [th.run(1, K0=K, O_T0=0.0, O_C0=o, **hp) for o in (lo, K * (1 - 1e-9))]
        (v0, g0), (v1, g1) = ((float(r.K[1]), float(r.J[1])) for r in ends)
        if abs(v1 - v0) > 1e-9 * max(abs(v0), 1.0) or abs(g1 - g0) > 1e-9 * max(abs(g0), 1.0):
            raise DerivationError(
                f"the branch {branch!r} ends in a per-example normalisation (GroupNorm), but its "
                f"output variance or APJN depends on the stream's per-neuron offset, which the "
                f"stream theory does not carry past such a branch (v {v0:.6g} vs {v1:.6g}, "
                f"g {g0:.6g} vs {g1:.6g} at offsets {lo:.4g} and {K:.4g}), e.g. a BatchNorm "
                "inside it; normalise the branch per example only")
        return v0, g0

    def step(self, law: StreamLaw, values: dict) -> StreamLaw:
        e = sp.sympify(self.parts.mu)
        mu = float(e.subs({q: values[q.name] for q in e.free_symbols if q.name in values}))
        v, g = self.branch_moments(law.K, law.O, values, law.mean)
        sd = np.sqrt(v)
        # μx deposited on the grid (linear weights: the mean is kept, the variance grows by
        # at most H²/4), then convolved with the branch's N(0, v) sampled on the grid
        t = mu * law.x / H
        i0 = np.floor(t).astype(np.int64)
        frac = t - i0
        lo_i = int(i0.min())
        n_dep = int(i0.max()) - lo_i + 2
        dep_p, dep_t = np.zeros(n_dep), np.zeros(n_dep)
        for arr, wts in ((dep_p, law.p), (dep_t, law.tau)):
            np.add.at(arr, i0 - lo_i, wts * (1 - frac))
            np.add.at(arr, i0 - lo_i + 1, wts * frac)
        half = int(np.ceil(PAD * sd / H))
        kern = np.exp(-0.5 * (H * np.arange(-half, half + 1) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        p = fftconvolve(dep_p, kern)
        w = mu * mu * fftconvolve(dep_t, kern) + g * law.J * p
        p, w = np.maximum(p, 0.0), np.maximum(w, 0.0)  # FFT round-off below 1e-16
        u = H * (lo_i - half + np.arange(p.size))
        trap = np.full(u.shape, H)
        trap[[0, -1]] = H / 2
        phi, dphi2 = _act_numeric(self.parts.act, values)
        x = phi(u)
        pts = trap * p
        norm = pts.sum()
        # a per-example normalised branch leaves a per-neuron offset the law does not carry
        offset = float("nan") if "LayerNorm" in self.norms else None
        return StreamLaw(x, pts / norm, trap * dphi2(u) * w / norm, offset)


def _act_numeric(act, values: dict):
    """(φ, φ'²) as numpy functions; φ'² at a kink is the mean of both one-sided values."""
    import torch

    f = act.torch_function(values)

    def phi(u):
        with torch.no_grad():
            return f(torch.as_tensor(u, dtype=torch.float64)).numpy()

    def d2(u):
        out = np.zeros_like(u)
        for eps in (-1e-9, 1e-9):
            t = torch.as_tensor(u + eps, dtype=torch.float64).requires_grad_(True)
            (gr,) = torch.autograd.grad(f(t).sum(), t)
            out += 0.5 * gr.detach().numpy() ** 2
        return out

    return phi, d2


@dataclass(frozen=True, eq=False)
class StreamRun:
    """The stream theory across a body: at every block boundary b = 0..L, ``K[b]`` = E[x²],
    ``J[b]`` = J^{0,b}, ``O[b]`` the per-neuron offset, ``laws[b]`` the :class:`StreamLaw`."""

    K: np.ndarray
    J: np.ndarray
    O: np.ndarray
    laws: tuple


def run_stream(pairs, K0: float = 1.0, *, O_C0: float = 0.0, law0=None,
               J0: float = 1.0) -> StreamRun:
    """The network theory of a body of post-activation blocks (``pairs`` = (theory, values)):
    K, J, the offset and the law at every block boundary.  ``law0``: the body input's
    :class:`StreamLaw`, or samples of it (its empirical law), else x⁰ ~ N(0, K0); the first
    branches see the offset ``O_C0``."""
    if not np.isfinite(O_C0) and not isinstance(law0, StreamLaw):  # a law holds its own
        raise HyperparameterError(f"O_C0 must be a finite offset, got {O_C0!r}")
    if law0 is None:
        law = gaussian_law(K0, O_C0)
    elif isinstance(law0, StreamLaw):
        law = law0
    else:
        law = empirical_law(law0, O_C0)
    law = StreamLaw(law.x, law.p, law.p * J0, law.offset)  # a unit probe at the body input
    laws = [law]
    for th, vals in pairs:
        if not getattr(th, "stream", False):
            raise DerivationError(
                f"{th.arch!r} has a Gaussian state while other blocks of the body are "
                "post-activation residual blocks (a law state); critsym runs a body of one kind")
        law = th.step(law, vals)
        laws.append(law)
    K = np.array([x.K for x in laws])
    J = np.array([x.J for x in laws])
    O = np.array([x.O for x in laws])
    return StreamRun(K, J, O, tuple(laws))


__all__ = ["LawStateError", "PostActivation", "PostActivationTheory", "StreamLaw", "StreamRun",
           "empirical_law", "gaussian_law", "post_activation", "post_activation_joins",
           "run_stream"]
