r"""Critical exponents: analytic (asymptotic expansion of the symbolic recursion) and fitted.

Write J^{l0,l} ~ (l/l0)^p at criticality (ζ = −p, J ∝ l^{−ζ}) and ξ_J ∝ |ε|^{−ν} off
criticality, ε the distance of one hyperparameter from its critical value.  Universality classes:

* **K* = 0** (σ_b = 0 and odd-like φ at the critical σ_w; tanh, erf, sin).  Around K = 0,
  F(K) = K + aK² + …, χ_J(K) = 1 + bK + … (expectations expanded by
  E_{z~N(0,V)}[f(z)] = Σ_k f^{(2k)}(0) V^k/(2^k k!)).  Then K^{l+1} − K^l ≈ aK² gives
  K^l ≈ −1/(a l), and log J^{l0,l} = Σ_m log(1 + bK^m) ≈ −(b/a) log(l/l0):  **p = −b/a**
  (tanh/erf: a = b, p = −1, ζ = 1).  Off criticality (F = sK + aK² + cK³, χ = s + bK + dK²,
  δ = s − 1): ordered side K* = 0, χ* = s, ν = 1; chaotic side K* = −δ/a − cδ²/a³ + …,
  χ* − 1 = δ(1 − b/a) + O(δ²): ν = 1/(order of the first non-vanishing term) (ν = 2 when a = b).
* **K* > 0 on a critical line**: K^l → K* exponentially, χ_J^l → 1 exponentially fast, so J
  tends to a constant: p = 0; ξ_J ∝ |ε|^{−1} (ν = 1) where dχ*/dε ≠ 0.
* **neutral** (F(K) = K for all K, relu at σ_w² = 2, σ_b = 0): χ_J ≡ 1, p = 0.
* **no fixed point, χ_J → 1** (LN on preactivations + residual μ = 1, "everywhere critical"):
  F(K) − K → B and K(χ_J − 1) → A as K → ∞, so K^l ≈ B l and J^{l0,l} ≈ (l/l0)^{A/B}:
  **p = A/B**.  When instead χ_J − 1 ∝ K^{−γ} with γ < 1 (residual μ = 1 without LN) log J grows
  like l^{1−γ}: "stretched exponential", no power law.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..errors import HyperparameterError, NumericalError
from ..gaussian.expectation import GaussE
from ..stats import line_fit
from ..symbols import K
from .fixed_point import fixed_point

CRIT_TOL = 1e-7


@dataclass(frozen=True)
class Exponents:
    """Analytic exponents of one class: ``p`` (J ~ (l/l0)^p), ``zeta`` = −p, ``nu`` (ν, per side),
    ``K_law`` (the depth law of K^l), the expansion ``coefficients`` and a ``note`` (how they
    were obtained when the symbolic route was cut short)."""

    universality: str
    p: object
    K_law: str
    coefficients: dict = field(default_factory=dict)
    nu: dict = field(default_factory=dict)
    note: str = ""

    @property
    def zeta(self):
        return None if self.p is None else -self.p


#: seconds of symbolic work (series, simplify) one analytic_exponents call may spend
SYMBOLIC_BUDGET_S = 20.0


class _OverBudget(Exception):
    pass


def within_budget(fn, seconds: float):
    """``fn()``, or None when it fails (sympy errors, RecursionError) or runs longer than
    ``seconds`` (a SIGALRM timer in the main thread; elsewhere a daemon thread that is left
    to finish in the background)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def handler(signum, frame):
            raise _OverBudget

        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn()
        except (_OverBudget, RecursionError, Exception):
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    box: list = []

    def run():
        try:
            box.append(fn())
        except (RecursionError, Exception):
            pass

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(seconds)
    return box[0] if box else None


def gauss_series(expr: sp.Expr, order: int) -> sp.Expr:
    """Replace every 1-D expectation E_{z~N(0,V)}[f] by its series Σ_{k≤order} f^{(2k)}(0) V^k /
    (2^k k!) (exact for analytic f up to O(V^{order+1}))."""
    repl = {}
    for n in expr.atoms(GaussE):
        lam, V = n.args
        (z,) = lam.variables
        f = lam.expr
        terms = []
        for k in range(order + 1):
            d = sp.diff(f, z, 2 * k).subs(z, 0)
            terms.append(d * V**k / (2**k * sp.factorial(k)))
        repl[n] = sp.Add(*terms)
    return expr.xreplace(repl) if repl else expr


def _coeffs(expr: sp.Expr, order: int) -> list[sp.Expr]:
    s = sp.series(gauss_series(expr, order), K, 0, order + 1).removeO()
    return [sp.simplify(s.coeff(K, k)) for k in range(order + 1)]


