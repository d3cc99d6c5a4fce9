r"""Position-resolved mean field of conv bodies with zero padding (small feature maps).

With circular padding every position of a map is alike and the per-position rules of
:class:`~critsym.ops.conv.Conv` are those of a Linear layer.  With zero padding a k^d conv at
position x sums only the taps that fall inside the map, so the state depends on x.  At
infinite width distinct taps have independent weights, so the *diagonal* of the conv's kernel
map needs only the diagonal of its input (cross-position covariances cancel in it):

    K'(x) = σ_w² (1/k^d) Σ_{δ: x+δ ∈ map} K(x+δ) + σ_b²,
    J'(x) = σ_w² (1/k^d) Σ_{δ: x+δ ∈ map} J(x+δ)                        (the tangent),

and a stride s keeps the positions s·x'.  An elementwise activation acts per position:
K(x) → E φ(h(x))², J(x) → E φ'(h(x))²·J(x) (h(x) Gaussian at infinite width).

**BatchNorm** normalises each channel over the batch *and* the positions.  The per-channel
part of a preactivation, a_i(x) = E_batch h_i(x) (its mean over the examples), is Gaussian
over the channels with the covariance between positions

    M'(x, x') = σ_w² (1/k^d) Σ_{δ: x+δ, x'+δ ∈ map} M(x+δ, x'+δ) + σ_b²,

with M(y, y') = E_channels[m(y) m(y')] of the conv's input means m.  BatchNorm removes the
mean over positions of a_i: the centred covariance is C = Π M Π (Π = I − 11ᵀ/P), which is 0
with circular padding (a_i is the same at every position) but not with zero padding (border
positions miss taps).  Each channel is divided by its own variance over rows,
s_i² = mean_x [V(x) + c_i(x)²] (V = K' − diag M', c_i ~ N(0, C) its centred offsets), so the
position dependence survives it; s_i depends on the channel's border offsets, and the
expectations over channels (K_BN(x) = E[(V(x) + c(x)²)/s²], M_BN = E[c c'/s²],
J_BN(x) = J'(x)·E[1/s²], and those of the activation after it) are averages over
:data:`CHANNEL_DRAWS` drawn channels.

An activation after BatchNorm acts channel by channel on the drawn channels,
h = c_i(x)/s_i + ξ/s_i.  Elsewhere it sees h = c + ξ with the per-channel offset c ~ N(0, M)
(over channels) and the batch fluctuation ξ ~ N(0, V(x)), V = K − diag M; its output means
g_x(c) = E_ξ φ(c + ξ) have the covariance M_φ(x, x') = E[g_x(c(x)) g_{x'}(c(x'))], the Mehler
series Σ_n a_n(x) a_n(x') ρ^n (a_n the normalised Hermite coefficients of g_x(√M(x,x)·u),
ρ the offsets' correlation; tested against 2-D quadrature).

**Post-activation residual blocks** x' = φ(μ·x + Σ_k y_k) (:mod:`~.stream`): per position the
branch output y(x) is independent of the stream (the branches' last weights are fresh), so each
position's law follows the recursion of :mod:`~.stream` with its own branch law and branch
tangent J_y(x) (a stencil of the stream tangent field).  A branch ending in BatchNorm gives
per channel y = c_i(x)/s_i + ξ/s_i with tangent variance J(x)/s_i²: a scale mixture over the
drawn channels, carried as such (grouped by s_i); independent branches convolve.
Stated approximation: the covariance M of the stream's per-channel means (what the next
block's convs see) is computed with the offsets of u = μx + y taken Gaussian over the channels
(covariance μ²·Cov of x's means plus the branches' centred offsets) and the rest of u a
Gaussian of the law's variance; the means themselves come from the laws.  At the body input M
is measured; with circular padding the offsets vanish.  Stated approximation of BatchNorm
(above): expectations over the channels are averages over drawn channels (sampling error
≈ 0.3 % on J, tested by halving).

The APJN the tests measure (``cs.apjn``) averages over all positions and channels: J^{0,l} =
mean_x J_l(x) for a probe of unit variance at every input entry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.signal import fftconvolve

from ..errors import DerivationError, HyperparameterError
from ..ops.base import Op, Sequential
from . import stream as S

#: what the position-resolved theory of a zero-padded body approximates (the import notes it)
POSITION_NOTE = (
    "zero padding: position-resolved theory (critsym.interop.padded); approximated: the "
    "covariance of the stream's per-channel means (their offsets taken Gaussian over the "
    "channels); BatchNorm's per-channel scale averaged over drawn channels")
#: the note for a zero-padded body of Conv / BatchNorm / activation chains
CHAIN_NOTE = ("zero padding: position-resolved theory (critsym.interop.padded); BatchNorm's "
              "per-channel scale averaged over drawn channels")
#: Mehler series terms for the covariance of an activation's per-channel means
MEHLER_TERMS = 40
#: Gauss–Hermite nodes of the one-dimensional expectations
GH_NODES = 120


# ------------------------------------------------------------------------------ stencils
def _taps(k: int, d: int):
    r = k // 2
    return list(itertools.product(range(-r, r + 1), repeat=d))


def stencil(f: np.ndarray, k: int, stride: int = 1, circular: bool = False) -> np.ndarray:
    """(1/k^d) Σ_{δ: x+δ in the map} f(x+δ) at the kept positions s·x' (a 'same' k^d conv's
    diagonal rule; zero padding drops the outside taps, circular padding wraps them)."""
    d, r = f.ndim, k // 2
    out = np.zeros_like(f)
    fp = f if circular else np.pad(f, r)
    for delta in _taps(k, d):
        if circular:
            out += np.roll(f, tuple(-t for t in delta), axis=tuple(range(d)))
        else:
            out += fp[tuple(slice(r + t, r + t + n) for t, n in zip(delta, f.shape, strict=True))]
    out /= k ** d
    return out[tuple(slice(None, None, stride) for _ in range(d))]


def stencil2(M: np.ndarray, k: int, stride: int = 1, circular: bool = False) -> np.ndarray:
    """(1/k^d) Σ_{δ: x+δ, x'+δ in the map} M(x+δ, x'+δ) for M of shape (*map, *map): the
    conv's rule for the covariance over channels between two positions (same taps δ)."""
    d2, r = M.ndim, k // 2
    d = d2 // 2
    out = np.zeros_like(M)
    Mp = M if circular else np.pad(M, r)
    for delta in _taps(k, d):
        dd = delta + delta
        if circular:
            out += np.roll(M, tuple(-t for t in dd), axis=tuple(range(d2)))
        else:
            out += Mp[tuple(slice(r + t, r + t + n) for t, n in zip(dd, M.shape, strict=True))]
    out /= k ** d
    return out[tuple(slice(None, None, stride) for _ in range(d2))]


