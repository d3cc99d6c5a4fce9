r"""The state that the derivation folds through an architecture.

Inside a block the signal (one neuron, two inputs a and b) is a pair of sympy expressions of
*Gaussian variables*.  At infinite width every Gaussian variable is a fresh preactivation:
the block input h^l, or the output of a Linear layer, which is independent of every earlier
variable (its weights are).  Each :class:`GVar` records

* ``var_a``, ``var_b``: its variance for inputs a and b,
* ``cov``: its covariance between the two inputs,
* ``jac``: its APJN with respect to the block input,
  J_g = (1/N) E ||∂g/∂h^l||_F^2 (J = 1 for h^l itself).

Rules (all local, no per-architecture formulas):

* elementwise maps compose into the expression;
* a Linear layer closes the expression e into a new variable g with
  Var g = σ_w² E[e²] + σ_b², Cov g = σ_w² E[e_a e_b] + σ_b²,
  J_g = σ_w² Σ_k E[(∂e/∂g_k)²] J_{g_k}  (cross terms vanish: independent zero-mean weights);
* an expression affine in the variables, c_0 + Σ_k c_k g_k, is itself Gaussian and is merged
  into one variable with Var = Σ c_k² Var g_k, Cov = Σ c_k^a c_k^b Cov g_k, J = Σ c_k² J_k.

Multi-axis states (``Signal.axes``; used when an architecture contains a
:class:`~critsym.ops.axes.Transpose`, e.g. an MLP-Mixer).  The activations form a rows × neurons
array (tokens × channels); LayerNorm and Linear act along the neuron (last) axis.  Each variable
then also carries, for input a, the variances of two additive components:

* ``off``:  the part constant along the neuron axis (a per-row offset, O_T for a Mixer),
* ``noff``: the part constant along the row axis (a per-neuron offset, e.g. a bias),

each an :class:`Offsets` triple (variance for input a, for input b, covariance between them).
A Linear layer gives off' = 0 (its weights average to zero over neurons) and
noff'_ab = σ_w² E_N[E[e_a | N] E[e_b | N]] + σ_b² (the conditional means of e given the
per-neuron components N, which are jointly Gaussian between the two inputs); affine merges add
c_k^a c_k^b off_k, c_k^a c_k^b noff_k; a transpose swaps off and noff; LayerNorm over neurons
removes ``off`` (see :mod:`critsym.ops.axes`).  Without a Transpose nothing of this runs, so
every single-axis result is unchanged.

Token states (``Signal.tokens``; used when an architecture contains an
:class:`~critsym.ops.attention.Attention`).  The rows are n exchangeable tokens, the neurons
channels: the per-neuron component ``noff`` is the covariance p of two different tokens at one
channel.  The tangent then has two parts, and every variable also carries

* ``kap``: the per-pair cross-token overlap κ_g = (1/d) Σ_i ⟨∂g_{a,i}/∂h^l, ∂g_{b,i}/∂h^l⟩
  for two different tokens a ≠ b (κ = 0 for h^l itself; the block's k = κ·(n−1)/n).

Its rules follow from the chain rule exactly as those of ``jac`` do, with the second token in
place of the second factor:

* an elementwise map e(g_1, …) gives κ_e = Σ_k E[∂e/∂g_k(a) ∂e/∂g_k(b)] κ_k, the expectation
  over the law of one variable at two tokens (variances Var g, covariance noff); for φ(g) this
  is E[φ'(g_a) φ'(g_b)] κ_g;
* a Linear layer along the channels multiplies it by σ_w² (same weights for every token);
* an affine merge Σ c_k g_k gives Σ c_k² κ_k (different variables are independent);
* LayerNorm over the channels divides it by s² = Var g − off, like ``jac``;
* token mixing (attention) couples ``jac`` and ``kap`` (:mod:`critsym.ops.attention`).

The fold starts from symbolic seeds (``J_IN`` for jac, ``KAPPA_IN`` for kap); every rule is
linear, so the block's tangent map is read off as the coefficients of the seeds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import lru_cache

import sympy as sp

from .activations import check_differentiable
from .budget import check_budget
from .errors import DerivationError
from .gaussian.expectation import GaussE, GaussE2, expect, expect2
from .symbols import K11, K12, K22, O_C, O_C12, O_T, O_T12, K

_counter = itertools.count()


@dataclass(frozen=True)
class Offsets:
    """Variances of an offset component for inputs a and b, and its covariance between them."""

    a: sp.Expr = sp.S.Zero
    b: sp.Expr = sp.S.Zero
    ab: sp.Expr = sp.S.Zero

    def of(self, side: str) -> sp.Expr:
        return self.a if side == "a" else self.b

    def map(self, f) -> Offsets:
        return Offsets(f(self.a), f(self.b), f(self.ab))

    def scaled(self, ca, cb) -> Offsets:
        """The offsets of c·g: (ca² a, cb² b, ca cb ab)."""
        return Offsets(ca**2 * self.a, cb**2 * self.b, ca * cb * self.ab)

    def __add__(self, other: Offsets) -> Offsets:
        return Offsets(self.a + other.a, self.b + other.b, self.ab + other.ab)

    def is_zero(self) -> bool:
        return self.a == 0 and self.b == 0 and self.ab == 0


ZERO = Offsets()


@dataclass(frozen=True)
class GVar:
    """A Gaussian variable of the fold: dummies ``a``/``b`` (two inputs) and its statistics."""

    a: sp.Symbol
    b: sp.Symbol
    var_a: sp.Expr
    var_b: sp.Expr
    cov: sp.Expr
    jac: sp.Expr
    #: multi-axis states only: the per-row / per-neuron components (:class:`Offsets`)
    off: Offsets = ZERO
    noff: Offsets = ZERO
    #: token states only: the per-pair cross-token overlap κ (None: not tracked)
    kap: sp.Expr | None = None

    @staticmethod
    def new(var_a, var_b, cov, jac, off: Offsets = ZERO, noff: Offsets = ZERO,
            kap: sp.Expr | None = None) -> GVar:
        i = next(_counter)
        return GVar(sp.Symbol(f"z_{i}", real=True), sp.Symbol(f"y_{i}", real=True),
                    var_a, var_b, cov, jac, off, noff, kap)


@dataclass(frozen=True)
class Signal:
    """The per-neuron signal inside a block: expressions for inputs a and b and their variables."""

    expr_a: sp.Expr
    expr_b: sp.Expr
    gvars: tuple[GVar, ...]
    closed_forms: bool = True
    #: layer statistics introduced as symbols (LayerNorm mean/std), in order of definition
    defs: tuple[tuple[sp.Symbol, sp.Expr], ...] = ()
    #: multi-axis mode (rows × neurons; see the module docstring)
    axes: bool = False
    #: token state (rows are exchangeable tokens; variables carry ``kap``)
    tokens: bool = False

    # ------------------------------------------------------------------ expectations
    def present(self, expr: sp.Expr, side: str) -> list[GVar]:
        fs = expr.free_symbols
        return [g for g in self.gvars if (g.a if side == "a" else g.b) in fs]

    def E(self, expr: sp.Expr, side: str = "a") -> sp.Expr:
        """E[expr] over the independent Gaussian variables of one input (nested 1-D)."""
        out = sp.sympify(expr)
        for g in self.present(out, side)[::-1]:
            z, V = (g.a, g.var_a) if side == "a" else (g.b, g.var_b)
            out = expect(out, z, V, closed_forms=self.closed_forms)
        return out

    def E2(self, ea: sp.Expr, eb: sp.Expr) -> sp.Expr:
        """E[ea * eb] over the joint law of both inputs (bivariate per variable, nested)."""
        out = sp.sympify(ea * eb)
        for g in self.gvars[::-1]:
            out = expect2(out, g.a, g.b, g.var_a, g.var_b, g.cov, closed_forms=self.closed_forms)
        return out

    # ------------------------------------------------------------------ operations
    def statistic(self, name: str, value: sp.Expr, **assumptions) -> tuple[Signal, sp.Expr]:
        """Introduce a layer statistic (e.g. LayerNorm's mean or std) as a symbol.

        Keeping it symbolic until the end of the fold lets identities like
        (E[φ²] - 2mE[φ] + m²)/s² = 1 (with s² = E[φ²] - m²) cancel exactly.  Zero and bare
        numbers are used directly.
        """
        value = sp.sympify(value)
        if value.is_number or value.is_Symbol:
            return self, value
        sym = sp.Symbol(f"{name}_{next(_counter)}", **assumptions)
        return replace(self, defs=self.defs + ((sym, value),)), sym

    def resolve(self, expr: sp.Expr) -> sp.Expr:
        """Substitute the layer statistics' definitions (latest first) into ``expr``."""
        for sym, val in reversed(self.defs):
            expr = expr.xreplace({sym: val})
        return expr

    def map(self, f) -> Signal:
        """Apply an elementwise function (a Python callable on sympy expressions) to both inputs."""
        return replace(self, expr_a=f(self.expr_a, "a"), expr_b=f(self.expr_b, "b"))

    def jacobian(self) -> sp.Expr:
        """Σ_k E[(∂e/∂g_k)²] J_k: the APJN of the current expression w.r.t. the block input."""
        total = sp.S.Zero
        for g in self.present(self.expr_a, "a"):
            d = check_differentiable(self.expr_a, g.a)
            total += self.E(d**2, "a") * g.jac
        return total

    def E_tokens(self, ex: sp.Expr, ey: sp.Expr, pair: str = "aa") -> sp.Expr:
        """E[ex(token 1) · ey(token 2)] for two different tokens (token states): ``ex`` in the
        variables of input x, ``ey`` of input y, ``pair`` = xy in {"aa", "bb", "ab"}.  Each
        variable is bivariate between the two tokens with variances Var_x g, Var_y g and
        covariance ``noff`` (the cross-token covariance; between inputs its cross term)."""
        x, y = pair
        fresh = {g: sp.Symbol(f"t_{next(_counter)}", real=True) for g in self.gvars}
        dummy = {"a": lambda g: g.a, "b": lambda g: g.b}
        var = {"a": lambda g: g.var_a, "b": lambda g: g.var_b}
        cov = {"aa": lambda g: g.noff.a, "bb": lambda g: g.noff.b, "ab": lambda g: g.noff.ab}
        out = sp.sympify(ex) * sp.sympify(ey).xreplace({dummy[y](g): t for g, t in fresh.items()})
        for g in self.gvars[::-1]:
            out = expect2(out, dummy[x](g), fresh[g], var[x](g), var[y](g), cov[pair](g),
                          closed_forms=self.closed_forms)
        return out

    def _side(self, side: str) -> sp.Expr:
        return self.expr_a if side == "a" else self.expr_b

    def cross_jacobian(self) -> sp.Expr:
        """Σ_k E[∂e/∂g_k(a) ∂e/∂g_k(b)] κ_k: the cross-token overlap of the current expression
        (token states)."""
        total = sp.S.Zero
        for g in self.present(self.expr_a, "a"):
            d = check_differentiable(self.expr_a, g.a)
            total += self.E_tokens(d, d, "aa") * g.kap
        return total

    def close(self, sigma_w: sp.Expr, sigma_b: sp.Expr, *, fan_in_scale: sp.Expr = 1) -> Signal:
        """A Linear layer: the expression becomes a fresh Gaussian variable."""
        sw2 = sigma_w**2 * fan_in_scale
        sb2 = sigma_b**2
        var_a = sw2 * self.E(self.expr_a**2, "a") + sb2
        var_b = sw2 * self.E(self.expr_b**2, "b") + sb2
        cov = sw2 * self.E2(self.expr_a, self.expr_b) + sb2
        jac = sw2 * self.jacobian()
        noff = ZERO
        if self.tokens:  # the cross-token second moment, as a bivariate expectation
            noff = Offsets(*(sw2 * self.E_tokens(self._side(pair[0]), self._side(pair[1]), pair)
                             + sb2 for pair in ("aa", "bb", "ab")))
        elif self.axes:
            noff = Offsets(*(sw2 * self.cond_mean_product(pair) + sb2
                             for pair in ("aa", "bb", "ab")))
        kap = sw2 * self.cross_jacobian() if self.tokens else None
        g = GVar.new(var_a, var_b, cov, jac, ZERO, noff, kap)
        return replace(self, expr_a=g.a, expr_b=g.b, gvars=(g,))

    def _cond_mean(self, side: str) -> tuple[sp.Expr, dict[GVar, sp.Symbol]]:
        """E[e_side | N] as an expression of fresh symbols n_g (the per-neuron components)."""
        expr = self.expr_a if side == "a" else self.expr_b
        inner, split = sp.sympify(expr), {}
        for g in self.present(expr, side):
            V, VN = (g.var_a, g.noff.a) if side == "a" else (g.var_b, g.noff.b)
            if VN == 0:
                continue
            i = next(_counter)
            zn, zr = sp.Symbol(f"n{side}_{i}", real=True), sp.Symbol(f"r{side}_{i}", real=True)
            inner = inner.xreplace({(g.a if side == "a" else g.b): zn + zr})
            inner = expect(inner, zr, V - VN, closed_forms=self.closed_forms)
            split[g] = zn
        return self.E(inner, side), split  # then the variables without per-neuron parts

    def cond_mean_product(self, pair: str = "aa") -> sp.Expr:
        """E_N[E[e_x | N] E[e_y | N]] for ``pair`` = xy in {"aa", "bb", "ab"}: the second moment
        of the per-neuron means of the expressions (multi-axis mode).

        Each variable g with per-neuron components is split as g = g_N + g_R, g_N ~ N(0, noff)
        (jointly Gaussian between the two inputs, covariance noff.ab), g_R independent of it;
        the inner expectations are over the g_R, the outer over the g_N.  Without per-neuron
        components this is E[e_x] E[e_y].
        """
        x, y = pair
        ix, nx = self._cond_mean(x)
        if x == y:
            out = ix**2
            for g, zn in list(nx.items())[::-1]:
                out = expect(out, zn, g.noff.of(x), closed_forms=self.closed_forms)
            return out
        iy, ny = self._cond_mean(y)
        out = ix * iy
        for g in [g for g in self.gvars if g in nx or g in ny][::-1]:
            if g in nx and g in ny:
                out = expect2(out, nx[g], ny[g], g.noff.a, g.noff.b, g.noff.ab,
                              closed_forms=self.closed_forms)
            elif g in nx:
                out = expect(out, nx[g], g.noff.a, closed_forms=self.closed_forms)
            else:
                out = expect(out, ny[g], g.noff.b, closed_forms=self.closed_forms)
        return out

    def combine(self, other: Signal, coeff_self: sp.Expr, coeff_other: sp.Expr = 1) -> Signal:
        """coeff_self * self + coeff_other * other (a sum of branches), then merged if affine.

        Both signals are folded from one input state; the layer statistics of both are kept
        (those ``other`` defined after the shared ones are appended)."""
        gv = list(self.gvars) + [g for g in other.gvars if g not in self.gvars]
        s = replace(
            self,
            expr_a=coeff_self * self.expr_a + coeff_other * other.expr_a,
            expr_b=coeff_self * self.expr_b + coeff_other * other.expr_b,
            gvars=tuple(gv),
            defs=self.defs + tuple(d for d in other.defs if d not in self.defs),
        )
        return s.canonical()

    def canonical(self) -> Signal:
        """Merge an expression affine in the Gaussian variables into one variable; drop unused."""
        used = [g for g in self.gvars if g.a in self.expr_a.free_symbols
                or g.b in self.expr_b.free_symbols]
        s = replace(self, gvars=tuple(used))
        if not used:
            return s
        ca, cb = _affine(s.expr_a, [g.a for g in used]), _affine(s.expr_b, [g.b for g in used])
        if ca is None or cb is None:
            return s
        (a0, a_k), (b0, b_k) = ca, cb
        if len(used) == 1 and a_k[0] == 1 and b_k[0] == 1:
            return s
        g = GVar.new(
            sp.Add(*[c**2 * u.var_a for c, u in zip(a_k, used)]),
            sp.Add(*[c**2 * u.var_b for c, u in zip(b_k, used)]),
            sp.Add(*[ca_ * cb_ * u.cov for ca_, cb_, u in zip(a_k, b_k, used)]),
            sp.Add(*[c**2 * u.jac for c, u in zip(a_k, used)]),
            sum((u.off.scaled(ca_, cb_) for ca_, cb_, u in zip(a_k, b_k, used, strict=True)),
                ZERO),
            sum((u.noff.scaled(ca_, cb_) for ca_, cb_, u in zip(a_k, b_k, used, strict=True)),
                ZERO),
            sp.Add(*[c**2 * u.kap for c, u in zip(a_k, used)]) if s.tokens else None,
        )
        return replace(s, expr_a=a0 + g.a, expr_b=b0 + g.b, gvars=(g,))


def tidy(expr: sp.Expr, max_ops: int = 25) -> sp.Expr:
    """Cheap normalisation of small closed forms (``together`` + ``cancel``), keeping whichever
    form has the fewest operations; ``simplify`` costs seconds on these expressions and gains
    little."""
    if expr.is_Atom:
        return expr
    check_budget()
    best, n = expr, sp.count_ops(expr)
    cands = []
    if not expr.has(GaussE, GaussE2):
        tog = sp.together(expr)
        cands.append(tog)
        if n <= max_ops:
            cands.append(sp.cancel(tog))
    for c in cands:
        m = sp.count_ops(c)
        if m < n:
            best, n = c, m
    return best


def _affine(expr: sp.Expr, syms: list[sp.Symbol]):
    """(c0, [c_k]) if expr = c0 + Σ c_k s_k with coefficients free of the symbols, else None."""
    coeffs = []
    for s in syms:
        c = sp.diff(expr, s)
        if c.free_symbols & set(syms):
            return None
        coeffs.append(c)
    c0 = sp.expand(expr - sp.Add(*[c * s for c, s in zip(coeffs, syms)]))
    if c0.free_symbols & set(syms):
        return None
    return c0, coeffs


#: seeds of a token-state fold: the tangent (jac, kap) of the block input
J_IN = sp.Symbol("j_in")
KAPPA_IN = sp.Symbol("kappa_in")


def input_signal(K11: sp.Expr, K22: sp.Expr, K12: sp.Expr, *, closed_forms: bool = True,
                 off: Offsets | None = None, noff: Offsets | None = None,
                 tokens: bool = False) -> Signal:
    """The block input h^l: one Gaussian variable with variances K11, K22, covariance K12, J = 1.

    Passing ``off``/``noff`` (per-row / per-neuron components, :class:`Offsets`) starts a
    multi-axis fold; ``tokens`` a token-state fold, whose tangent starts from the seeds
    (jac, kap) = (``J_IN``, ``KAPPA_IN``)."""
    if off is None and noff is None and not tokens:
        g = GVar.new(K11, K22, K12, sp.S.One)
        return Signal(g.a, g.b, (g,), closed_forms=closed_forms)
    if tokens:
        g = GVar.new(K11, K22, K12, J_IN, off or ZERO, noff or ZERO, KAPPA_IN)
    else:
        g = GVar.new(K11, K22, K12, sp.S.One, off or ZERO, noff or ZERO)
    return Signal(g.a, g.b, (g,), closed_forms=closed_forms, axes=True, tokens=tokens)


def output_variable(s: Signal) -> GVar:
    """The block output: a single zero-mean Gaussian variable (statistics resolved)."""
    s = s.canonical()
    if len(s.gvars) == 1 and s.expr_a == s.gvars[0].a and s.expr_b == s.gvars[0].b:
        g = s.gvars[0]
        if s.tokens:  # tidy the compact form (layer statistics as symbols), then resolve

            def fin(e):
                return s.resolve(tidy(e))
        else:

            def fin(e):
                return tidy(s.resolve(e))

        out = {k: fin(getattr(g, k)) for k in ("var_a", "var_b", "cov", "jac")}
        if g.kap is not None:
            out["kap"] = fin(g.kap)
        for k in ("off", "noff"):
            out[k] = getattr(g, k).map(fin)
        return replace(g, **out)
    raise DerivationError(
        f"the block's output {s.expr_a} is not a Gaussian preactivation; a block must end in a "
        "Linear layer (or a residual sum / LayerNorm of Gaussian parts) so that it can repeat. "
        "Rotate the composition, e.g. Act >> Linear instead of Linear >> Act."
    )


@lru_cache(maxsize=256)
def fold_maps(arch, *, closed_forms: bool = True, axes: bool = False,
              tokens: bool = False) -> dict[str, sp.Expr]:
    """The maps of one block ``arch`` (an operator with ``apply(Signal) -> Signal``), folded
    from the block input h^l to its output.

    Single-axis state: ``F`` = K^{l+1}(K), ``chi`` = χ_J(K) and ``G`` = K_12^{l+1}(K_11, K_22,
    K_12).  Multi-axis state (``axes``): ``F``, ``chi``, ``F_T`` = O_T^{l+1}, ``F_C`` = O_C^{l+1}
    as functions of (K, O_T, O_C), and the cross maps ``G`` = K_12^{l+1}, ``G_T`` = O_T12^{l+1},
    ``G_C`` = O_C12^{l+1} of two inputs of equal law, functions of (K, O_T, O_C, K_12, O_T12,
    O_C12).  ``closed_forms=False`` leaves every Gaussian expectation unevaluated (for display).

    Token state (``tokens``, implies ``axes``): the multi-axis maps with ``chi`` the tangent's
    (j, j) entry, plus the tangent map in (j, κ) coordinates, κ the per-pair cross-token
    overlap: ``T_jj`` = ∂j'/∂j, ``T_jkap`` = ∂j'/∂κ, ``T_kapj`` = ∂κ'/∂j, ``T_kapkap`` = ∂κ'/∂κ.
    """
    if tokens:
        s = input_signal(K, K, K12, closed_forms=closed_forms, off=Offsets(O_T, O_T, O_T12),
                         noff=Offsets(O_C, O_C, O_C12), tokens=True)
        out = output_variable(arch.apply(s))
        tangent = {"T_jj": (out.jac, J_IN), "T_jkap": (out.jac, KAPPA_IN),
                   "T_kapj": (out.kap, J_IN), "T_kapkap": (out.kap, KAPPA_IN)}
        maps = {k: tidy(sp.diff(e, x)) for k, (e, x) in tangent.items()}
        seeds = {J_IN, KAPPA_IN}
        for e in (out.jac, out.kap):
            if any(m.free_symbols & seeds for m in maps.values()) or \
                    e.xreplace({J_IN: 0, KAPPA_IN: 0}) != 0:
                raise DerivationError(
                    f"the tangent of {arch!r} is not linear in the block input's tangent: "
                    f"{e}; every operator must map (j, κ) linearly")
        maps.update({"F": out.var_a, "chi": maps["T_jj"], "G": out.cov, "F_T": out.off.a,
                     "F_C": out.noff.a, "G_T": out.off.ab, "G_C": out.noff.ab})
        return {k: canonical(v) for k, v in maps.items()}
    if not axes:
        out = output_variable(arch.apply(input_signal(K11, K22, K12, closed_forms=closed_forms)))
        maps = {"F": out.var_a.subs(K11, K), "chi": out.jac.subs(K11, K), "G": out.cov}
    else:
        s = input_signal(K, K, K12, closed_forms=closed_forms, off=Offsets(O_T, O_T, O_T12),
                         noff=Offsets(O_C, O_C, O_C12))
        out = output_variable(arch.apply(s))
        maps = {"F": out.var_a, "chi": out.jac, "G": out.cov, "F_T": out.off.a,
                "F_C": out.noff.a, "G_T": out.off.ab, "G_C": out.noff.ab}
    return {k: canonical(v) for k, v in maps.items()}


def canonical(expr: sp.Expr) -> sp.Expr:
    """``expr`` rebuilt bottom-up from its arguments (each node evaluated): the form that pickling
    (and any other reconstruction) gives, so a derived theory equals its unpickled copy."""
    if expr.is_Atom:
        return expr
    return expr.func(*(canonical(a) for a in expr.args))
