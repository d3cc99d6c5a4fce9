r"""The token Gram recursion as *the* theory of a token body whose tokens are not exchangeable.

Two kinds of imported token bodies break the exchangeable token state (q, p) of
:mod:`critsym.fold`:

* a **causal decoder** (GPT-2, Llama): the import labels its attention "causal mask"
  (:data:`critsym.interop.hf.CAUSAL_MASK`); the recursion runs with the mask (``causal=True``);
* **tokens not alike** at the body input (a class token near zero, position embeddings): the
  import labels the body input :data:`UNLIKE_TOKENS`; the recursion runs without a mask
  (``causal=False``) from each example's measured input Gram, which holds the class token's
  own scale (LayerNorm of a token of variance s_a² gives T'_aa = T_aa/s_a²).

For both, :func:`gram_J` gives J^{start,b} across the body (the forward Gram carried from the
body input to ``start``, the tangent restarted there, T = I), and :func:`gram_phase` the phase
of the repeated block.

**χ_J* of the Gram recursion.**  One block maps (K, m, T) → (F(K, m), G(K, m), L_K(T)), with
L_K *linear* in T for fixed K (every rule of :mod:`~critsym.attention.causal` is: scalings,
congruences A T Aᵀ, Hadamard products with E φ'(u_a)φ'(u_b) and sums).  At a fixed point
K* = F(K*) the per-block ratio of J^{0,l} = (1/n) tr T^l tends to

    χ_J* = ρ(L_{K*}),

the spectral radius of L_{K*} on symmetric n × n matrices.  L_{K*} maps the cone of positive
semi-definite matrices into itself (Schur product theorem; congruence; non-negative sums), so
ρ is an eigenvalue with a PSD eigenvector (Krein–Rutman) and power iteration from T = I finds
it: T ← L_{K*}(T)/tr T, χ = tr L_{K*}(T)/tr T.  For exchangeable tokens it is the Perron root
of the 2 × 2 (j, k) map of :meth:`critsym.theory.Theory.tangent_map`.

Where the forward state grows without bound (a pre-LN residual block with μ = 1: K^{l+1} =
K^l + K_f with K_f of order σ² after the branch's normalisation, so K^l ≈ c·l) there is no
fixed point; then L_{K^l} = I + B/K^l + O(1/K^{l2}) (the branch's tangent enters through the
normalisation, divided by s_a s_b ∝ K^l), so with K^l ≈ c(l + l₀)
χ_l = J^{l+1}/J^l = 1 + p/l + O(1/l²) → 1: χ_J* = 1 at every initialization (everywhere
critical) and J^{0,l} ∝ l^p.  :func:`gram_phase` runs the recursion, fits
χ_l = χ_∞ + p/l + c₂/l² + c₃/l³ on the second half of the run and reports χ_∞ and p: a
numerical check of the limit, whose accuracy is set by the run length against the offset l₀
(K⁰ over the growth per block): |χ_∞ − 1| ≤ 3·10⁻⁴ over 200 blocks for the Hugging Face
models of the table, at their σ_w and σ_w·10^{±1} (3.2·10⁻⁴ at most).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArchitectureError, CritsymError, HyperparameterError

#: the label the importer gives a token body input whose tokens differ in scale
UNLIKE_TOKENS = "tokens not alike"
#: relative change of K per block below which the forward recursion is at its fixed point
FIXED_TOL = 1e-10
#: |χ_∞ − 1| below which an unbounded state counts as everywhere critical
UNBOUNDED_CHI_TOL = 1e-3


def gram_kind(approximations: dict) -> tuple[bool, str] | None:
    """(causal, why) when the import's ``approximations`` say the body's tokens are not
    exchangeable (a causal mask: causal True; tokens not alike at the body input: causal
    False), else None."""
    from ..interop.hf import CAUSAL_MASK

    texts = list(approximations.values())
    if any(CAUSAL_MASK in t for t in texts):
        return True, "causal mask"
    if any(UNLIKE_TOKENS in t for t in texts):
        return False, "tokens not alike at the body input"
    return None


def theory_label(causal: bool, why: str) -> str:
    """The words naming the Gram theory of a body."""
    mask = "the causal mask kept" if causal else "no mask, each token its own scale"
    return f"token Gram recursion ({why}: {mask})"


def gram_J(blocks: Sequence, gram, causal: bool, start: int = 0):
    """J^{start, b}, b = start..len(blocks), of the token Gram recursion
    (:func:`~critsym.attention.causal.causal_run`) from each example's input Gram ``gram``
    ((examples, n, n)): the forward Gram and channel means carried through ``blocks[:start]``,
    the tangent restarted at ``start`` (T = I, what :func:`critsym.apjn` probes).  Returns the
    :class:`~critsym.attention.causal.CausalRun` of the blocks from ``start`` and the forward
    run through all blocks from the input (its ``states`` hold each boundary's Grams)."""
    from .causal import causal_run

    K = np.asarray(gram, float)
    m = None
    if start:
        before = causal_run(list(blocks[:start]), K, causal=causal)
        K = np.stack([st.K for st in before.states])
        m = np.stack([st.m for st in before.states])
    return causal_run(list(blocks[start:]), K, m, causal=causal)


def boundary_states(blocks: Sequence, gram, causal: bool) -> tuple[list, float]:
    """Each example's :class:`~critsym.attention.causal.GramState` at every block boundary
    (index b: the input of block b; the tangent from T = I at the body input), as a list of
    lists [boundary][example], and the largest logit variance of standard attention taken as
    uniform."""
    from .causal import GramState, _Runner

    run = _Runner(causal)
    states = [GramState(np.asarray(K, float), np.zeros(len(K)), np.eye(len(K)))
              for K in np.asarray(gram, float)]
    out = [states]
    for blk in blocks:
        states = [run(blk, s) for s in states]
        out.append(states)
    return out, run.max_logit_var


@dataclass(frozen=True)
class GramPhase:
    """The phase of one repeated block under the token Gram recursion (module doc).

    ``status``: "fixed point" (K converged: ``chi_star`` = ρ(L_{K*}) by power iteration) or
    "unbounded" (K grows without bound: ``chi_star`` the fitted limit χ_∞ of the per-block
    ratio, ``exponent`` p of J ∝ l^p); ``chi`` the per-block ratios J^{l+1}/J^l along the run;
    ``K`` the mean diagonal of the Gram at each boundary; ``causal``; ``max_logit_var`` of
    standard attention taken as uniform."""

    status: str
    chi_star: float
    causal: bool
    chi: np.ndarray = field(repr=False)
    K: np.ndarray = field(repr=False)
    exponent: float | None = None
    max_logit_var: float = 0.0

    @property
    def phase(self) -> str:
        """"critical" where |χ_J* − 1| ≤ 1e-6 (an unbounded state: within
        :data:`UNBOUNDED_CHI_TOL` of the fit), else "ordered" / "chaotic"."""
        tol = UNBOUNDED_CHI_TOL if self.status == "unbounded" else 1e-6
        if abs(self.chi_star - 1) <= tol:
            return "critical"
        return "ordered" if self.chi_star < 1 else "chaotic"

    @property
    def xi_J(self) -> float:
        """Depth scale −1/log χ_J* (inf at criticality)."""
        if self.phase == "critical" or not self.chi_star > 0:
            return float("inf")
        return float(-1 / math.log(self.chi_star))

    def __repr__(self) -> str:
        p = f", p={self.exponent:.4g}" if self.exponent is not None else ""
        kind = "causal" if self.causal else "full"
        return (f"GramPhase({kind}, {self.status}: chi_J*={self.chi_star:.6g}{p}, "
                f"{self.phase}, {len(self.chi)} blocks run)")


def gram_phase(block, K0, causal: bool = True, *, max_blocks: int = 200,
               power_steps: int = 2000) -> GramPhase:
    """The phase of ``block`` (a critsym operator with numeric hyperparameters) repeated,
    under the token Gram recursion from the input Gram ``K0`` ((n, n), or (examples, n, n):
    their mean is the start), as the module doc derives: the forward Gram iterated to its
    fixed point (relative change < :data:`FIXED_TOL`) and χ_J* = ρ(L_{K*}) by power
    iteration; or, where K has not converged after ``max_blocks`` blocks and grows, the limit
    of χ_l fitted on the second half of the run.  Raises :class:`~critsym.errors.CritsymError`
    where neither holds (a state that neither converges nor grows)."""
    from .causal import GramState, _Runner

    K0 = np.asarray(K0, float)
    if K0.ndim == 3:
        K0 = K0.mean(0)
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1]:
        raise HyperparameterError(f"gram_phase: K0 must be an (n, n) Gram, got {K0.shape}")
    n = len(K0)
    run = _Runner(causal)
    s = GramState(K0, np.zeros(n), np.eye(n))
    chis, Ks = [], [float(np.trace(K0)) / n]
    fixed = False
    for _ in range(max_blocks):
        t = s.J
        nxt = run(block, s)
        chis.append(nxt.J / t)
        Ks.append(float(np.trace(nxt.K)) / n)
        change = np.abs(nxt.K - s.K).max() / max(np.abs(nxt.K).max(), 1e-300)
        s = GramState(nxt.K, nxt.m, nxt.T / np.trace(nxt.T) * n)  # renormalised tangent
        if change < FIXED_TOL:
            fixed = True
            break
    chis_a, Ks_a = np.array(chis), np.array(Ks)
    if fixed:
        chi, prev = chis[-1], float("nan")
        for _ in range(power_steps):
            nxt = run(block, s)
            chi = nxt.J / s.J
            s = GramState(s.K, s.m, nxt.T / np.trace(nxt.T) * n)
            if abs(chi - prev) <= 1e-13 * abs(chi):
                break
            prev = chi
        return GramPhase("fixed point", float(chi), causal, chis_a, Ks_a,
                         max_logit_var=run.max_logit_var)
    half = len(chis_a) // 2
    grows = Ks_a[-1] > Ks_a[half] * (1 + 1e-3) and np.all(np.diff(Ks_a[half:]) > 0)
    if not grows:
        raise CritsymError(
            f"gram_phase: the token Gram neither converged nor grew over {max_blocks} blocks "
            f"(mean K_aa {Ks_a[half]:.4g} → {Ks_a[-1]:.4g}); pass max_blocks= larger")
    # χ_l = χ_∞ + p/l + c₂/l² + c₃/l³ (the powers of 1/l absorb the offset l₀ of K^l ≈ c(l + l₀))
    ll = np.arange(1, len(chis_a) + 1, dtype=float)[half:]
    X = np.stack([np.ones_like(ll), 1 / ll, 1 / ll**2, 1 / ll**3], 1)
    coef, *_ = np.linalg.lstsq(X, chis_a[half:], rcond=None)
    return GramPhase("unbounded", float(coef[0]), causal, chis_a, Ks_a, float(coef[1]),
                     run.max_logit_var)