# ------------------------------------------------------------------------------ the state
@dataclass(frozen=True, eq=False)
class MapState:
    """Per-position state of a feature map of shape ``shape``: ``K`` E h(x)² (shape), ``M``
    the covariance over channels of the per-channel means, E_i[m_i(x) m_i(x')] (shape + shape),
    ``J`` the tangent variance (shape)."""

    K: np.ndarray
    M: np.ndarray
    J: np.ndarray
    #: after BatchNorm: (offsets c_i/s_i (N, P), 1/s_i² (N,), fluctuation variance V (P,),
    #: tangent before the division J (P,)) of N channels drawn from the offsets' law
    channels: tuple | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.K.shape

    @property
    def P(self) -> int:
        return self.K.size

    def Mflat(self) -> np.ndarray:
        return self.M.reshape(self.P, self.P)

    def __repr__(self) -> str:
        return (f"MapState(shape={self.shape}, K={self.K.mean():.5g}, J={self.J.mean():.5g}, "
                f"range of J {self.J.min():.4g}..{self.J.max():.4g})")


def _value(e, values: dict, what: str) -> float:
    e = sp.sympify(e)
    missing = [s.name for s in e.free_symbols if s.name not in values]
    if missing:
        raise HyperparameterError(f"{what} needs values for {sorted(missing)}")
    return float(e.subs({s: values[s.name] for s in e.free_symbols}))


