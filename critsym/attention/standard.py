r"""Standard attention at initialization: 1/√d_k logits, independent W_Q and W_K.

**Setting.**  n tokens x_a ∈ R^d with token Gram C_ab = x_a·x_b/d → q̃ (a = b), p̃ (a ≠ b); per
head, Q = W_Q x, K = W_K x ∈ R^{d_k}, entries of W_Q, W_K i.i.d. N(0, σ_Q²/d), N(0, σ_K²/d),
logits s_ab = Q_a·K_b/(τ√d_k), A = row-softmax(s), y_a = W_O concat_h Σ_c A^h_ac W_V^h x_c.

**Law of the logits** (d → ∞, heads H fixed, d_k = d/H → ∞; β = σ_QK/τ, σ_QK = σ_Q σ_K).
Given x, Q_a^i and K_b^i are Gaussian, independent of each other, i.i.d. over i, with
E Q_a^i Q_c^i = σ_Q² C_ac and E K_b^i K_d^i = σ_K² C_bd; by the CLT over the d_k coordinates
s is jointly Gaussian, mean 0, Cov(s_ab, s_cd) = β² C_ac C_bd.  With C = (q̃ − p̃)I + p̃ 11ᵀ
this is s_ab = β[(q̃−p̃) G_ab + √((q̃−p̃)p̃)(α_a + γ_b) + p̃ ζ] with G, α, γ, ζ i.i.d. N(0, 1)
(p̃ ≥ 0; for p̃ < 0 the same law of within-row differences holds).  Row constants (α_a, ζ)
cancel in the softmax, so

* one row: A_a· = softmax(z), z_c i.i.d. N(0, v), v = β² q̃(q̃ − p̃) (the self-logit has no
  advantage: independent W_Q, W_K give exchangeable logits within a row);
* two rows a ≠ b: the pairs (z_ac, z_bc) are i.i.d. over c, variance v, correlation ρ = p̃/q̃
  (the shared key term γ_c).

The heads are independent copies; every quantity below is an expectation, linear in the heads'
contributions, so it does not depend on H (the spread of the state between networks falls as
1/H, see "What is approximated").

**Forward.**  W_V is independent of A, so (values v_c = W_V x_c with variance q, cross-token
covariance p at one channel) Var y_a = p + (q − p) D and Cov(y_a, y_b) = p + (q − p) X with
D = E Σ_c A_ac², X = E Σ_c A_ac A_bc (:func:`~critsym.attention.softmax_moments.softmax_D`,
``softmax_X``: exact 1-D and 2-D integrals).

**Tangent** (j = per-token tangent norm, κ = per-pair tangent overlap of the values, the vector
the value path mixes).  ∂y_a = Σ_c A_ac ∂v_c + Σ_c ∂A_ac v_c, ∂A_a· = Λ_a ∂s_a·,
Λ_a = diag(A_a) − A_a A_aᵀ.  The value path gives (D j + (1 − D) κ, X j + (1 − X) κ).  The
query/key path: over the tangent directions, E ∂s_ae ∂s_bf = β²(T^x_ab C_ef + C_ab T^x_ef)
(terms of W_Q W_Kᵀ and the projections of W_Q, W_K on the span of the tokens are O(1/d)), the
cross term of the two paths is O(1/d), and Λ 1 = 0 removes every all-ones part of C and T, so

    j'_QK = β² u W_D [(q̃ + u) j − q̃ κ],   κ'_QK = β² u W_X [p̃ j + (u − p̃) κ],   u = q̃ − p̃,

with W_D = E tr Λ_a², W_X = E tr Λ_a Λ_b (a ≠ b).  The tangent map of the mixing on (j, κ) is
``value + qk``; W_O multiplies it by σ_O² (and W_V has already multiplied j, κ by σ_V²).

**What is exact and what is approximated.**  D, X, W_D, W_X are exact expectations over the
Gaussian logits (quadrature error < 1e-11).  The infinite-width law of the logits and the
dropped O(1/d) terms are exact as d → ∞ for one layer, so one attention layer (and one pre-LN
block) is exact in expectation.  Across blocks the attention matrix is random at infinite width
(H fixed): the token Gram of a given network is random, and the theory propagates its
expectation (the next LayerNorm sees the expected Gram, not each network's).  This is the
approximation; its size is measured by Monte Carlo in docs/attention_regimes.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..activations import MPMATH_FUNCTIONS, NUMPY_FUNCTIONS
from ..errors import DerivationError
from .softmax_moments import softmax_cross, softmax_D, softmax_WD, softmax_WX, softmax_X

_NUMERIC = {"D": softmax_D, "X": softmax_X, "WD": softmax_WD, "WX": softmax_WX,
            "C": softmax_cross}
#: integer codes of the moments inside :class:`SoftmaxMomentDerivative`
_KINDS = ("D", "X", "WD", "WX", "C")


def _derivative(kind: str, argindex: int, *args):
    """∂(moment)/∂(argument ``argindex``, 1-based) by the 4th-order central difference
    (one-sided at the ends v = 0, |ρ| = 1), step 1e-3 (error ~1e-10 relative)."""
    fn = _NUMERIC[kind]
    args = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in args])
    i = argindex - 1
    x = args[i]
    h = 1e-3 * np.maximum(1.0, np.abs(x))
    if kind == "C":
        lo, hi = (0.0, np.inf) if i in (1, 2) else (-np.inf, np.inf)
    else:
        lo, hi = (0.0, np.inf) if i == 1 else (-1.0, 1.0)
    out = np.empty(x.shape)
    for idx in np.ndindex(x.shape):
        a = [float(arr[idx]) for arr in args]
        xi, hi_ = a[i], float(h[idx])

        def f(t, a=a):
            b = list(a)
            b[i] = t
            return float(fn(*b))

        if xi - 2 * hi_ >= lo and xi + 2 * hi_ <= hi:
            d = (f(xi - 2 * hi_) - 8 * f(xi - hi_) + 8 * f(xi + hi_) - f(xi + 2 * hi_)) / (
                12 * hi_)
        elif xi - 2 * hi_ < lo:  # forward
            d = (-3 * f(xi) + 4 * f(xi + hi_) - f(xi + 2 * hi_)) / (2 * hi_)
        else:  # backward
            d = (3 * f(xi) - 4 * f(xi - hi_) + f(xi - 2 * hi_)) / (2 * hi_)
        out[idx] = d
    return out if out.ndim else float(out)


_PATHS = {"D": "softmax_D", "X": "softmax_X", "WD": "softmax_WD", "WX": "softmax_WX",
          "C": "softmax_cross"}


def _call_code(self, printer, **kwargs) -> str:
    """Code printers (numpy, scipy, python, mpmath): a call of the numeric implementation by its
    dotted path, which ``sympy.lambdify`` imports (so plain ``lambdify`` works too)."""
    name = ("critsym.attention.standard._numeric_derivative"
            if isinstance(self, SoftmaxMomentDerivative)
            else "critsym.attention.softmax_moments." + _PATHS[self.kind])
    args = ", ".join(printer._print(a) for a in self.args)
    return f"{printer._module_format(name)}({args})"


class _SoftmaxMoment(sp.Function):
    """A softmax moment of Gaussian logits; numeric code from
    :mod:`critsym.attention.softmax_moments` (lambdify resolves the class name through
    ``NUMPY_FUNCTIONS``)."""

    kind = ""
    latex_name = ""
    _numpycode = _scipycode = _pythoncode = _mpmathcode = _call_code

    @classmethod
    def eval(cls, n, v, *rest):
        n = sp.sympify(n)
        if n == 1:
            return sp.S.Zero if cls.kind in ("WD", "WX") else sp.S.One
        if cls.kind == "C":
            if sp.sympify(v).is_zero or sp.sympify(rest[0]).is_zero or sp.sympify(
                    rest[1]).is_zero:  # a uniform row or independent rows
                return 1 / n
            return None
        if sp.sympify(v).is_zero:  # uniform attention
            return 1 / n if cls.kind in ("D", "X") else (n - 1) / n**2
        return None

    def _eval_evalf(self, prec):
        if all(a.is_number for a in self.args):
            val = _NUMERIC[self.kind](*[float(a) for a in self.args])
            return sp.Float(float(val), prec)
        return None

    def fdiff(self, argindex=1):
        if argindex == 1:
            raise DerivationError(f"{type(self).__name__} is not differentiable in the number "
                                  "of tokens n (an integer)")
        return SoftmaxMomentDerivative(sp.Integer(_KINDS.index(self.kind)), sp.Integer(argindex),
                                       *self.args)

    def _latex(self, printer, exp=None):
        s = r"%s\left(%s\right)" % (self.latex_name,
                                    ", ".join(printer._print(a) for a in self.args))
        return s if exp is None else r"%s^{%s}" % (s, exp)


class SoftmaxD(_SoftmaxMoment):
    r"""D(n, v) = E Σ_c A_c², A = softmax(z), z_c i.i.d. N(0, v)."""

    nargs = 2
    kind = "D"
    latex_name = r"\mathcal{D}_{\mathrm{sm}}"


class SoftmaxX(_SoftmaxMoment):
    r"""X(n, v, ρ) = E Σ_c A_c B_c for two rows with (z_c, y_c) i.i.d., variance v,
    correlation ρ."""

    nargs = 3
    kind = "X"
    latex_name = r"\mathcal{X}_{\mathrm{sm}}"


class SoftmaxWD(_SoftmaxMoment):
    r"""W_D(n, v) = E tr Λ², Λ = diag(A) − AAᵀ, z_c i.i.d. N(0, v)."""

    nargs = 2
    kind = "WD"
    latex_name = r"\mathcal{W}^{D}_{\mathrm{sm}}"


class SoftmaxWX(_SoftmaxMoment):
    r"""W_X(n, v, ρ) = E tr Λ_A Λ_B for two rows with correlated logit pairs."""

    nargs = 3
    kind = "WX"
    latex_name = r"\mathcal{W}^{X}_{\mathrm{sm}}"


class SoftmaxCross(_SoftmaxMoment):
    r"""C(n, v₁, v₂, c) = E Σ_e A_e B_e for rows of two inputs: logit pairs (x_e, y_e) i.i.d.
    with variances v₁, v₂ and covariance c."""

    nargs = 4
    kind = "C"
    latex_name = r"\mathcal{C}_{\mathrm{sm}}"


class SoftmaxMomentDerivative(sp.Function):
    """∂ moment/∂ argument: (kind code, 1-based argument index, *moment arguments), the code
    indexing ("D", "X", "WD", "WX");
    evaluated by a 4th-order finite difference of the quadrature (relative error ~1e-10)."""

    _numpycode = _scipycode = _pythoncode = _mpmathcode = _call_code

    def fdiff(self, argindex=1):
        raise DerivationError("second derivatives of the softmax moments of standard "
                              "attention are not available; use a numeric derivative")

    def _eval_evalf(self, prec):
        if all(a.is_number for a in self.args[1:]):
            kind, idx, *rest = self.args
            return sp.Float(float(_numeric_derivative(kind, idx, *map(float, rest))), prec)
        return None


def _numeric_derivative(code, argindex, *args):
    return _derivative(_KINDS[int(np.ravel(code)[0])], int(np.ravel(argindex)[0]), *args)


# critsym's own compiler lambdifies with the namespaces of critsym.activations: make the dotted
# paths above resolvable there too
NUMPY_FUNCTIONS.setdefault("critsym", importlib.import_module("critsym"))
MPMATH_FUNCTIONS.setdefault("critsym", importlib.import_module("critsym"))


@dataclass(frozen=True)
class StandardMoments:
    r"""The standard-regime quantities the attention fold needs, as sympy expressions.

    ``D``, ``X``: the mixing moments (Var y = p + (q − p) D, Cov = p + (q − p) X);
    ``WD``, ``WX``: the softmax-Jacobian moments; ``value``, ``qk``: 2×2 matrices acting on the
    values' (j, κ) (κ the per-pair overlap); ``tangent = value + qk``.  ``v``, ``rho``: the
    logit variance β² q̃(q̃ − p̃) and the token correlation p̃/q̃.
    """

    n: int
    v: sp.Expr
    rho: sp.Expr
    D: sp.Expr
    X: sp.Expr
    WD: sp.Expr
    WX: sp.Expr
    value: sp.Matrix
    qk: sp.Matrix

    @property
    def tangent(self) -> sp.Matrix:
        """value + qk on (j, κ)."""
        return self.value + self.qk

    def tangent_jk(self) -> sp.Matrix:
        """The tangent map on (j, k) with k = κ (n − 1)/n: S M S⁻¹, S = diag(1, (n−1)/n)."""
        s = sp.Rational(self.n - 1, self.n)
        S = sp.diag(1, s)
        return S * self.tangent * S.inv()

    def __repr__(self) -> str:
        return f"StandardMoments(n={self.n}, v={self.v}, rho={self.rho})"


def standard_moments(n: int, q: sp.Expr, p: sp.Expr, sigma_qk: sp.Expr,
                     heads: int = 1) -> StandardMoments:
    r"""D, X and the query/key tangent terms of standard attention over ``n`` tokens whose
    attention input has token Gram q̃ = ``q`` (per token) and p̃ = ``p`` (two different tokens),
    with logit scale ``sigma_qk`` (= σ_Q σ_K/τ).  ``heads`` is accepted for the interface and
    does not change the expectations (see the module docstring).

    v = σ_QK² q̃(q̃ − p̃), ρ = p̃/q̃, u = q̃ − p̃;
    value = [[D, 1 − D], [X, 1 − X]],
    qk = σ_QK² u [[W_D (q̃ + u), −W_D q̃], [W_X p̃, W_X (u − p̃)]].
    """
    if isinstance(n, bool) or int(n) != n or int(n) < 2:
        raise DerivationError(f"standard attention needs n >= 2 tokens, got {n!r}")
    if isinstance(heads, bool) or int(heads) != heads or int(heads) < 1:
        raise DerivationError(f"heads must be an integer >= 1, got {heads!r}")
    n = int(n)
    q, p, b = sp.sympify(q), sp.sympify(p), sp.sympify(sigma_qk)
    u = q - p
    v = b**2 * q * u
    rho = p / q
    N = sp.Integer(n)
    D, X = SoftmaxD(N, v), SoftmaxX(N, v, rho)
    WD, WX = SoftmaxWD(N, v), SoftmaxWX(N, v, rho)
    value = sp.Matrix([[D, 1 - D], [X, 1 - X]])
    qk = b**2 * u * sp.Matrix([[WD * (q + u), -WD * q], [WX * p, WX * (u - p)]])
    return StandardMoments(n=n, v=v, rho=rho, D=D, X=X, WD=WD, WX=WX, value=value, qk=qk)


def standard_cross_moments(n: int, q1: sp.Expr, p1: sp.Expr, q2: sp.Expr, p2: sp.Expr,
                           c_same: sp.Expr, c_other: sp.Expr,
                           sigma_qk: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    r"""(D₁₂, X₁₂) = (E Σ_e A¹_ae A²_ae, E Σ_e A¹_ae A²_be) for two inputs sharing W_Q, W_K:
    token Grams (q₁, p₁), (q₂, p₂) and cross Gram ``c_same`` (one token, both inputs),
    ``c_other`` (two different tokens).  Cov(s¹_ab, s²_cd) = β² C¹²_ac C¹²_bd gives, after the
    row constants cancel, i.i.d. logit pairs with variances β² q_i(q_i − p_i) and covariance
    β² c_same (c_same − c_other) (same row) or β² c_other (c_same − c_other) (rows a ≠ b)."""
    if isinstance(n, bool) or int(n) != n or int(n) < 2:
        raise DerivationError(f"standard attention needs n >= 2 tokens, got {n!r}")
    N = sp.Integer(int(n))
    b2 = sp.sympify(sigma_qk) ** 2
    q1, p1, q2, p2, cs, co = map(sp.sympify, (q1, p1, q2, p2, c_same, c_other))
    v1, v2 = b2 * q1 * (q1 - p1), b2 * q2 * (q2 - p2)
    return (SoftmaxCross(N, v1, v2, b2 * cs * (cs - co)),
            SoftmaxCross(N, v1, v2, b2 * co * (cs - co)))


__all__ = ["SoftmaxCross", "SoftmaxD", "SoftmaxMomentDerivative", "SoftmaxWD", "SoftmaxWX",
           "SoftmaxX", "StandardMoments", "standard_cross_moments", "standard_moments"]