def zero_class_coefficients(theory, subs: dict | None = None) -> dict:
    """F = s_F K + a K² + c K³, χ_J = s + b K + d K² around K = 0 (sympy)."""
    subs = subs or {}
    F = theory.F.subs(subs)
    chi = theory.chi.subs(subs)
    f0, sF, a, c = _coeffs(F, 3)
    s, b, d, _ = _coeffs(chi, 3)
    return {"F0": f0, "s_F": sF, "a": a, "c": c, "s": s, "b": b, "d": d}


def _nu_zero_class(co: dict) -> dict:
    """ν on both sides of a K* = 0 critical point from the expansion coefficients."""
    a, b, c, d = (sp.nsimplify(co[k]) if co[k].is_number else co[k] for k in "abcd")
    delta = sp.Symbol("delta", positive=True)
    Ks = -delta / a - c * delta**2 / a**3
    excess = sp.expand(delta + b * Ks + d * Ks**2)
    poly = sp.Poly(excess, delta)
    order = None
    for k in range(1, 3):
        if sp.simplify(poly.coeff_monomial(delta**k)) != 0:
            order = k
            break
    # ξ = −1/log χ* ≈ 1/|χ* − 1| ∝ δ^{−order}
    return {"ordered": sp.Integer(1), "chaotic": sp.Integer(order) if order else None,
            "chaotic_leading": sp.simplify(poly.coeff_monomial(delta**order)) if order else None,
            "note": "ν w.r.t. δ = χ_J(0) − 1 (∝ ε); on the chaotic side χ* − 1 ≈ "
                    "leading·δ^order"}