def conv_step(st: MapState, op, values: dict) -> MapState:
    """A Conv (or Linear: k = 1) by the diagonal rules of the module doc."""
    k = getattr(op, "kernel_size", 1)
    stride = getattr(op, "stride", 1)
    circ = getattr(op, "padding", "zeros") == "circular"
    sw2 = _value(op.sigma_w, values, repr(op)) ** 2
    sb2 = _value(op.sigma_b, values, repr(op)) ** 2
    return MapState(sw2 * stencil(st.K, k, stride, circ) + sb2,
                    sw2 * stencil2(st.M, k, stride, circ) + sb2,
                    sw2 * stencil(st.J, k, stride, circ))


def batchnorm_step(st: MapState) -> MapState:
    """BatchNorm over batch and positions (infinite batch): each channel's offsets a_i(x) are
    centred over the positions, c_i = Π a_i ~ N(0, Π M Π) over the channels, and divided by
    the channel's own s_i² = mean_x [V(x) + c_i(x)²] (V = K − diag M, the batch
    fluctuation).  s_i depends on the channel's border offsets, so the expectations over the
    channels are taken over :data:`CHANNEL_DRAWS` fixed draws of c (module doc)."""
    P = st.P
    M = st.Mflat()
    C = M - M.mean(0, keepdims=True) - M.mean(1, keepdims=True) + M.mean()
    V = np.clip(st.K.ravel() - np.diag(M), 0.0, None)
    if not V.mean() + np.trace(C) / P > 0:
        raise DerivationError("BatchNorm of a map whose channels do not vary")
    c = _draws(C)                                                   # (N, P)
    r = 1.0 / (V.mean() + (c * c).mean(1))                          # 1/s_i²
    ch = c * np.sqrt(r)[:, None]
    K = V * r.mean() + (ch * ch).mean(0)
    Mn = ch.T @ ch / ch.shape[0]
    Jin = st.J.ravel()
    return MapState(K.reshape(st.shape), Mn.reshape(st.M.shape),
                    (Jin * r.mean()).reshape(st.shape), (ch, r, V, Jin))


#: channels drawn for the expectations over BatchNorm's per-channel scale (antithetic pairs),
#: at most :data:`DRAW_ENTRIES` / positions of them (and at least 2^11)
CHANNEL_DRAWS = 1 << 14
DRAW_ENTRIES = 1 << 22