@dataclass(frozen=True)
class PartGram:
    """The token Gram theory of an analysed part (:class:`critsym.body.AnalysedPart`):
    ``causal``, ``why`` (:func:`gram_kind`), ``K`` and ``m`` each example's Gram and channel
    means at the part's input (the body input's measured Gram carried through the blocks
    before the part), ``J`` J^{0,l} across the part (the tangent from the part's input)."""

    causal: bool
    why: str
    K: np.ndarray = field(repr=False)
    m: np.ndarray = field(repr=False)
    J: np.ndarray

    @property
    def label(self) -> str:
        return theory_label(self.causal, self.why)


def part_gram(part) -> PartGram | None:
    """:class:`PartGram` of ``part`` when its body's tokens are not exchangeable and the body
    input's Gram was measured (``ImportResult.gram_theory``), else None.  Raises the
    recursion's :data:`GRAM_ERRORS` where it cannot run the part."""
    from .causal import causal_run

    res = part.result
    kind = res.gram_theory
    paths = [b.path for b in res.blocks]
    first = part.blocks[0].path if part.blocks else None
    if kind is None or first not in paths:
        return None
    causal, why = kind
    i0 = paths.index(first)
    archs = [b.arch for b in res.blocks]
    K = np.asarray(res.input_gram, float)
    m = np.zeros(K.shape[:2])
    if i0 > 0:
        before = causal_run(archs[:i0], K, causal=causal)
        K = np.stack([st.K for st in before.states])
        m = np.stack([st.m for st in before.states])
    J = causal_run(archs[i0:i0 + part.n_blocks], K, m, causal=causal).J
    return PartGram(causal, why, K, m, np.asarray(J, float))


