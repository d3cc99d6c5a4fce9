r"""The input stage of a transformer: token, position and token-type embeddings (and an
optional LayerNorm after their sum) set the token state (q⁰, p⁰, O_T⁰) entering the body.

The stage's output at token a, neuron i is h_{a,i} = Σ_parts e^{part}_{a,i}, then optionally
LayerNorm.  The state is the one :func:`critsym.interop.network.body_input` estimates from a
tensor (per-neuron averages at infinite width, expectations over the random embeddings and
token ids):

    q   = (1/n) Σ_a G_aa,            G_ab = (1/d) Σ_i E[h_{a,i} h_{b,i}],
    p   = (1/(n(n−1))) Σ_{a≠b} G_ab  (= O_C, the cross-token covariance),
    O_T = (1/n) Σ_a m_a² − m̄²,       m_a = (1/d) Σ_i h_{a,i} (the per-token mean), m̄ its mean.

Parts (independent of each other, so their G's and m's add):

* :class:`TokenEmbedding`: rows of E ~ N(0, σ_e²) per entry, ids i.i.d. from ``probs`` over a
  vocabulary of V (uniform 1/V by default).  G_aa = σ_e² P(id ≠ pad), G_ab = σ_e² Σ_v π_v²
  over v ≠ pad (two tokens share an embedding row exactly when their ids agree; the row of
  ``padding_idx`` is zero, as nn.Embedding(padding_idx=) and Hugging Face initialise it).
  Within one sequence the pair (h_a, h_b) is then a mixture (equal rows or independent ones),
  not jointly Gaussian: the token state carries its pair-averaged covariance, exact for q, p
  themselves and for linear maps of them, an approximation of order P(id_a = id_b) beyond.
* :class:`LearnedPositions`: a row of N(0, σ_pos²) per position: G_aa = σ_pos², G_ab = 0.
* :class:`TokenTypes` (BERT's segment embedding): G_aa = σ_t², G_ab = σ_t² Σ_t π_t² (all
  tokens of type 0, the usual single-segment input: G_ab = σ_t²).
* :class:`SinusoidalPositions` (deterministic): PE(a, 2k) = s·sin(a ω_k), PE(a, 2k+1) =
  s·cos(a ω_k), ω_k = base^{−2k/d}; exactly at the model width d,
  G_ab = (s²/d) Σ_k cos((a − b) ω_k) and m_a = (s/d) Σ_k (sin a ω_k + cos a ω_k).  G_ab depends
  on a − b: the tokens are not exchangeable, and p is the pair average (the exchangeable
  projection the token state carries).

Random parts have m_a → 0 at infinite width.  A LayerNorm after the sum (γ = 1, β = 0, ``eps``)
maps G_ab → (G_ab − m_a m_b)/√((v_a + ε)(v_b + ε)), v_a = G_aa − m_a², and the offsets to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import HyperparameterError


def _positive(name: str, value) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise HyperparameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _probabilities(name: str, probs, size: int | None = None) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise HyperparameterError(f"{name} must be a 1-D sequence of probabilities >= 0, "
                                  f"got {probs!r}")
    if size is not None and p.size != size:
        raise HyperparameterError(f"{name} has {p.size} entries; the vocabulary has {size}")
    if abs(p.sum() - 1) > 1e-9:
        raise HyperparameterError(f"{name} must sum to 1, got {p.sum():.12g}")
    return p


@dataclass(frozen=True)
class TokenEmbedding:
    """nn.Embedding(vocab, d) with entries N(0, ``sigma``²) read at i.i.d. token ids of law
    ``probs`` (None: uniform over ``vocab``); ``padding_idx``: a zero row.  ``p_same``
    (P(id_a = id_b ≠ pad) for two positions) and ``p_token`` (P(id ≠ pad)) replace the values
    of the law when given (e.g. measured on real sequences)."""

    vocab: int
    sigma: float
    probs: tuple[float, ...] | None = None
    padding_idx: int | None = None
    p_same: float | None = None
    p_token: float | None = None

    def __post_init__(self):
        if int(self.vocab) != self.vocab or self.vocab < 1:
            raise HyperparameterError(f"vocab must be an integer >= 1, got {self.vocab!r}")
        _positive("sigma", self.sigma)
        if self.probs is not None:
            _probabilities("probs", self.probs, int(self.vocab))
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab:
            raise HyperparameterError(f"padding_idx must lie in [0, {self.vocab}), got "
                                      f"{self.padding_idx!r}")
        for name in ("p_same", "p_token"):
            v = getattr(self, name)
            if v is not None and not 0 <= float(v) <= 1:
                raise HyperparameterError(f"{name} must be a probability in [0, 1], got {v!r}")
        if self.p_same is not None and self.p_token is not None and self.p_same > self.p_token:
            raise HyperparameterError("p_same cannot exceed p_token (two equal non-padding ids "
                                      "are non-padding ids)")

    def law(self) -> np.ndarray:
        if self.probs is None:
            return np.full(int(self.vocab), 1.0 / self.vocab)
        return np.asarray(self.probs, dtype=float)

    def gram(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pi = self.law().copy()
        if self.padding_idx is not None:
            pi[self.padding_idx] = 0.0
        s2 = float(self.sigma) ** 2
        tok = pi.sum() if self.p_token is None else float(self.p_token)
        same = float(pi @ pi) if self.p_same is None else float(self.p_same)
        return _exchangeable(n, s2 * tok, s2 * same), np.zeros(n)


@dataclass(frozen=True)
class LearnedPositions:
    """A learned position embedding (GPT-2 ``wpe``, BERT ``position_embeddings``) with entries
    N(0, ``sigma``²): one row per position."""

    sigma: float

    def __post_init__(self):
        _positive("sigma", self.sigma)

    def gram(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return _exchangeable(n, float(self.sigma) ** 2, 0.0), np.zeros(n)


@dataclass(frozen=True)
class TokenTypes:
    """Token-type (segment) embeddings with entries N(0, ``sigma``²), types i.i.d. of law
    ``probs`` (default: every token of type 0)."""

    sigma: float
    probs: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        _positive("sigma", self.sigma)
        _probabilities("probs", self.probs)

    def gram(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pi = np.asarray(self.probs, dtype=float)
        s2 = float(self.sigma) ** 2
        return _exchangeable(n, s2, s2 * float(pi @ pi)), np.zeros(n)


@dataclass(frozen=True)
class SinusoidalPositions:
    """The fixed sinusoidal positions of "Attention is all you need" at model width ``width``
    (even): PE(a, 2k) = scale·sin(a ω_k), PE(a, 2k+1) = scale·cos(a ω_k), ω_k =
    base^{−2k/width}, positions ``start``, ``start`` + 1, …"""

    width: int
    base: float = 10000.0
    scale: float = 1.0
    start: int = 0

    def __post_init__(self):
        if int(self.width) != self.width or self.width < 2 or self.width % 2:
            raise HyperparameterError(f"width must be an even integer >= 2, got {self.width!r}")
        if not float(self.base) > 1:
            raise HyperparameterError(f"base must be > 1, got {self.base!r}")
        _positive("scale", self.scale)

    def table(self, n: int) -> np.ndarray:
        """The (n, width) table of the positions."""
        d = int(self.width)
        w = float(self.base) ** (-np.arange(0, d, 2) / d)
        ang = (self.start + np.arange(n))[:, None] * w[None, :]
        pe = np.empty((n, d))
        pe[:, 0::2], pe[:, 1::2] = np.sin(ang), np.cos(ang)
        return float(self.scale) * pe

    def gram(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pe = self.table(n)
        return pe @ pe.T / pe.shape[1], pe.mean(axis=1)


def _exchangeable(n: int, diag: float, off: float) -> np.ndarray:
    return np.full((n, n), off) + np.eye(n) * (diag - off)


@dataclass(frozen=True)
class TokenState:
    """The token state an input stage gives: ``q`` (per-token variance, K), ``p`` (cross-token
    covariance, O_C) and ``O_T`` (the variance of the per-token mean over neurons)."""

    q: float
    p: float
    O_T: float

    def __repr__(self) -> str:
        return f"TokenState(q={self.q:.6g}, p={self.p:.6g}, O_T={self.O_T:.3g})"


@dataclass(frozen=True)
class InputStage:
    """Embeddings summed at ``n_tokens`` positions, optionally followed by LayerNorm
    (``layer_norm``, with ``eps``): the state entering a transformer body (module doc).

    ``stage.state`` is the :class:`TokenState`; ``th.run(depth, **stage.initial(), **hyper)``
    starts a token theory from it."""

    n_tokens: int
    parts: tuple = field(default_factory=tuple)
    layer_norm: bool = False
    eps: float = 0.0

    def __post_init__(self):
        if int(self.n_tokens) != self.n_tokens or self.n_tokens < 2:
            raise HyperparameterError(f"n_tokens must be an integer >= 2, got {self.n_tokens!r}")
        if not self.parts:
            raise HyperparameterError("an input stage needs at least one embedding part "
                                      "(TokenEmbedding, LearnedPositions, …)")
        for p in self.parts:
            if not hasattr(p, "gram"):
                raise HyperparameterError(f"not an embedding part: {p!r} (use TokenEmbedding, "
                                          "LearnedPositions, SinusoidalPositions, TokenTypes)")
        _positive("eps", self.eps)

    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        """(G, m): the per-neuron token Gram matrix and the per-token means (module doc)."""
        n = int(self.n_tokens)
        G, m = np.zeros((n, n)), np.zeros(n)
        for part in self.parts:
            g, mm = part.gram(n)
            G, m = G + g, m + mm
        if self.layer_norm:
            v = np.diag(G) - m * m
            if np.any(v + self.eps <= 0):
                raise HyperparameterError("LayerNorm of a token with zero variance: give the "
                                          "embeddings a nonzero sigma, or eps > 0")
            s = np.sqrt(v + self.eps)
            G = (G - np.outer(m, m)) / np.outer(s, s)
            m = np.zeros(n)
        return G, m

    @property
    def state(self) -> TokenState:
        G, m = self.gram()
        n = G.shape[0]
        q = float(np.trace(G)) / n
        p = float((G.sum() - np.trace(G)) / (n * (n - 1)))
        O_T = float(np.mean(m * m) - np.mean(m) ** 2)
        return TokenState(q, p, max(O_T, 0.0))

    def initial(self) -> dict[str, float]:
        """``{"K0": q, "O_T0": O_T, "O_C0": p}`` for :meth:`critsym.theory.Theory.run` and
        :func:`critsym.fixed_point`."""
        st = self.state
        return {"K0": st.q, "O_T0": st.O_T, "O_C0": st.p}


__all__ = ["InputStage", "LearnedPositions", "SinusoidalPositions", "TokenEmbedding",
           "TokenState", "TokenTypes"]