def _draws(C: np.ndarray) -> np.ndarray:
    lam, U = np.linalg.eigh(C)
    lam = np.clip(lam, 0.0, None)
    n = max(1 << 11, min(CHANNEL_DRAWS, DRAW_ENTRIES // C.shape[0]))
    z = np.random.default_rng(0).standard_normal((n // 2, C.shape[0]))
    z = np.concatenate([z, -z])
    return (z * np.sqrt(lam)) @ U.T


# Gauss–Hermite (probabilists') nodes and the normalised Hermite polynomials at them
@lru_cache(maxsize=4)
def _gh(n: int):
    u, w = np.polynomial.hermite_e.hermegauss(n)
    return u, w / w.sum()


@lru_cache(maxsize=4)
def _hermite_table(n_terms: int, n_nodes: int) -> np.ndarray:
    u, _ = _gh(n_nodes)
    H = np.empty((n_terms, u.size))
    H[0] = 1.0
    if n_terms > 1:
        H[1] = u
    for n in range(1, n_terms - 1):  # He_{n+1} = u He_n − n He_{n−1}, normalised by √(n!)
        H[n + 1] = (u * H[n] * math.sqrt(1.0 / (n + 1)) - H[n - 1] * math.sqrt(n / (n + 1)))
    return H


class _Activation:
    """φ, φ'² and the offset-mean g_c(σ) = E_ξ φ(c + σξ); ReLU in closed form, else by
    Gauss–Hermite quadrature."""

    def __init__(self, act, values):
        self.relu = act.name == "relu"
        if not self.relu:
            self.phi, self.dphi2 = S._act_numeric(act, values)

    def moments(self, T: np.ndarray):
        """(E φ(h)², E φ'(h)², E φ(h)) for h ~ N(0, T) per position."""
        if self.relu:
            return T / 2, np.where(T > 0, 0.5, 0.0), np.sqrt(T / (2 * np.pi))
        u, w = _gh(GH_NODES)
        h = np.sqrt(T)[:, None] * u[None, :]
        f = self.phi(h.ravel()).reshape(h.shape)
        return (f * f) @ w, self.dphi2(h.ravel()).reshape(h.shape) @ w, f @ w

    def g(self, c: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """E_ξ φ(c + sd·ξ), ξ ~ N(0, 1); c (P, n), sd (P, 1)."""
        if self.relu:
            from scipy.special import ndtr

            s = np.maximum(sd, 1e-300)
            t = c / s
            return np.where(sd > 0, c * ndtr(t) + s * np.exp(-0.5 * t * t) / math.sqrt(2 * np.pi),
                            np.maximum(c, 0.0))
        u, w = _gh(GH_NODES // 2)
        h = c[..., None] + sd[..., None] * u
        return self.phi(h.ravel()).reshape(h.shape) @ w


def act_step(st: MapState, act, values: dict) -> MapState:
    """An elementwise activation at every position: h = c + ξ with the per-channel offset
    c ~ N(0, M) over channels and the batch fluctuation ξ ~ N(0, K − diag M)."""
    if st.channels is not None:
        return _act_after_norm(st, act, values)
    T = st.K.ravel()
    m2, chi, _ = _Activation(act, values).moments(T)
    Mout = offset_means(np.zeros_like(T), st.Mflat(), T, act, values)
    return MapState(m2.reshape(st.shape), Mout.reshape(st.M.shape),
                    (chi * st.J.ravel()).reshape(st.shape))


def _act_after_norm(st: MapState, act, values: dict) -> MapState:
    """The activation of BatchNorm's output, channel by channel over the drawn channels:
    h = c_i(x)/s_i + ξ/s_i, ξ ~ N(0, V(x))."""
    ch, r, V, Jin = st.channels
    sd = np.sqrt(V[None, :] * r[:, None])                           # (N, P)
    A = _Activation(act, values)
    if A.relu:
        from scipy.special import ndtr

        s_ = np.maximum(sd, 1e-300)
        t = ch / s_
        pdf = np.exp(-0.5 * t * t) / math.sqrt(2 * np.pi)
        Phi = ndtr(t)
        g = ch * Phi + s_ * pdf
        g2 = (ch * ch + s_ * s_) * Phi + ch * s_ * pdf
        d2 = Phi
    else:
        u, w = _gh(GH_NODES // 4)
        h = ch[..., None] + sd[..., None] * u
        f = A.phi(h.ravel()).reshape(h.shape)
        g, g2 = f @ w, (f * f) @ w
        d2 = A.dphi2(h.ravel()).reshape(h.shape) @ w
    N = ch.shape[0]
    K = g2.mean(0)
    Mout = g.T @ g / N
    J = Jin * (d2 * r[:, None]).mean(0)
    return MapState(K.reshape(st.shape), Mout.reshape(st.M.shape), J.reshape(st.shape))


def offset_means(mean: np.ndarray, Cov: np.ndarray, T: np.ndarray, act, values: dict
                 ) -> np.ndarray:
    """E_i[m_i(x) m_i(x')] for m_i(x) = E_ξ φ(mean(x) + c_i(x) + ξ), c ~ N(0, Cov) over the
    channels, ξ ~ N(0, T − diag Cov) (per position; the Mehler series of the module doc)."""
    P = T.size
    D = np.clip(np.diag(Cov), 0.0, T)
    A = _Activation(act, values)
    u, w = _gh(GH_NODES)
    Htab = _hermite_table(MEHLER_TERMS, GH_NODES)
    c = mean[:, None] + np.sqrt(D)[:, None] * u[None, :]
    gv = A.g(c, np.sqrt(T - D)[:, None])                            # (P, nodes)
    a = (gv * w[None, :]) @ Htab.T                                  # (P, terms)
    DD = np.outer(D, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = Cov / np.sqrt(DD)
    rho = np.where(DD > 0, np.clip(rho, -1.0, 1.0), 0.0)
    Mout = np.zeros((P, P))
    rpow = np.ones((P, P))
    for n in range(MEHLER_TERMS):
        Mout += np.outer(a[:, n], a[:, n]) * rpow
        rpow = rpow * rho
    np.fill_diagonal(Mout, (gv * gv) @ w)                           # E g(c)² exactly
    return Mout


def branch_step(op: Op, st: MapState, values: dict) -> MapState:
    """Run ``st`` through a chain of Conv / Linear / BatchNorm / Act operators."""
    ops = op.ops if isinstance(op, Sequential) else (op,)
    for o in ops:
        name = type(o).__name__
        if isinstance(o, Sequential):
            st = branch_step(o, st, values)
        elif name in ("Conv", "Linear"):
            st = conv_step(st, o, values)
        elif name == "BatchNorm":
            if getattr(o, "batch_size", None):
                raise DerivationError(
                    f"{o!r}: the position-resolved theory has the infinite-batch BatchNorm")
            st = batchnorm_step(st)
        elif name == "Act":
            st = act_step(st, o, values)
        else:
            raise DerivationError(
                f"{o!r} has no position-resolved rule (critsym.interop.padded handles Conv, "
                "Linear, BatchNorm and activations)")
    return st


def run_maps(op: Op, K0: np.ndarray, values: dict, M0: np.ndarray | None = None,
             depth: int = 1) -> list[MapState]:
    """A stack of ``depth`` copies of ``op`` (Conv / BatchNorm / Act chain) from the input
    second moments ``K0`` (per position; the input means' covariance ``M0``, default 0) with a
    unit probe: the state after each copy (index 0 the input)."""
    K0 = np.asarray(K0, dtype=np.float64)
    M = np.zeros(K0.shape * 2) if M0 is None else np.asarray(M0, dtype=np.float64)
    st = MapState(K0, M, np.ones_like(K0))
    out = [st]
    for _ in range(depth):
        st = branch_step(op, st, values)
        out.append(st)
    return out


CHAIN_OPS = ("Conv", "Linear", "BatchNorm", "Act")


def _chain_op(op) -> bool:
    if isinstance(op, Sequential):
        return all(_chain_op(o) for o in op.ops)
    name = type(op).__name__
    return name in CHAIN_OPS and not (name == "BatchNorm" and getattr(op, "batch_size", None))


def resolvable(op: Op) -> bool:
    """True when the position-resolved theory has the rules of ``op``: a chain of Conv /
    Linear / BatchNorm / activations, or a post-activation block whose branches are such
    chains (a GroupNorm branch is not: the bulk stream theory runs)."""
    parts = S.post_activation(op)
    if parts is not None:
        return bool(parts.branches) and all(_chain_op(b) for b in parts.branches)
    return _chain_op(op)


def chain(pairs) -> bool:
    """True when every block is a chain of Conv / Linear / BatchNorm / activations and some
    conv is zero-padded: the body :func:`run_chain` runs."""
    ops = [th.arch for th, _ in pairs]
    return bool(ops) and all(_chain_op(o) for o in ops) and any(zero_padded(o) for o in ops)


@dataclass(frozen=True, eq=False)
class ChainRun:
    """Across a body of chains: ``K[b]``, ``J[b]`` the means over positions at boundary b,
    ``maps[b]`` the :class:`MapState`."""

    K: np.ndarray
    J: np.ndarray
    maps: tuple


def map_input(x0, J0: float = 1.0) -> MapState:
    """The body input (batch, channels, *map) as per-position second moments, the covariance
    of its per-channel means (estimated without the batch noise, :func:`input_law`) and a
    probe of variance ``J0``."""
    ml = input_law(x0, J0)
    return MapState(ml.field("K"), ml.M, np.full(ml.shape, float(J0)))


def run_chain(pairs, x0, J0: float = 1.0) -> ChainRun:
    """The position-resolved theory of a body of Conv / BatchNorm / activation chains
    (``pairs`` = (theory, values)) from the body input (batch, channels, *map) or a
    :class:`MapState` (its tangent restarted at ``J0``)."""
    st = (MapState(x0.K, x0.M, np.full(x0.shape, float(J0)), x0.channels)
          if isinstance(x0, MapState) else map_input(x0, J0))
    if st.channels is not None:
        ch, r, V, _ = st.channels
        st = MapState(st.K, st.M, st.J, (ch, r, V, st.J / r.mean()))
    out = [st]
    for th, vals in pairs:
        st = branch_step(th.arch, st, vals)
        out.append(st)
    return ChainRun(np.array([s.K.mean() for s in out]), np.array([s.J.mean() for s in out]),
                    tuple(out))


# ------------------------------------------------------------------ post-activation blocks
@dataclass(frozen=True, eq=False)
class MapLaw:
    """The stream at a block boundary, per position: ``laws`` (a :class:`~.stream.StreamLaw`
    per position, C order over ``shape``) and ``M``, the covariance over channels of the
    per-channel means."""

    shape: tuple[int, ...]
    laws: tuple
    M: np.ndarray = field(repr=False)

    @property
    def K(self) -> float:
        return float(np.mean([law.K for law in self.laws]))

    @property
    def J(self) -> float:
        return float(np.mean([law.J for law in self.laws]))

    def field(self, what: str) -> np.ndarray:
        return np.array([getattr(law, what) for law in self.laws]).reshape(self.shape)

    def state(self) -> MapState:
        return MapState(self.field("K"), self.M, self.field("J"))

    def __repr__(self) -> str:
        return f"MapLaw(shape={self.shape}, K={self.K:.5g}, J={self.J:.5g})"


def input_law(x0, J0: float = 1.0) -> MapLaw:
    """The body input (batch, channels, *map) as per-position empirical laws with a unit probe,
    and the covariance over channels of its per-channel means, estimated without the batch
    noise: M(x, x') = mean_c Σ_{b≠b'} x_bc(x) x_b'c(x') / (B(B−1))."""
    import torch

    x = (x0.detach().to(torch.float64).cpu().numpy() if isinstance(x0, torch.Tensor)
         else np.asarray(x0, dtype=np.float64))
    if x.ndim < 3 or x.shape[0] < 2:
        raise HyperparameterError(
            f"the position-resolved theory needs the body input as (batch >= 2, channels, "
            f"*map), got shape {x.shape}")
    B, C = x.shape[:2]
    shape = x.shape[2:]
    f = x.reshape(B, C, -1)
    laws = []
    for p in range(f.shape[-1]):
        law = S.empirical_law(f[:, :, p])
        laws.append(S.StreamLaw(law.x, law.p, law.p * J0, law.offset))
    s = f.sum(0)                                            # (C, P)
    M = (np.einsum("cp,cq->pq", s, s) - np.einsum("bcp,bcq->pq", f, f)) / (C * B * (B - 1))
    return MapLaw(tuple(shape), tuple(laws), M.reshape(shape + shape))


class PaddedStreamTheory:
    """A post-activation residual block φ(μ·x + Σ_k y_k(x)) with position-resolved branches
    (module doc); ``step(maplaw, values)`` maps the per-position stream at its input to its
    output."""

    multi_axis = True
    token_state = False
    stream = True
    positions = True

    def __init__(self, block: Op):
        base = S.PostActivationTheory(block)  # the same checks (branches end in BatchNorm)
        self.block, self.parts, self.arch = block, base.parts, block

    def __repr__(self) -> str:
        return f"PaddedStreamTheory({self.block!r})"

    def step(self, ml: MapLaw, values: dict) -> MapLaw:
        mu = _value(self.parts.mu, values, "mu")
        st = ml.state()
        v = Jy = offsets = None
        outs = []
        for b in self.parts.branches:
            out = branch_step(b, st, values)
            outs.append(out)
            v = out.K if v is None else v + out.K
            Jy = out.J if Jy is None else Jy + out.J
            offsets = out.Mflat() if offsets is None else offsets + out.Mflat()
        if mu != 0 and v.shape != ml.shape:
            raise DerivationError(f"{self.block!r}: an identity skip across a stride")
        fns = S._act_numeric(self.parts.act, values)
        laws = []
        for p in range(v.size):
            prev = ml.laws[p] if mu != 0 else _point_law()
            kern = _mixture_kernels(outs, p) if all(o.channels is not None for o in outs) \
                else None
            laws.append(S.advance(prev, mu, float(v.flat[p]), float(Jy.flat[p]), fns, kern))
        return MapLaw(v.shape, tuple(laws), self._means(ml, mu, v, offsets, laws, values))

    def _means(self, ml: MapLaw, mu: float, v, offsets, laws, values) -> np.ndarray:
        """The covariance over channels of the output's per-channel means: the offsets of
        u = μx + y taken Gaussian over the channels (covariance μ²·cov of x's means plus the
        branches' centred offsets), the rest of u per position a Gaussian of the law's
        variance; the means themselves from the laws."""
        mean = np.array([law.mean for law in laws])
        P = mean.size
        if mu != 0:
            mx = ml.field("mean").ravel()
            Cx = ml.M.reshape(P, P) - np.outer(mx, mx)
            var_x = ml.field("K").ravel() - mx * mx
        else:
            mx, Cx, var_x = np.zeros(P), np.zeros((P, P)), np.zeros(P)
        Cov = mu * mu * Cx + offsets
        T = mu * mu * var_x + v.ravel()
        Mg = offset_means(mu * mx, Cov, T, self.parts.act, values)
        g_mean = _model_means(mu * mx, Cov, T, self.parts.act, values)
        out = Mg - np.outer(g_mean, g_mean) + np.outer(mean, mean)
        return out.reshape(v.shape * 2)


def _model_means(mean, Cov, T, act, values) -> np.ndarray:
    """E_i m_i(x) of :func:`offset_means`' model."""
    D = np.clip(np.diag(Cov), 0.0, T)
    u, w = _gh(GH_NODES)
    c = mean[:, None] + np.sqrt(D)[:, None] * u[None, :]
    return _Activation(act, values).g(c, np.sqrt(T - D)[:, None]) @ w


#: groups of BatchNorm's drawn channels by their scale 1/s_i² for the branch output's law
SCALE_GROUPS = 16


def _mixture_kernels(outs, p: int):
    """The law of the branch sum y at position p and E[branch tangent² ; y], on the grid of
    :mod:`~.stream`: each branch ends in BatchNorm, so per channel y = c_i/s_i + ξ/s_i with
    ξ ~ N(0, V) and tangent variance J/s_i², a scale mixture over the drawn channels (grouped
    by s_i, each group's offsets binned to the grid); the branches are independent."""
    H = S.H
    k = kt = None
    for out in outs:
        ch, r, V, Jin = out.channels
        m = ch[:, p]
        Vp = float(V[p])
        order = np.argsort(r)
        hm = int(np.ceil(np.abs(m).max() / H)) + 1
        hg = int(np.ceil(S.PAD * math.sqrt(max(Vp * r.max(), (H / 4) ** 2)) / H))
        z = H * np.arange(-hg, hg + 1)
        ka = np.zeros(2 * (hm + hg) + 1)
        kta = np.zeros_like(ka)
        n = m.size
        for idx in np.array_split(order, SCALE_GROUPS):
            t = m[idx] / H + hm
            i0 = np.floor(t).astype(np.int64)
            frac = t - i0
            hist, hist_t = np.zeros(2 * hm + 1), np.zeros(2 * hm + 1)
            for arr, wts in ((hist, np.ones(idx.size)), (hist_t, r[idx])):
                np.add.at(arr, i0, wts * (1 - frac) / n)
                np.add.at(arr, np.minimum(i0 + 1, 2 * hm), wts * frac / n)
            sd = math.sqrt(max(Vp * float(r[idx].mean()), (H / 4) ** 2))
            gauss = np.exp(-0.5 * (z / sd) ** 2)
            gauss /= gauss.sum() * H
            ka += fftconvolve(hist, gauss)
            kta += fftconvolve(hist_t, gauss) * float(Jin[p])
        if k is None:
            k, kt = ka, kta
        else:
            k, kt = H * fftconvolve(k, ka), H * (fftconvolve(kt, ka) + fftconvolve(k, kta))
    k, kt = np.maximum(k, 0.0), np.maximum(kt, 0.0)
    return k, kt, (k.size - 1) // 2


def _point_law():
    one = np.ones(1)
    return S.StreamLaw(np.zeros(1), one, 0 * one)


@dataclass(frozen=True, eq=False)
class PaddedRun:
    """Across a body: ``K[b]`` (mean over positions), ``J[b]`` = J^{0,b} (mean over
    positions), ``O[b]`` the mean over positions of (E x)², ``maps[b]`` the :class:`MapLaw`
    at boundary b."""

    K: np.ndarray
    J: np.ndarray
    O: np.ndarray
    maps: tuple


def run_padded(pairs, x0, J0: float = 1.0) -> PaddedRun:
    """The position-resolved theory of a body of post-activation blocks (``pairs`` =
    (theory, values)) from the body input tensor ``x0`` (batch, channels, *map) or a
    :class:`MapLaw` (its tangent restarted: a probe of variance ``J0``)."""
    if isinstance(x0, MapLaw):
        ml = MapLaw(x0.shape, tuple(S.StreamLaw(law.x, law.p, law.p * J0, law.offset)
                                    for law in x0.laws), x0.M)
    else:
        ml = input_law(x0, J0)
    maps = [ml]
    for th, vals in pairs:
        if not isinstance(th, PaddedStreamTheory):
            th = PaddedStreamTheory(th.block)
        ml = th.step(ml, vals)
        maps.append(ml)
    O = np.array([float(np.mean(m.field("mean") ** 2)) for m in maps])
    return PaddedRun(np.array([m.K for m in maps]), np.array([m.J for m in maps]), O,
                     tuple(maps))


#: a BatchNorm normalising over fewer rows (examples × positions) is noted on import
FEW_ROWS = 64


def few_rows_note(rows: int) -> str:
    return (f"BatchNorm over {rows} rows (examples × positions of the map): the theory's "
            "BatchNorm is the infinite-batch one, and few rows raise J (torchvision resnet18 "
            "on 32×32 images, 8 images, 1×1 maps: measured/theory 1.3–1.6 per block; pass "
            "more examples)")


def strides(op: Op) -> list[int]:
    """The strides of the strided convs of ``op`` along one path (a block's downsampling: the
    largest stride among parallel branches)."""
    if type(op).__name__ == "Conv":
        return [op.stride] if op.stride > 1 else []
    if isinstance(op, Sequential):
        return [s for o in op.ops for s in strides(o)]
    kids = list(getattr(op, "branches", ()) or ())
    if getattr(op, "branch", None) is not None:
        kids.append(op.branch)
    best: list[int] = []
    for k in kids:
        got = strides(k)
        if int(np.prod(got or [1])) > int(np.prod(best or [1])):
            best = got
    return best


def zero_padded(op: Op) -> bool:
    """True when ``op`` contains a Conv with zero padding and a kernel larger than 1."""
    if type(op).__name__ == "Conv":
        return op.padding == "zeros" and op.kernel_size > 1
    kids = []
    for name in ("ops", "branches"):
        kids.extend(getattr(op, name, ()) or ())
    if getattr(op, "branch", None) is not None:
        kids.append(op.branch)
    return any(zero_padded(k) for k in kids if isinstance(k, Op))


__all__ = ["CHAIN_NOTE", "FEW_ROWS", "POSITION_NOTE", "ChainRun", "MapLaw", "MapState",
           "PaddedRun", "PaddedStreamTheory", "act_step", "batchnorm_step", "branch_step",
           "chain", "conv_step", "few_rows_note", "input_law", "map_input", "resolvable",
           "run_chain", "run_maps", "run_padded", "stencil", "stencil2", "strides",
           "zero_padded"]