def confirm_everywhere_critical(part, solve_for: str, current, hp: dict,
                                max_blocks: int = 200) -> str:
    """For a part whose theory is the token Gram recursion (:func:`part_gram`; '' for any
    other part): the sentence checking, with the Gram recursion, the refusal "everywhere
    critical" of the exchangeable theory at ``current`` and ``current``·10^{±1} along
    ``solve_for`` (the other hyperparameters at ``hp``): whether there too the state grows
    without bound with χ_J* = 1 (:func:`gram_phase`), and the exponents p it fits."""
    if current is None or not np.isfinite(current) or current <= 0:
        return ""
    try:
        pg = part_gram(part)
    except GRAM_ERRORS as e:
        return f"(the token Gram recursion could not check this: {str(e).splitlines()[0]})"
    if pg is None:
        return ""
    found = []
    for x in (current / 10, current, current * 10):
        blk = part.block.subs({**hp, solve_for: x})
        try:
            found.append((x, gram_phase(blk, pg.K, pg.causal, max_blocks=max_blocks)))
        except CritsymError as e:
            found.append((x, str(e).splitlines()[0]))
    ok = all(isinstance(g, GramPhase) and g.status == "unbounded" and g.phase == "critical"
             for _, g in found)
    at = ", ".join(f"{solve_for} = {x:.4g}: " + (
        f"{g.status}, chi_J* = {g.chi_star:.6g}" + (f", p = {g.exponent:.3g}"
                                                    if g.exponent is not None else "")
        if isinstance(g, GramPhase) else g) for x, g in found)
    if ok:
        return (f"The {pg.label} agrees: the state grows without bound and the per-block "
                f"ratio J^(l+1)/J^l = 1 + p/l tends to 1 ({at}).")
    return f"The {pg.label} does not confirm this everywhere ({at})."


def exchangeable_fallback(err: Exception) -> str:
    """The label of a body run by the exchangeable theory because the Gram recursion could
    not run it."""
    return ("exchangeable token theory: the token Gram recursion cannot run this body ("
            f"{str(err).splitlines()[0]}), so tokens are taken as alike")


#: errors of the Gram recursion that send a body back to the exchangeable theory (labelled)
GRAM_ERRORS = (ArchitectureError, HyperparameterError)

__all__ = ["GRAM_ERRORS", "UNLIKE_TOKENS", "GramPhase", "PartGram", "boundary_states",
           "confirm_everywhere_critical", "exchangeable_fallback", "gram_J", "gram_kind",
           "gram_phase", "part_gram", "theory_label"]
