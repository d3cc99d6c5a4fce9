r"""Closed-form rules for Gaussian expectations.

Every integrand is first standardised (z = sqrt(V) x, x ~ N(0, 1)), normalised (relu(a) ->
a Heaviside(a), sin/cos -> complex exponentials, Heaviside(c x) -> H(x) or 1 - H(x) by the sign
of c, powers of H collapsed) and expanded into terms.  A term is a product
x^n · e^{c2 x^2 + c1 x + c0} · H(x)^{0|1} · δ(x)^{0|1} · Π_i erf(a_i x) and is integrated by:

* Gaussian moments:      E[x^n e^{c2 x²+c1 x}] = p^{-1/2} e^{c1²/(2p)} E_{N(c1/p,1/p)}[y^n],
                         p = 1 - 2 c2
* rescaling:             e^{c2 x²} is absorbed into the measure (x -> y/√p) when c1 = 0
* half moments:          E[x^n H(x)] = 2^{n/2} Γ((n+1)/2) / (2√π)
* Dirac:                 E[δ(x) g(x)] = g(0)/√(2π)
* parity:                a product of odd functions of odd total degree has mean 0
* arc-sine:              E[erf(a x) erf(b x)] = (2/π) asin(2ab / √((1+2a²)(1+2b²)))
* Stein's lemma:         E[x g(x)] = E[g'(x)]  (reduces powers of x multiplying erf's)

Bivariate (correlation ρ): E[x y] = ρ, E[A(x) y] = ρ E[x A(x)], the arc-cosine kernels of
degree 0 and 1 for H(x)H(y), xH(x)·yH(y), xH(x)·H(y), the arc-sine kernel for erf·erf, and
E[e^{αx+βy}] = e^{(α²+β²+2αβρ)/2}.  Anything else returns ``None`` (numeric quadrature).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from ..activations import ReLU
from ..budget import check_budget

_MAX_DEPTH = 40


def _sign(c: sp.Expr) -> int | None:
    if c.is_positive:
        return 1
    if c.is_negative:
        return -1
    return None


def _linear_coeff(arg: sp.Expr, x: sp.Symbol) -> sp.Expr | None:
    """c if arg == c*x with c free of x, else None."""
    c = sp.cancel(arg / x)
    if c.has(x):
        return None
    return c


def _normalize(g: sp.Expr, x: sp.Symbol) -> sp.Expr | None:
    g = g.replace(lambda e: isinstance(e, ReLU), lambda e: e.args[0] * sp.Heaviside(e.args[0]))
    g = g.replace(
        lambda e: isinstance(e, (sp.sin, sp.cos, sp.sinh, sp.cosh)) and e.has(x),
        lambda e: e.rewrite(sp.exp),
    )
    bad = False

    def fix_h(e):
        nonlocal bad
        a = e.args[0]
        if not a.has(x):
            return e
        c = _linear_coeff(a, x)
        s = None if c is None else _sign(c)
        if s is None:
            bad = True
            return e
        return sp.Heaviside(x) if s > 0 else 1 - sp.Heaviside(x)

    def fix_d(e):
        nonlocal bad
        a = e.args[0]
        if not a.has(x) or len(e.args) > 1:
            if len(e.args) > 1:
                bad = True
            return e
        c = _linear_coeff(a, x)
        s = None if c is None else _sign(c)
        if s is None:
            bad = True
            return e
        return sp.DiracDelta(x) / (s * c)

    g = g.replace(lambda e: isinstance(e, sp.Heaviside), fix_h)
    g = g.replace(lambda e: isinstance(e, sp.DiracDelta), fix_d)
    if bad:
        return None
    g = sp.expand(g)
    g = g.replace(
        lambda e: e.is_Pow and isinstance(e.base, sp.Heaviside) and e.exp.is_Integer
        and e.exp > 0,
        lambda e: e.base,
    )
    return g


def _gauss_moment(n: int, c2: sp.Expr, c1: sp.Expr) -> sp.Expr:
    p = 1 - 2 * c2
    m = c1 / p
    s2 = 1 / p
    mom = sp.S.Zero
    for k in range(n // 2 + 1):
        mom += sp.binomial(n, 2 * k) * m ** (n - 2 * k) * s2**k * sp.factorial2(2 * k - 1)
    return sp.exp(c1**2 / (2 * p)) / sp.sqrt(p) * mom


def _std_moment(n: int) -> sp.Expr:
    return sp.S.Zero if n % 2 else sp.factorial2(n - 1)


def _half_moment(n: int) -> sp.Expr:
    return 2 ** sp.Rational(n, 2) * sp.gamma(sp.Rational(n + 1, 2)) / (2 * sp.sqrt(sp.pi))


def _E1(g: sp.Expr, x: sp.Symbol, depth: int = 0) -> sp.Expr | None:
    check_budget()
    if depth > _MAX_DEPTH:
        return None
    g = _normalize(g, x)
    if g is None:
        return None
    return _sum_terms(g, lambda t: _term(t, x, depth))


def _sum_terms(expr: sp.Expr, term) -> sp.Expr | None:
    """Σ term(t) over the terms t of the sum ``expr``; None as soon as one term has no closed
    form."""
    total = sp.S.Zero
    for t in sp.Add.make_args(expr):
        r = term(t)
        if r is None:
            return None
        total += r
    return total


def _term(t: sp.Expr, x: sp.Symbol, depth: int) -> sp.Expr | None:
    c, rest = t.as_independent(x, as_Add=False)
    if rest == 1:
        return c
    n = 0
    expo = sp.S.Zero
    has_h = False
    n_delta = 0
    erfs: list[sp.Expr] = []
    for f in sp.Mul.make_args(rest):
        if isinstance(f, sp.exp):
            expo += f.args[0]
            continue
        b, e = f.as_base_exp()
        if not (e.is_Integer and e > 0):
            return None
        e = int(e)
        if b == x:
            n += e
        elif isinstance(b, sp.Heaviside) and b.args[0] == x:
            has_h = True
        elif isinstance(b, sp.DiracDelta) and b.args[0] == x:
            n_delta += e
        elif isinstance(b, sp.erf):
            a = _linear_coeff(b.args[0], x)
            if a is None:
                return None
            erfs += [a] * e
        else:
            return None
    c0 = sp.S.Zero
    c1 = sp.S.Zero
    c2 = sp.S.Zero
    if expo != 0:
        try:
            poly = sp.Poly(sp.expand(expo), x)
        except sp.PolynomialError:
            return None
        if poly.degree() > 2:
            return None
        coeffs = poly.all_coeffs()[::-1] + [0, 0, 0]
        c0, c1, c2 = coeffs[0], coeffs[1], coeffs[2]
    pref = c * sp.exp(c0)
    if n_delta:
        if n_delta > 1 or has_h:
            return None
        at0 = (x**n * sp.exp(c1 * x + c2 * x**2) * sp.Mul(*[sp.erf(a * x) for a in erfs])).subs(
            x, 0
        )
        return pref * at0 / sp.sqrt(2 * sp.pi)
    if c1 != 0:
        if has_h or erfs:
            return None
        return pref * _gauss_moment(n, c2, c1)
    if c2 != 0:
        p = 1 - 2 * c2
        if p.is_positive is False:
            return None
        sq = sp.sqrt(p)
        inner = x**n / sq**n * sp.Mul(*[sp.erf(a * x / sq) for a in erfs])
        if has_h:
            inner *= sp.Heaviside(x)
        r = _E1(inner, x, depth + 1)
        return None if r is None else pref * r / sq
    if not erfs:
        return pref * (_half_moment(n) if has_h else _std_moment(n))
    if has_h:
        return None
    if (n + len(erfs)) % 2 == 1:
        return sp.S.Zero
    if n == 0:
        if len(erfs) == 2:
            a, b = erfs
            return pref * 2 / sp.pi * sp.asin(
                2 * a * b / sp.sqrt((1 + 2 * a**2) * (1 + 2 * b**2))
            )
        return None
    # Stein: E[x * (x^{n-1} prod erf)] = E[d/dx (x^{n-1} prod erf)]
    h = x ** (n - 1) * sp.Mul(*[sp.erf(a * x) for a in erfs])
    r = _E1(sp.diff(h, x), x, depth + 1)
    return None if r is None else pref * r


_Z = sp.Symbol("_z_key", real=True)


_SD = sp.Symbol("_sd_key", positive=True)  # sqrt(V): a variance's square root is >= 0


def closed_form_1d(f: sp.Expr, z: sp.Symbol, V: sp.Expr) -> sp.Expr | None:
    """Closed form of E_{z~N(0,V)}[f(z)], or None when the rules do not apply.

    Memoised on the integrand alone (in terms of a generic standard deviation), so the same
    expectation at different variances (two inputs, several layers) is derived once."""
    r = _closed_form_1d(f.xreplace({z: _Z}))
    if r is None:
        return None
    small = _size_at_most(V, _TIDY_MAX_NODES) or _size_at_most(r, _TIDY_MAX_RESULT)
    r = r.xreplace({_SD: sp.sqrt(V)})
    # Re-expanding a closed form of several terms after substituting a large variance (a deep
    # block's nested statistics) multiplies it out term by term and costs minutes; the memoised
    # form is already tidy.
    return _tidy(r) if small else r


_TIDY_MAX_NODES = 40
_TIDY_MAX_RESULT = 8


def _size_at_most(expr: sp.Expr, limit: int) -> bool:
    """Whether ``expr`` has at most ``limit`` nodes (stops counting at the limit)."""
    for n, _ in enumerate(sp.preorder_traversal(expr), start=1):
        if n > limit:
            return False
    return True


@lru_cache(maxsize=4096)
def _closed_form_1d(f: sp.Expr) -> sp.Expr | None:
    x = sp.Dummy("x", real=True)
    r = _E1(f.xreplace({_Z: _SD * x}), x)
    return None if r is None else _tidy(r)


def _tidy(r: sp.Expr) -> sp.Expr:
    r = sp.expand(r)
    if r.has(sp.I):
        r = sp.expand_complex(r)
        if r.has(sp.I):
            return sp.simplify(r)
    return r


def _split(t: sp.Expr, x: sp.Symbol, y: sp.Symbol):
    c, rest = t.as_independent(x, y, as_Add=False)
    a = sp.S.One
    b = sp.S.One
    for f in sp.Mul.make_args(rest):
        hx, hy = f.has(x), f.has(y)
        if hx and hy:
            return None
        if hx:
            a *= f
        else:
            b *= f
    return c, a, b


def _E2_term(A: sp.Expr, B: sp.Expr, x: sp.Symbol, y: sp.Symbol, rho: sp.Expr):
    if A == 1:
        return _E1(B.subs(y, x), x)
    if B == 1:
        return _E1(A, x)
    if B == y:
        return None if (r := _E1(x * A, x)) is None else rho * r
    if A == x:
        return None if (r := _E1(x * B.subs(y, x), x)) is None else rho * r
    H = sp.Heaviside
    theta = sp.acos(rho)
    table = {
        (H(x), H(y)): (sp.pi - theta) / (2 * sp.pi),
        (x * H(x), y * H(y)): (sp.sqrt(1 - rho**2) + (sp.pi - theta) * rho) / (2 * sp.pi),
        (x * H(x), H(y)): (1 + rho) / (2 * sp.sqrt(2 * sp.pi)),
        (H(x), y * H(y)): (1 + rho) / (2 * sp.sqrt(2 * sp.pi)),
    }
    if (A, B) in table:
        return table[(A, B)]
    if isinstance(A, sp.erf) and isinstance(B, sp.erf):
        a = _linear_coeff(A.args[0], x)
        b = _linear_coeff(B.args[0], y)
        if a is None or b is None:
            return None
        return 2 / sp.pi * sp.asin(2 * a * b * rho / sp.sqrt((1 + 2 * a**2) * (1 + 2 * b**2)))
    if isinstance(A, sp.exp) and isinstance(B, sp.exp):
        al = _linear_coeff(A.args[0], x)
        be = _linear_coeff(B.args[0], y)
        if al is None or be is None:
            return None
        return sp.exp((al**2 + be**2 + 2 * al * be * rho) / 2)
    return None


_U, _V = sp.Symbol("_u_key", real=True), sp.Symbol("_v_key", real=True)


def closed_form_2d(
    f: sp.Expr, u: sp.Symbol, v: sp.Symbol, V1: sp.Expr, V2: sp.Expr, C: sp.Expr
) -> sp.Expr | None:
    """Closed form of E over (u,v) ~ N(0, [[V1, C], [C, V2]]) of f(u, v), or None (memoised)."""
    return _closed_form_2d(f.xreplace({u: _U, v: _V}), V1, V2, C)


@lru_cache(maxsize=4096)
def _closed_form_2d(f: sp.Expr, V1: sp.Expr, V2: sp.Expr, C: sp.Expr) -> sp.Expr | None:
    u, v = _U, _V
    x = sp.Dummy("x", real=True)
    y = sp.Dummy("y", real=True)
    s1, s2 = sp.Dummy("s1", positive=True), sp.Dummy("s2", positive=True)
    rho = sp.Dummy("rho", real=True)
    g = f.subs({u: s1 * x, v: s2 * y}, simultaneous=True)
    gx = _normalize(g, x)
    if gx is None:
        return None
    gxy = _normalize(gx, y)
    if gxy is None:
        return None

    def term(t):
        s = _split(t, x, y)
        if s is None:
            return None
        c, A, B = s
        r = _E2_term(A, B, x, y, rho)
        return None if r is None else c * r

    total = _sum_terms(gxy, term)
    if total is None:
        return None
    return _tidy(total.subs({s1: sp.sqrt(V1), s2: sp.sqrt(V2)}).subs(
        rho, C / (sp.sqrt(V1) * sp.sqrt(V2))))
