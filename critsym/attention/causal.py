r"""Causal self-attention at initialization: the position-resolved token Gram recursion.

Under a causal mask token a attends only to tokens 1…a, so tokens are not exchangeable and the
two-number token state (q, p) of :mod:`critsym.fold` cannot hold the network's state.  This
module carries the whole n × n Gram instead, numerically in float64:

* forward: K_ab = x_a·x_b/d, and m_a = (1/d) Σ_i x_ai the channel mean of token a;
* tangent: T_ab = E δx_a·δx_b/d, δx = (∂x/∂x⁰) ε for probes ε with i.i.d. unit entries (so
  T⁰ = I), and J^{0,l} = (1/n) tr T^l, the APJN of :func:`critsym.apjn` (mean over tokens and
  channels of ‖∂h^l/∂h^0 ε‖²).

**Maps** (infinite width, independent zero-mean weights W ~ N(0, σ²/fan_in), biases N(0, σ_b²)):

* Linear: K' = σ_w² K + σ_b² 11ᵀ, T' = σ_w² T, m' = 0;
* φ elementwise (zero-mean Gaussian input of Gram K): K'_ab = E φ(u_a) φ(u_b),
  T'_ab = E φ'(u_a) φ'(u_b) · T_ab, m'_a = E φ(u_a) (relu: the arc-cosine closed form; other
  φ: the 2-D trapezoid rule on [−10, 10]² in standard units, step 0.25/max(1, SD): spectrally
  accurate for activations analytic in a strip, error < 1e-10 against scipy quadrature for
  tanh, silu, gelu_tanh at variances 0.25–18, tested; Gauss–Hermite rules lose accuracy
  there: tanh at variance 18 with 96 nodes errs by 4e-3);
* LayerNorm per token (γ = 1): s_a² = K_aa − m_a², K'_ab = (K_ab − m_a m_b)/(s_a s_b),
  T'_ab = T_ab/(s_a s_b), m' = 0; RMSNorm: the same with m = 0 in s and K
  (the rank-one projections of the normalisation Jacobian are O(1/d) and dropped);
* gated MLP down(φ(g) ⊙ u), g = gate(x), u = up(x) independent: K_z = E[φ(g_a)φ(g_b)] ⊙ K_u,
  T_z = σ_g² E[φ'(g_a)φ'(g_b)] ⊙ K_u ⊙ T + E[φ(g_a)φ(g_b)] ⊙ σ_u² T, then down;
* attention with a fixed mixing matrix A (rows of the softmax): v = W_V x, y = A v, out W_O y:
  K_y = A K_v Aᵀ, T_y = A T_v Aᵀ;
* Scale(g) (a fixed multiplier, e.g. timm's LayerScale): K' = g²K, T' = g²T, m' = g m;
* residual μx + f(x), f ending in an independent zero-mean linear map (a Scale after it
  too; the cross terms vanish in expectation): K' = μ² K + K_f, T' = μ² T + T_f, m' = μ m + m_f.

**Attention regimes** (mask ``causal=True``: row a over tokens 1…a; ``False``: all n):

* ``"uniform"``: A_ab = 1/a (causal) or 1/n, exact at every n (A does not depend on x);
* ``"deterministic"``: A = row-softmax(β K) over the allowed tokens, exact at infinite width
  as in :mod:`critsym.ops.attention` (its softmax path is O(1/d));
* ``"standard"`` (independent W_Q, W_K): **approximated** by the uniform A of the mask, its
  random logits neglected.  Each row's logits have variance v_a = β² K_aa (K_aa − K̄) (the
  exchangeable law of :mod:`critsym.attention.standard`), and the neglected corrections are
  O(v); :class:`CausalRun` records max v.  Hugging Face's initialization (weights
  N(0, 0.02²)) gives β = σ_Qσ_K = 4·10⁻⁴·d: v ≤ 3·10⁻³ up to d = 128.

Every operator on a token is then a deterministic function of the Gram, so with the uniform or
deterministic regime the recursion is exact at infinite width for any n and any (not
exchangeable) input Gram; it is checked against Monte Carlo of hand-built torch causal blocks in
``tests/test_attention_causal.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ArchitectureError, HyperparameterError

#: trapezoid step (in units of the standard deviation, divided by max(1, largest SD)) and
#: range of the Gaussian expectations of smooth activations
Z_STEP = 0.25
Z_MAX = 10.0


@dataclass(frozen=True)
class GramState:
    """The position-resolved state of one example: forward Gram ``K`` (n × n), channel means
    ``m`` (n), tangent Gram ``T`` (n × n)."""

    K: np.ndarray
    m: np.ndarray
    T: np.ndarray

    @property
    def J(self) -> float:
        """The APJN from the start: (1/n) tr T."""
        return float(np.trace(self.T)) / self.T.shape[0]

    def __repr__(self) -> str:
        return (f"GramState(n={self.K.shape[0]}, mean K_aa={np.diag(self.K).mean():.4g}, "
                f"J={self.J:.4g})")


@dataclass(frozen=True)
class CausalRun:
    """J[l] = J^{0,l} after block l (J[0] = 1), the final :class:`GramState` of each example,
    and ``max_logit_var``: the largest logit variance of standard-regime attention taken as
    uniform (0 when none was)."""

    J: np.ndarray
    states: tuple
    causal: bool
    max_logit_var: float = 0.0

    def __repr__(self) -> str:
        kind = "causal" if self.causal else "full"
        return f"CausalRun({kind}, {len(self.J) - 1} blocks, J^{{0,L}}={self.J[-1]:.6g})"


def mixing_matrix(n: int, causal: bool = True) -> np.ndarray:
    """Uniform attention A over the allowed tokens: A_ab = 1/a for b ≤ a (causal), else 1/n."""
    if causal:
        A = np.tril(np.ones((n, n)))
        return A / A.sum(1, keepdims=True)
    return np.full((n, n), 1.0 / n)


def softmax_matrix(K: np.ndarray, beta: float, causal: bool = True) -> np.ndarray:
    """Deterministic attention: A = row-softmax(β K) over the allowed tokens."""
    s = beta * K
    if causal:
        s = np.where(np.tril(np.ones_like(K, dtype=bool)), s, -np.inf)
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(1, keepdims=True)


# ------------------------------------------------------------------------- activations
@functools.lru_cache(maxsize=64)
def _numeric_act(act) -> tuple:
    """(φ, φ') of an :class:`~critsym.ops.activation.Act` as numpy callables."""
    import sympy as sp

    from ..activations import NUMPY_FUNCTIONS

    x = sp.Symbol("x", real=True)
    e = act.phi(x)
    if e.free_symbols - {x}:
        raise HyperparameterError(
            f"{act!r} has symbolic parameters {sorted(map(str, e.free_symbols - {x}))}; the "
            "causal recursion is numeric: give them values first (Op.subs)")
    mods = [NUMPY_FUNCTIONS, "scipy", "numpy"]
    f = sp.lambdify(x, e, modules=mods)
    g = sp.lambdify(x, sp.diff(e, x), modules=mods)

    def vec(fn):
        return lambda u: np.broadcast_to(np.asarray(fn(u), dtype=float), np.shape(u))

    return vec(f), vec(g)


@functools.lru_cache(maxsize=64)
def _grid(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes and weights of E f(z), z ~ N(0, 1), on [−Z_MAX, Z_MAX], step
    h = Z_STEP/steps."""
    h = Z_STEP / steps
    z = np.arange(-Z_MAX, Z_MAX + h / 2, h)
    return z, h * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _nodes(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trapezoid rule for standard deviations up to max(d): step h = Z_STEP/⌈max(1, d)⌉.
    For f(d z) analytic in the strip |Im u| < a (tanh: a = π/2; silu: π) the error is about
    exp(−2π a/(d h)) ≤ exp(−2π a/Z_STEP) (< 1e-15 for tanh), the range's e^{−Z_MAX²/2}."""
    return _grid(int(math.ceil(max(1.0, float(np.max(d, initial=0.0))))))


def _pair_expectations(K: np.ndarray, f, g) -> np.ndarray:
    """M_ab = E f(u_a) g(u_b), (u_a, u_b) ~ N(0, [[K_aa, K_ab], [K_ab, K_bb]]) (2-D
    trapezoid rule, :func:`_nodes`; with f = g, M is symmetric and only b ≥ a is
    computed)."""
    d = np.sqrt(np.clip(np.diag(K), 0, None))
    z, w = _nodes(d)
    safe = np.where(d > 0, d, 1.0)
    rho = np.clip(K / np.outer(safe, safe), -1.0, 1.0)
    z1, z2 = z[:, None], z[None, :]
    W = w[:, None] * w[None, :]
    fa = f(d[:, None, None] * z1[None])  # (n, G, 1)
    c = np.sqrt(np.clip(1 - rho**2, 0.0, None))
    out = np.empty(K.shape)
    n = K.shape[0]
    sym = f is g
    for a in range(n):  # (n, G, G) per row a: memory O(n G²)
        b0 = a if sym else 0
        dd, r, cc = d[b0:, None, None], rho[a, b0:, None, None], c[a, b0:, None, None]
        ub = dd * (r * z1[None] + cc * z2[None])
        out[a, b0:] = (W[None] * fa[a][None] * g(ub)).sum((1, 2))
    if sym:
        out = np.triu(out) + np.triu(out, 1).T
    return out


def _relu_expectations(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E relu relu, E relu' relu', E relu) in closed form (arc-cosine kernel):
    E relu(u_a) relu(u_b) = √(K_aa K_bb)(sin θ + (π − θ) cos θ)/(2π),
    E 1[u_a>0] 1[u_b>0] = (π − θ)/(2π), E relu(u_a) = √(K_aa/(2π)), cos θ = ρ_ab."""
    d = np.sqrt(np.clip(np.diag(K), 0, None))
    safe = np.where(d > 0, d, 1.0)
    rho = np.clip(K / np.outer(safe, safe), -1.0, 1.0)
    th = np.arccos(rho)
    KK = np.outer(d, d) * (np.sin(th) + (math.pi - th) * rho) / (2 * math.pi)
    return KK, (math.pi - th) / (2 * math.pi), d / math.sqrt(2 * math.pi)


def activation_moments(act, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E φ(u_a)φ(u_b), E φ'(u_a)φ'(u_b), E φ(u_a)) for u ~ N(0, K) (relu in closed form,
    other activations by the trapezoid rule of :func:`_nodes`)."""
    if act.name == "relu" and not act.params:
        return _relu_expectations(K)
    f, g = _numeric_act(act)
    d = np.sqrt(np.clip(np.diag(K), 0, None))
    z, w = _nodes(d)
    m = np.array([float((w * f(di * z)).sum()) for di in d])
    return _pair_expectations(K, f, f), _pair_expectations(K, g, g), m


# ------------------------------------------------------------------------- recursion
def _num(v, what: str) -> float:
    try:
        return float(v)
    except TypeError:
        raise HyperparameterError(
            f"{what} = {v} is symbolic; the causal recursion is numeric: give every "
            "hyperparameter a value (Op.subs)") from None


class _Runner:
    def __init__(self, causal: bool):
        self.causal = causal
        self.max_logit_var = 0.0

    def __call__(self, op, s: GramState) -> GramState:
        from ..ops.activation import Act
        from ..ops.attention import Attention
        from ..ops.base import Sequential
        from ..ops.gated import GatedMLP
        from ..ops.linear import Linear
        from ..ops.norm import LayerNorm
        from ..ops.residual import Residual
        from ..ops.rmsnorm import RMSNorm
        from ..ops.scale import Scale

        if isinstance(op, Sequential):
            for o in op.ops:
                s = self(o, s)
            return s
        if isinstance(op, Linear):
            return self.linear(s, _num(op.sigma_w, "Linear sigma_w"),
                               _num(op.sigma_b, "Linear sigma_b"))
        if isinstance(op, Act):
            self._zero_mean(s, repr(op))
            KK, JJ, m = activation_moments(op, s.K)
            return GramState(KK, m, JJ * s.T)
        if isinstance(op, LayerNorm | RMSNorm):
            m = s.m if isinstance(op, LayerNorm) else np.zeros_like(s.m)
            sd = np.sqrt(np.diag(s.K) - m**2)
            if not (sd > 0).all():
                raise HyperparameterError(f"{op!r}: a token with zero variance (K_aa = 0)")
            o = np.outer(sd, sd)
            Kc = s.K - np.outer(m, m) if isinstance(op, LayerNorm) else s.K
            return GramState(Kc / o, (s.m - m) / sd, s.T / o)
        if isinstance(op, GatedMLP):
            self._zero_mean(s, repr(op))
            g = self.linear(s, _num(op.gate.sigma_w, "gate sigma_w"),
                            _num(op.gate.sigma_b, "gate sigma_b"))
            sg = _num(op.gate.sigma_w, "gate sigma_w") ** 2
            su = _num(op.up.sigma_w, "up sigma_w") ** 2
            Ku = su * s.K + _num(op.up.sigma_b, "up sigma_b") ** 2
            PP, DD, _ = activation_moments(op.act, g.K)
            z = GramState(PP * Ku, np.zeros(len(s.m)), sg * DD * Ku * s.T + PP * su * s.T)
            return self.linear(z, _num(op.down.sigma_w, "down sigma_w"),
                               _num(op.down.sigma_b, "down sigma_b"))
        if isinstance(op, Attention):
            return self.attention(op, s)
        if isinstance(op, Scale):
            g = _num(op.gain, "Scale gain")
            return GramState(g * g * s.K, g * s.m, g * g * s.T)
        if isinstance(op, Residual):
            mu = _num(op.mu, "Residual mu")
            if not _ends_linear(op.branch):
                raise ArchitectureError(
                    f"{op!r}: the causal recursion adds branch and skip without cross terms, "
                    "which holds when the branch ends in a Linear, Attention or GatedMLP (an "
                    "independent zero-mean output map)")
            f = self(op.branch, s)
            return GramState(mu**2 * s.K + f.K, mu * s.m + f.m, mu**2 * s.T + f.T)
        raise ArchitectureError(
            f"the causal token recursion has no rule for {type(op).__name__} ({op!r}); it "
            "runs Linear, Act, LayerNorm, RMSNorm, GatedMLP, Attention, Scale, Residual and "
            "their sequences")

    @staticmethod
    def _zero_mean(s: GramState, what: str) -> None:
        if np.abs(s.m).max() > 1e-12 * max(1.0, float(np.abs(s.K).max())):
            raise ArchitectureError(
                f"{what} after a non-zero channel mean: the recursion takes elementwise maps on "
                "zero-mean Gaussian preactivations (put a Linear or LayerNorm before it)")

    @staticmethod
    def linear(s: GramState, sw: float, sb: float) -> GramState:
        return GramState(sw**2 * s.K + sb**2, np.zeros(len(s.m)), sw**2 * s.T)

    def attention(self, op, s: GramState) -> GramState:
        n = s.K.shape[0]
        if op.regime == "deterministic":
            beta = _num(op.sigma_qk, "Attention sigma_qk") ** 2 / _num(op.tau, "Attention tau")
            A = softmax_matrix(s.K, beta, self.causal)
        else:
            A = mixing_matrix(n, self.causal)
            if op.regime == "standard":
                b = _num(op.sigma_qk, "Attention sigma_qk") / _num(op.tau, "Attention tau")
                q = np.diag(s.K)
                pbar = (s.K.sum() - q.sum()) / (n * (n - 1))
                self.max_logit_var = max(self.max_logit_var,
                                         float((b**2 * q * np.abs(q - pbar)).max()))
        v = self.linear(s, _num(op.sigma_v, "Attention sigma_v"),
                        _num(op.sigma_b_v, "Attention sigma_b_v"))
        y = GramState(A @ v.K @ A.T, np.zeros(n), A @ v.T @ A.T)
        return self.linear(y, _num(op.sigma_o, "Attention sigma_o"),
                           _num(op.sigma_b_o, "Attention sigma_b_o"))


def _ends_linear(op) -> bool:
    from ..ops.attention import Attention
    from ..ops.base import Sequential
    from ..ops.gated import GatedMLP
    from ..ops.linear import Linear
    from ..ops.scale import Scale

    if isinstance(op, Sequential):
        ops = [o for o in op.ops if not isinstance(o, Scale)]  # g·(zero-mean map): still one
        return bool(ops) and _ends_linear(ops[-1])
    return isinstance(op, Linear | Attention | GatedMLP)


def causal_run(blocks: Sequence, K0, m0=None, T0=None, causal: bool = True) -> CausalRun:
    r"""J^{0,l} through ``blocks`` (critsym operators with numeric hyperparameters: one per
    layer) from input Gram(s) ``K0``: an (n, n) array, or (examples, n, n) — then the run is
    made per example and J is their mean, as :func:`critsym.apjn` averages over examples.
    ``m0``: the input's channel means ((n,) or (examples, n); default 0), ``T0`` the input
    tangent Gram (default I).  ``causal=False`` runs the same recursion without the mask (all
    tokens attend to all n)."""
    K0 = np.asarray(K0, dtype=float)
    if K0.ndim == 2:
        K0 = K0[None]
    if K0.ndim != 3 or K0.shape[1] != K0.shape[2] or K0.shape[1] < 1:
        raise HyperparameterError(
            f"causal_run: K0 must be an (n, n) Gram or a stack (examples, n, n), got shape "
            f"{K0.shape}")
    if not np.allclose(K0, np.swapaxes(K0, 1, 2), rtol=1e-10, atol=1e-14):
        raise HyperparameterError("causal_run: K0 is not symmetric")
    n = K0.shape[1]
    m0 = np.zeros((len(K0), n)) if m0 is None else np.broadcast_to(
        np.asarray(m0, dtype=float), (len(K0), n))
    T0 = np.eye(n) if T0 is None else np.asarray(T0, dtype=float)
    if T0.shape != (n, n):
        raise HyperparameterError(f"causal_run: T0 must be ({n}, {n}), got {T0.shape}")
    run = _Runner(causal)
    Js, finals = [], []
    for K, m in zip(K0, m0, strict=True):
        s = GramState(K, np.array(m), T0)
        J = [s.J]
        for blk in blocks:
            s = run(blk, s)
            J.append(s.J)
        Js.append(J)
        finals.append(s)
    return CausalRun(np.mean(Js, axis=0), tuple(finals), causal, run.max_logit_var)


def input_gram(h0) -> tuple[np.ndarray, np.ndarray]:
    """(K0, m0) per example of a body input ``h0`` of shape (examples, n, d): the token Gram
    x_a·x_b/d and channel means of each example (float64)."""
    import torch

    h = torch.as_tensor(h0).detach().to(torch.float64)
    if h.dim() != 3:
        raise HyperparameterError(
            f"input_gram: the body input must be (examples, tokens, channels), got shape "
            f"{tuple(h.shape)}")
    K = (h @ h.transpose(1, 2)) / h.shape[-1]
    return K.numpy(), h.mean(-1).numpy()


def body_causal_theory(body, causal: bool = True) -> CausalRun:
    """The recursion through the blocks of a body read by :func:`critsym.repro.models.read_body`
    (each layer's operators with its own estimated σ's), from the Gram of each example of the
    body input measured on the model.  The input's channel means are taken as 0: with
    zero-mean embedding weights the measured ones are sampling noise O(1/√d)."""
    K0, _ = input_gram(body.h0)
    return causal_run([b.arch for b in body.blocks], K0, causal=causal)


__all__ = ["CausalRun", "GramState", "activation_moments", "body_causal_theory", "causal_run",
           "input_gram", "mixing_matrix", "softmax_matrix"]