def _num(x):
    """A float for a numeric expression (Gaussian expectations integrated with mpmath)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        pass
    x = sp.sympify(x)
    if x.free_symbols:
        return x
    from ..gaussian.numeric import evaluate_mp

    return float(evaluate_mp(x, {}, 20))


ZERO_K = 1e-10


def _series_ok(co: dict) -> bool:
    """The K → 0 series is meaningful: no DiracDelta/Heaviside (a kink at 0) and nothing
    non-finite in its coefficients."""
    bad = (sp.DiracDelta, sp.Heaviside, sp.Derivative, sp.Subs)
    return all(not sp.sympify(v).has(*bad) and not sp.sympify(v).has(sp.nan, sp.zoo, sp.oo)
               for v in co.values())


def analytic_exponents(theory, K0: object = 1.0, *, budget: float = SYMBOLIC_BUDGET_S,
                       tol: float = CRIT_TOL, **hp) -> Exponents:
    """The universality class and exponents at the given (critical) hyperparameters.

    Hyperparameters left out stay symbolic where the class can be decided from the formulas
    alone (the K* = 0 series and the LN-pre + residual μ = 1 class); with all of them given the
    class is decided numerically from the fixed point (critical when |χ_J* − 1| ≤ ``tol``) and
    numbers are returned.  Symbolic work (series, simplify) is limited to ``budget`` seconds;
    past it, numbers come from the numeric maps (``note`` says so), or, with symbolic
    hyperparameters, a :class:`HyperparameterError` asks for values.
    """
    names = theory.hyperparameter_names
    unknown = [n for n in hp if n not in names]
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameters {unknown}; this theory has {list(names)}")
    subs = {s: sp.nsimplify(hp[s.name]) if isinstance(hp[s.name], int) else sp.Float(hp[s.name])
            for s in theory.hyperparameters if s.name in hp}
    F = theory.F.subs(subs)
    chi = theory.chi.subs(subs)
    complete = len(subs) == len(names)

    state = theory.state_symbols
    if len(state) > 1 and not complete:
        raise HyperparameterError(
            f"exponents of a multi-axis state {[str(x) for x in state]} are computed "
            f"numerically: give values of all of {list(names)}")
    # class: no fixed point, K grows linearly and χ_J → 1 (structure alone: F − K and
    # K(χ_J − 1) free of K)
    if len(state) == 1:
        B = F - K
        A = within_budget(lambda: sp.expand(K * (chi - 1), deep=False), budget)
        if A is not None and B != 0 and not B.has(K) and not A.has(K):
            if complete:  # exact from the numeric maps at any K
                An = float(theory.chi_J(1.0, **hp)) - 1.0
                Bn = float(theory.variance_map(1.0, **hp)) - 1.0
                p, co = An / Bn, {"A": An, "B": Bn}
            else:
                A = within_budget(lambda: sp.simplify(A), budget) or A
                B = within_budget(lambda: sp.simplify(B), budget) or B
                p = within_budget(lambda: sp.simplify(A / B), budget)
                p = A / B if p is None else p
                co = {"A": A, "B": B}
            return Exponents(
                "no fixed point, chi_J -> 1 (everywhere critical: LN-pre + residual mu=1 class)",
                p, "K^l = K^0 + B l", co,
                {"ordered": None, "chaotic": None, "note": "critical for every hyperparameter"})

    if not complete:
        co = within_budget(lambda: zero_class_coefficients(theory, subs), budget)
        if co is None or not _series_ok(co):
            raise HyperparameterError(
                f"no symbolic K -> 0 expansion of this block within {budget:g} s (the "
                "activation may not be analytic at 0, e.g. elu/selu): give numeric values of "
                f"all of {list(names)} for the numeric exponents")
        if co["F0"] != 0:
            raise HyperparameterError(
                "symbolic exponents need F(0) = 0 (the K* = 0 class, e.g. sigma_b=0) or the "
                "LN-pre + residual mu=1 structure; give numeric values of all of "
                f"{list(names)} for the other classes")
        p = within_budget(lambda: sp.simplify(-co["b"] / co["a"]), budget)
        p = -co["b"] / co["a"] if p is None else p
        nu = within_budget(lambda: _nu_zero_class(co), budget) or {}
        return Exponents("K*=0 (tanh/erf class)", p, "K^l ≈ -1/(a l)", co, nu)

    fp = fixed_point(theory, K0=K0, **hp)
    st, chis = str(fp.status), float(fp.chi_star)
    crit = abs(chis - 1) <= tol
    if st == "finite" and float(fp.K_star) < ZERO_K:
        st = "zero"  # a root at rounding level of K = 0 (the critical σ_w known to ~1e-15)
    if st == "neutral":
        return Exponents("neutral (F(K) = K: every K fixed, chi_J = 1)", 0.0, "K^l = K^0", {},
                         {})
    if st == "zero" and crit:
        co = within_budget(lambda: zero_class_coefficients(theory, subs), budget)
        cof = nu = None
        if co is not None and _series_ok(co):
            cof = within_budget(lambda: {k: _num(v) for k, v in co.items()}, budget)
            nu = within_budget(lambda: _nu_zero_class(co), budget)
        if cof is None or nu is None:
            fit = fit_p(theory, depth=4000, K0=K0, **hp)
            return Exponents(
                "K*=0 class", fit.value, "K^l -> 0", {"p_stderr": fit.stderr}, {},
                f"no symbolic K -> 0 expansion within {budget:g} s (the activation may not be "
                "analytic at 0): p fitted to log J^{0,l} over l in [400, 4000] (fit_p)")
        p = -cof["b"] / cof["a"]
        return Exponents("K*=0 (tanh/erf class)", float(p), f"K^l ≈ {-1 / cof['a']:.6g}/l",
                         cof, nu)
    if st == "finite" and crit:
        return Exponents("K*>0 critical line", 0.0, f"K^l -> K* = {float(fp.K_star):.6g}",
                         {"K_star": float(fp.K_star), "dF_dK": float(fp.dF_dK)},
                         {"ordered": 1.0, "chaotic": 1.0})
    if st == "unbounded" and str(fp.growth) in ("linear", "power") and abs(chis - 1) < 1e-3:
        # χ_J − 1 ∝ K^{−γ}: γ = 1 power law, γ < 1 stretched exponential
        # along the growth ray O_T ≈ ρ_T K of a multi-axis state (docs/theory.md#mlp-mixer-block:
        # at μ = 1 a Mixer's p = A/(B − Δ_T/2) per sub-block pair comes from K − O_T ≈ (1 − ρ_T) K)
        rho = getattr(fp, "rho_T", None)

        def chi_ray(Kv):
            extra = {} if rho is None else {"O_T": float(rho) * Kv}
            return float(theory.chi_J(Kv, **extra, **hp)) - 1

        Ka, Kb = 1e6, 1e8
        ca, cb = chi_ray(Ka), chi_ray(Kb)
        gamma = np.log(ca / cb) / np.log(Kb / Ka)
        Bn = float(fp.growth_rate)
        if abs(gamma - 1) < 1e-3:
            An = cb * Kb
            return Exponents("no fixed point, chi_J -> 1 (power law)", An / Bn, "K^l ≈ B l",
                             {"A": An, "B": Bn}, {})
        return Exponents("no fixed point, chi_J -> 1 slowly (stretched exponential)", None,
                         "K^l ≈ B l", {"gamma": gamma, "B": Bn,
                                       "log_J_law": f"log J ~ l^{1 - gamma:.4g}"}, {})
    if not np.isfinite(chis):
        return Exponents("undetermined (chi_J* is not finite)", None, f"status {st}", {}, {})
    phase = "ordered" if chis < 1 else "chaotic"
    return Exponents(f"off-critical ({phase}, chi_J* = {chis:.6g})", None,
                     f"status {st}", {"xi_J": float(-1 / np.log(chis)) if chis > 0 else 0.0}, {})


# ------------------------------------------------------------------ fitted


@dataclass(frozen=True)
class Fit:
    """A least-squares slope with its standard error (and the data fitted)."""

    value: float
    stderr: float
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)


def _linfit(x, y, extra=()) -> tuple[float, float]:
    """Slope of y on x (with an intercept and optional extra regressors) and its standard error."""
    fit = line_fit(x, y, extra=extra)  # NaN error without residual degrees of freedom
    return float(fit.coef[1]), float(fit.se[1])


def fit_p(theory, depth: int = 4000, window: tuple[int, int] | None = None, *,
          K0: float = 1.0, points: int = 60, corrections: bool = True, **hp) -> Fit:
    """Fitted p of J^{0,l} ∝ l^p: slope of log J vs log l over the layer ``window``
    (default: the last decade of ``depth``), from :meth:`Theory.run`.  With ``corrections`` the
    leading finite-depth corrections 1/l and log(l)/l are fitted too (K^l = −1/(al) + O(log l/l²)
    makes log J = p log l + C + O(log l / l))."""
    if window is None:
        window = (max(depth // 10, 1), depth)
    lo, hi = window
    if not (1 <= lo < hi <= depth):
        raise HyperparameterError(f"window must satisfy 1 <= lo < hi <= depth, got {window}")
    run = theory.run(depth, K0=K0, **hp)
    ls = np.unique(np.geomspace(lo, hi, points).astype(int))
    J = np.asarray(run.J)[ls]
    if np.any(J <= 0) or not np.all(np.isfinite(J)):
        raise NumericalError("J is not finite and positive on the window; shorten the depth")
    lf = ls.astype(float)
    extra = (1 / lf, np.log(lf) / lf) if corrections else ()
    slope, err = _linfit(np.log(lf), np.log(J), extra)
    return Fit(slope, err, lf, np.log(J))


def measured_xi(theory, depth: int = 400, K0: float = 1.0, **hp) -> float:
    """ξ_J measured from a trajectory: −(l2 − l1)/log J^{l1,l2} over the last half."""
    run = theory.run(depth, K0=K0, allow_nonfinite=True, **hp)
    l1, l2 = depth // 2, depth
    with np.errstate(all="ignore"):
        logJ = np.sum(np.log(np.asarray(run.chi)[l1:l2]), axis=0)
    return float(-(l2 - l1) / logJ)


def fit_nu(theory, name: str, critical_value: float, offsets, *, side: int = +1,
           depth: int = 400, K0: float = 1.0, corrections: bool = True, **hp) -> Fit:
    """Fitted ν of |ξ_J| ∝ |ε|^{−ν}, ε = ``name`` − ``critical_value`` = side·offsets, with ξ_J
    measured from trajectories (:func:`measured_xi`); with ``corrections`` a term linear in |ε|
    (the next order of log ξ) is fitted too."""
    try:
        offs = np.asarray(offsets, dtype=float)
    except (TypeError, ValueError):
        raise HyperparameterError(f"offsets must be a list of numbers, got {offsets!r}") from None
    need = 4 if corrections else 3  # the fitted terms plus one for the standard error
    if offs.ndim != 1 or len(np.unique(offs)) < need:
        raise HyperparameterError(
            f"offsets must hold at least {need} distinct distances from the critical value "
            f"to fit ν and its error{' with corrections' if corrections else ''}, got "
            f"{offsets!r}; e.g. offsets=np.geomspace(1e-3, 1e-1, 8)")
    if not np.all(np.isfinite(offs)) or np.any(offs <= 0):
        raise HyperparameterError("offsets must be positive distances from the critical value")
    xi = np.array([measured_xi(theory, depth, K0, **{**hp, name: critical_value + side * e})
                   for e in offs])
    slope, err = _linfit(np.log(offs), np.log(np.abs(xi)), (offs,) if corrections else ())
    return Fit(-slope, err, np.log(offs), np.log(np.abs(xi)))


@dataclass(frozen=True)
class GrowthLaw:
    """How J^{0,l} grows with depth, from the local exponent p(l) = l·log χ^l = d log J/d log l:
    ``kind`` "power law" (p(l) → ``power``: J ∝ l^p), "stretched exponential" (p(l) ∝ l^β,
    log J ∝ l^β with 0 < β < 1) or "exponential" (β = 1); ``beta`` the fitted slope of
    log p(l) on log l with its standard error ``beta_se``, over the layers ``window``."""

    kind: str
    beta: float
    beta_se: float
    power: float
    window: tuple[int, int]


#: the slope β of log p(l) on log l that separates the growth laws (documented in j_growth)
POWER_LAW_BETA, EXPONENTIAL_BETA = 0.15, 0.85


def j_growth(theory, depth: int = 1000, window: tuple[int, int] | None = None, *,
             K0: float = 1.0, points: int = 40, **run_kw) -> GrowthLaw:
    r"""Classify the growth of J^{0,l} with depth from :meth:`Theory.run` (any theory: token
    states included, whose χ^l = J^{l+1}/J^l comes from the two-part tangent).

    p(l) = l log χ^l is the local exponent d log J/d log l.  Over ``window`` (default the last
    decade of ``depth``) the slope β of log p on log l classifies: β < 0.15 power law
    (J ∝ l^p, e.g. pre-LN transformers, whose χ − 1 ∝ 1/q ∝ 1/l), 0.15 ≤ β < 0.85 stretched
    exponential (log J ∝ l^β, e.g. erf-normalized transformers, χ − 1 ∝ 1/√l: β = 1/2),
    β ≥ 0.85 exponential.  The thresholds are a classification of a measured slope, not exact
    bounds: check ``beta`` and ``beta_se``.
    """
    if window is None:
        window = (max(depth // 10, 1), depth - 1)
    lo, hi = window
    if not (1 <= lo < hi <= depth - 1):
        raise HyperparameterError(f"window must satisfy 1 <= lo < hi <= depth - 1, got {window}")
    run = theory.run(depth, K0=K0, **run_kw)
    ls = np.unique(np.geomspace(lo, hi, points).astype(int))
    chi = np.asarray(run.chi, dtype=float)[ls]
    if chi.ndim != 1:
        raise HyperparameterError("j_growth classifies one trajectory: pass scalar "
                                  "hyperparameters")
    p = ls * np.log(chi)
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise NumericalError("J does not grow on the window (χ^l <= 1 somewhere): there is no "
                             "growth law to classify; see theory.run(...).chi")
    beta, se = _linfit(np.log(ls.astype(float)), np.log(p))
    kind = ("power law" if beta < POWER_LAW_BETA else
            "stretched exponential" if beta < EXPONENTIAL_BETA else "exponential")
    return GrowthLaw(kind, beta, se, float(p[-1]), (int(ls[0]), int(ls[-1])))


def exponent_documents() -> dict[str, str]:
    """The ``derivations/criticality_exponents.md`` document: analytic exponents of the standard
    blocks (generated by ``python -m critsym.derivations``)."""
    from ..derive import derive
    from ..ops import mlp_block

    rows = []
    for act in ("tanh", "erf"):
        ex = analytic_exponents(derive(mlp_block(act)), sigma_b=0)
        co = ex.coefficients
        rows.append(f"| vanilla {act}, σ_b = 0 | {ex.universality} | $a = {sp.latex(co['a'])}$, "
                    f"$b = {sp.latex(co['b'])}$ | $p = {sp.latex(ex.p)}$ | "
                    f"ordered {ex.nu['ordered']}, chaotic {ex.nu['chaotic']} |")
    for act in ("relu", "tanh", "erf", "gelu"):
        ex = analytic_exponents(derive(mlp_block(act, layernorm="pre", residual_mu=1)))
        co = ex.coefficients
        rows.append(f"| LN-pre + μ = 1, {act} | {ex.universality} | "
                    f"$A = {sp.latex(co['A'])}$, $B = {sp.latex(co['B'])}$ | "
                    f"$p = {sp.latex(ex.p)}$ | — |")
    text = (
        "# Critical exponents of the standard blocks\n\n"
        "Generated by `python -m critsym.derivations` from `critsym.analytic_exponents`; do not "
        "edit by hand.\n\n"
        "$\\mathcal{J}^{l_0,l} \\sim (l/l_0)^p$ at criticality; K* = 0 class: "
        "$F = K + aK^2 + \\dots$, $\\chi_J = 1 + bK + \\dots$ at the critical σ_w, $p = -b/a$; "
        "no-fixed-point class: $F(K) - K \\to B$, $K(\\chi_J - 1) \\to A$, $p = A/B$. "
        "ν is the exponent of $\\xi_J \\propto |\\delta|^{-\\nu}$, δ = χ_J(0) − 1.\n\n"
        "| block | class | expansion | exponent | ν |\n|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )
    return {"criticality_exponents.md": text}
