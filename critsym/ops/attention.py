r"""Self-attention across the tokens of a (tokens, channels) state: everything critsym knows
about :class:`Attention`.

y = W_O · mix_A(W_V x): values and outputs are Linear layers along the channels
(W ~ N(0, σ²/d), biases N(0, σ_b²), default 0), A the n × n attention matrix of the regime,
acting across the tokens.  LayerNorm and the residual are not inside it
(:func:`critsym.transformer_block` adds them).

Regimes (the attention input x has token Gram C_ab = x_a·x_b/d → q̃ on the diagonal, p̃ off it):

* ``"uniform"``: A = 11ᵀ/n (W_Q = 0, σ_QK → 0); exact at every n.
* ``"deterministic"``: per head h a single query-key matrix W^h ∈ R^{d_k×d} (tied queries and
  keys, entries N(0, σ_QK²/d), d_k = d/heads) and logits scaled by 1/d_k:
  s_ab = (W^h x_a)·(W^h x_b)/(τ d_k) → (σ_QK²/τ) C_ab at infinite width, so
  A = softmax(β C), β = σ_QK²/τ, deterministic and the same for every head:
  A_aa = 1/(1 + (n − 1)e^{−β(q̃ − p̃)}), A_ab = (1 − A_aa)/(n − 1).
  Its kernel is neural-tangents' ``GlobalSelfAttention(linear_scaling=True)``.  The softmax
  path (∂A/∂x) contributes O(1/d) to the APJN and is left out (exact at infinite width).
* ``"standard"``: logits (W_Q x_a)·(W_K x_b)/(τ√d_k) with independent W_Q, W_K
  (σ_QK = σ_Q σ_K): the logits stay O(1) Gaussian and A is random; its mixing moments and the
  query/key-path tangent term come from :mod:`critsym.attention.standard`.

Fold rule (token state, :mod:`critsym.fold`): x ↦ v = W_V x (a Linear), then with the mixing
moments D, X of :mod:`critsym.attention.weights` (q = Var v, p = its cross-token covariance
``noff``, j and κ its tangent)

  Var y = p + (q − p) D,  Cov(y_a, y_b) = p + (q − p) X,
  j' = D j + (1 − D) κ,  κ' = X j + (1 − X) κ,

and two inputs α, β (each with its own A in the deterministic regime) mix their covariance
with D_12, X_12; then y ↦ W_O y (a Linear).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import ClassVar

import sympy as sp

from ..errors import (
    ArchitectureError,
    DerivationError,
    HyperparameterError,
    SimulationError,
    UnsupportedModuleError,
)
from ..symbols import as_hyper
from .base import Op

REGIMES = ("uniform", "deterministic", "standard")


def _positive_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ArchitectureError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, init=False)
class Attention(Op):
    r"""Self-attention W_O · mix_A · W_V across ``n_tokens`` tokens (see the module docstring for
    the regimes and the fold rule).

    ``Attention(8)`` (uniform), ``Attention(8, "deterministic", sigma_qk=1.0, tau=1.0)``.
    ``sigma_v``, ``sigma_o``: the weight scales of values and outputs (σ_OV = σ_O σ_V);
    ``sigma_qk``: the query-key scale (not used by the uniform regime); ``heads``: the number
    of heads (d_k = d/heads); ``tau``: the softmax temperature; ``sigma_b_v``, ``sigma_b_o``:
    bias scales (default 0).
    """

    n_tokens: int
    regime: str
    sigma_qk: sp.Expr
    sigma_v: sp.Expr
    sigma_o: sp.Expr
    heads: int
    tau: sp.Expr
    sigma_b_v: sp.Expr
    sigma_b_o: sp.Expr
    hyper_fields = ("sigma_qk", "sigma_v", "sigma_o", "tau", "sigma_b_v", "sigma_b_o")
    multi_axis: ClassVar[bool] = True
    latex_name = r"\mathrm{Attn}"

    def __init__(self, n_tokens: int, regime: str = "uniform", sigma_qk: object = None,
                 sigma_v: object = "sigma_v", sigma_o: object = "sigma_o", heads: int = 1,
                 tau: object = 1, sigma_b_v: object = 0, sigma_b_o: object = 0):
        n = _positive_int(n_tokens, "Attention n_tokens (the number of tokens)", 2)
        if regime not in REGIMES:
            raise ArchitectureError(
                f"unknown attention regime {regime!r}; choose one of {list(REGIMES)}")
        h = _positive_int(heads, "Attention heads", 1)
        if sigma_qk is None:
            sigma_qk = 0 if regime == "uniform" else "sigma_qk"
        qk = as_hyper(sigma_qk, what="Attention sigma_qk", nonnegative=True)
        if regime == "uniform" and qk != 0:
            raise HyperparameterError(
                f"regime='uniform' is A = 11ᵀ/n (sigma_qk → 0) and does not use sigma_qk; got "
                f"sigma_qk={sigma_qk!r}: leave it out, or choose regime='deterministic' or "
                "'standard'")
        t = as_hyper(tau, what="Attention tau")
        if t.is_number and not t > 0:
            raise HyperparameterError(f"Attention tau (the softmax temperature) must be > 0, "
                                      f"got {tau!r}")
        vals = dict(n_tokens=n, regime=regime, sigma_qk=qk,
                    sigma_v=as_hyper(sigma_v, what="Attention sigma_v", nonnegative=True),
                    sigma_o=as_hyper(sigma_o, what="Attention sigma_o", nonnegative=True),
                    heads=h, tau=t,
                    sigma_b_v=as_hyper(sigma_b_v, what="Attention sigma_b_v", nonnegative=True),
                    sigma_b_o=as_hyper(sigma_b_o, what="Attention sigma_b_o", nonnegative=True))
        for k, v in vals.items():
            object.__setattr__(self, k, v)

    def __repr__(self) -> str:
        parts = [str(self.n_tokens), repr(self.regime)]
        if self.regime != "uniform":
            parts.append(f"sigma_qk={self.sigma_qk}")
        parts += [f"sigma_v={self.sigma_v}", f"sigma_o={self.sigma_o}"]
        if self.heads != 1:
            parts.append(f"heads={self.heads}")
        if self.regime != "uniform" and self.tau != 1:
            parts.append(f"tau={self.tau}")
        for k in ("sigma_b_v", "sigma_b_o"):
            if getattr(self, k) != 0:
                parts.append(f"{k}={getattr(self, k)}")
        return f"Attention({', '.join(parts)})"

    def hyperparameters(self) -> set[sp.Symbol]:
        """The hyperparameters the regime uses (the uniform regime ignores σ_QK and τ)."""
        used = ["sigma_v", "sigma_o", "sigma_b_v", "sigma_b_o"]
        if self.regime != "uniform":
            used += ["sigma_qk", "tau"]
        out: set[sp.Symbol] = set()
        for name in used:
            out |= getattr(self, name).free_symbols
        return out

    @property
    def beta(self) -> sp.Expr:
        """The inverse temperature of the deterministic regime, β = σ_QK²/τ."""
        return self.sigma_qk**2 / self.tau

    # fold ---------------------------------------------------------------------------------
    def _diagonal_weights(self, s) -> tuple[sp.Expr, sp.Expr]:
        """A_aa of each input's attention matrix, from its Gram (q̃ = E[x²], p̃ = the
        cross-token second moment E[x_a x_b], a ≠ b)."""
        from ..attention.weights import deterministic_weight, uniform_weight

        n = sp.Integer(self.n_tokens)
        if self.regime == "uniform":
            return uniform_weight(n), uniform_weight(n)
        if self.regime == "deterministic":
            out = []
            for side in "ab":
                q = s.E((s.expr_a if side == "a" else s.expr_b) ** 2, side)
                e = s.expr_a if side == "a" else s.expr_b
                p = s.E_tokens(e, e, side * 2)
                out.append(deterministic_weight(n, q, p, self.beta))
            return out[0], out[1]  # symbols of the signal's statistics (see apply)
        raise DerivationError(
            "regime='standard' (independent W_Q, W_K with 1/sqrt(d_k) logits) needs "
            "critsym.attention.standard, which is not available in this installation; use "
            "regime='uniform' or 'deterministic'")

    def apply(self, s):
        if not getattr(s, "tokens", False):
            raise DerivationError(
                "Attention needs a token state (rows = tokens); derive the architecture with "
                "critsym.derive, which starts one whenever the architecture contains Attention")
        from ..attention.weights import cross_D, cross_X, mixing_D, mixing_X
        from ..fold import ZERO, GVar, Offsets

        s = s.canonical()
        if self.regime == "standard":
            return self._apply_standard(s)
        n = sp.Integer(self.n_tokens)
        wa, wb = self._diagonal_weights(s)
        # the softmax weights stay symbols until the end of the fold (compact expressions)
        s, wa = s.statistic("Aa", wa, positive=True)
        s, wb = s.statistic("Ab", wb, positive=True)
        v = s.close(self.sigma_v, self.sigma_b_v)
        (g,) = v.gvars
        Da, Db, D12 = mixing_D(wa, n), mixing_D(wb, n), cross_D(wa, wb, n)
        Xa, Xb, X12 = mixing_X(wa, n), mixing_X(wb, n), cross_X(wa, wb, n)
        p = g.noff

        def mix(var, cov_tokens, w):
            return cov_tokens + (var - cov_tokens) * w

        y = GVar.new(mix(g.var_a, p.a, Da), mix(g.var_b, p.b, Db), mix(g.cov, p.ab, D12),
                     Da * g.jac + (1 - Da) * g.kap, ZERO,
                     Offsets(mix(g.var_a, p.a, Xa), mix(g.var_b, p.b, Xb),
                             mix(g.cov, p.ab, X12)),
                     Xa * g.jac + (1 - Xa) * g.kap)
        return replace(v, expr_a=y.a, expr_b=y.b, gvars=(y,)).close(self.sigma_o,
                                                                      self.sigma_b_o)

    def _apply_standard(self, s):
        """The standard regime (:mod:`critsym.attention.standard`): D, X of random Gaussian
        logits of scale σ_QK/τ from each input's token Gram, D₁₂, X₁₂ from the cross Gram, and
        the tangent (j, κ) ↦ (value + query/key path) (j, κ) of the values."""
        from ..attention.standard import standard_cross_moments, standard_moments
        from ..fold import ZERO, GVar, Offsets

        n, b = self.n_tokens, self.sigma_qk / self.tau
        ea, eb = s.expr_a, s.expr_b
        qa, qb = s.E(ea**2, "a"), s.E(eb**2, "b")
        pa, pb = s.E_tokens(ea, ea, "aa"), s.E_tokens(eb, eb, "bb")
        ma = standard_moments(n, qa, pa, b, self.heads)
        mb = standard_moments(n, qb, pb, b, self.heads)
        D12, X12 = standard_cross_moments(n, qa, pa, qb, pb, s.E2(ea, eb),
                                          s.E_tokens(ea, eb, "ab"), b)
        v = s.close(self.sigma_v, self.sigma_b_v)
        (g,) = v.gvars
        p = g.noff

        def mix(var, cov_tokens, w):
            return cov_tokens + (var - cov_tokens) * w

        (jac,), (kap,) = (ma.tangent * sp.Matrix([g.jac, g.kap])).tolist()
        y = GVar.new(mix(g.var_a, p.a, ma.D), mix(g.var_b, p.b, mb.D), mix(g.cov, p.ab, D12),
                     jac, ZERO,
                     Offsets(mix(g.var_a, p.a, ma.X), mix(g.var_b, p.b, mb.X),
                             mix(g.cov, p.ab, X12)),
                     kap)
        return replace(v, expr_a=y.a, expr_b=y.b, gvars=(y,)).close(self.sigma_o,
                                                                      self.sigma_b_o)

    # torch --------------------------------------------------------------------------------
    def to_torch(self, ctx, shape: tuple[int, ...]):
        """The stacked forward map (:func:`critsym.torch.attention.stacked_attention`) on
        inputs (n_nets, batch, tokens, channels)."""
        return _torch_attention().stacked_attention(self, ctx, shape)

    def export(self, ctx, fan: int):
        """A plain torch module (:func:`critsym.torch.attention.export_attention`); it records
        ``n_tokens`` (a structural choice no weight shows) for the import."""
        mod, out = _torch_attention().export_attention(self, ctx, fan)
        mod.n_tokens = self.n_tokens
        return mod, out

    torch_types = ("critsym.torch.attention.MultiheadSelfAttention",
                   "critsym.torch.attention.GramSelfAttention",
                   "critsym.torch.attention.StackedAttention")

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """An exported attention module: regime, heads and ``n_tokens`` from the module, σ_v,
        σ_o (and biases) estimated from the value and output weights; the deterministic
        regime's logit scale β as σ_QK = 1, τ = 1/β."""
        op = getattr(module, "op", None)
        if isinstance(op, Attention):  # a stacked critsym map names its operator
            return op
        name = reader.label(path)
        n = getattr(module, "n_tokens", None)
        if n is None:
            raise UnsupportedModuleError(
                f"submodule {name!r}: {type(module).__name__} does not record its number of "
                "tokens (the attention theory needs it); set module.n_tokens = n first")
        parts = module.parts()
        if module.regime == "standard":
            raise UnsupportedModuleError(
                f"submodule {name!r}: importing standard-regime attention (random logits) is "
                "not supported; build it with critsym.Attention(n, 'standard', ...)")
        sv, sbv = reader.weights(reader.join(path, "value"), "Attention value", parts["value"],
                                 parts["value_bias"], role="sigma_v")
        so, sbo = reader.weights(reader.join(path, "output"), "Attention output",
                                 parts["output"], parts["output_bias"], role="sigma_o")
        kw = dict(sigma_v=sv, sigma_o=so, heads=int(module.heads), sigma_b_v=sbv,
                  sigma_b_o=sbo)
        if module.regime == "deterministic":
            kw.update(sigma_qk=1, tau=1 / float(module.beta))
        return Attention(int(n), module.regime, **kw)

    def symbolic(self) -> Op:
        """Values and outputs with the symbols σ_w, σ_b (the importer pools every linear
        layer's scale), and a deterministic logit scale β = σ_QK²/τ as σ_QK = 1, τ = 1/β
        (12 significant digits), the form an import reads."""
        from ..symbols import sigma_b as _sb
        from ..symbols import sigma_w as _sw

        kw = dict(sigma_v=_sw, sigma_o=_sw, heads=self.heads,
                  sigma_b_v=_sb if self.sigma_b_v != 0 else 0,
                  sigma_b_o=_sb if self.sigma_b_o != 0 else 0)
        if self.regime != "uniform":
            kw.update(sigma_qk=self.sigma_qk, tau=self.tau)
            beta = self.beta
            if self.regime == "deterministic" and beta.is_number and beta > 0:
                kw.update(sigma_qk=1, tau=float(f"{1 / float(beta):.12g}"))
        return Attention(self.n_tokens, self.regime, **kw)

    # contract tests -----------------------------------------------------------------------
    @classmethod
    def examples(cls):
        from .contract import Example
        from .norm import LayerNorm
        from .residual import Residual

        # values and outputs scaled alike: an import pools every linear layer's scale
        hp = dict(sigma_v=1.1, sigma_o=1.1, mu=1)
        return (Example(Residual(LayerNorm() >> Attention(8)), hp, shape=(8, 8),
                        name="pre-LN uniform attention"),
                Example(Residual(LayerNorm() >> Attention(8, "deterministic", heads=2)),
                        {**hp, "sigma_qk": 1.2}, shape=(8, 8),
                        name="pre-LN deterministic attention"))


def _torch_attention():
    try:
        from ..torch import attention
    except ImportError:
        raise SimulationError(
            "Attention has no torch forward map in this installation (critsym.torch.attention "
            "is missing); derive its theory with critsym.derive") from None
    return attention


def uses_tokens(arch: Op) -> bool:
    """True when the architecture contains an :class:`Attention` (a token state)."""
    if isinstance(arch, Attention):
        return True
    return any(uses_tokens(c) for c in arch.children())


def token_count(arch: Op) -> int | None:
    """The number of tokens of the architecture's Attention operators (None without one); a
    clear error when they disagree."""
    found: set[int] = set()

    def walk(o):
        if isinstance(o, Attention):
            found.add(o.n_tokens)
        for c in o.children():
            walk(c)

    walk(arch)
    if len(found) > 1:
        raise ArchitectureError(
            f"the Attention operators of {arch!r} act on different numbers of tokens "
            f"{sorted(found)}; one block has one token count")
    return found.pop() if found else None

