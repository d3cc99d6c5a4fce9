"""Nested Gaussian expectations: one value, and the theory of a GELU MLP-Mixer with per-block σ's.

    PYTHONPATH=. python benchmarks/bench_nested.py [--quick] [--former]

The expectation is m = E_{w~N(0,a)}[(E_{z~N(0,b)}[gelu(w + z)])²] at a = 0.0351234901988415,
b = 0.338426418324018 (the token-shared part of a Mixer block's GELU MLP: numeric σ's, as the
importer gives them).  Rows:

* one value, cold (compile and evaluate after :func:`~critsym.gaussian.numeric.clear_caches`):
  critsym's direct nested quadrature against the floor, a hand-written nested
  ``scipy.integrate.quad`` of the same expectation (relative tolerance 1e-10);
* the former path (a verified variance table of the nested integrand, built on first use:
  ``nested_tables("always")``), full run only;
* J^{0,2} through two GELU Mixer blocks, each with its own numeric σ's (``derive`` then
  ``run_blocks``, what ``ImportResult.J_theory()`` runs), against the same floor; with
  ``--former`` also through the first block on the former path (minutes).

Accuracy: every value is compared with the reference, the inner mean in closed form
(E_z[gelu(w + z)] = w Φ(w/s) + b φ(w/s)/s, s = √(1 + b)) and the outer one by
``scipy.integrate.quad`` at relative tolerance 1e-13; the Mixer's J with the former path's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import Row, save

A, B = 0.0351234901988415, 0.338426418324018
#: per-block (σ_w, σ_b) of the four Linears of two Mixer blocks (token MLP, then channel MLP),
#: as read from timm-style blocks (width 32, 8 tokens) at their default initialization
SIGMAS = [[(0.5817, 0.1874), (0.5648, 0.1614), (0.5740, 0.0994), (0.5774, 0.0497)],
          [(0.5602, 0.2220), (0.6063, 0.2073), (0.5814, 0.0998), (0.5749, 0.0489)]]


def reference() -> float:
    from scipy import integrate, stats

    s = np.sqrt(1 + B)

    def m(x):
        return x * stats.norm.cdf(x / s) + B * stats.norm.pdf(x / s) / s

    return integrate.quad(lambda x: m(x) ** 2 * stats.norm.pdf(x, scale=np.sqrt(A)),
                          -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]


def scipy_floor() -> float:
    """The same expectation by nested ``scipy.integrate.quad`` (relative tolerance 1e-10)."""
    from scipy import integrate, stats

    sa, sb = np.sqrt(A), np.sqrt(B)

    def gelu(x):
        return x * stats.norm.cdf(x)

    def inner(x):
        return integrate.quad(lambda y: gelu(x + y) * stats.norm.pdf(y, scale=sb),
                              -12 * sb, 12 * sb, epsabs=0, epsrel=1e-10)[0]

    return integrate.quad(lambda x: inner(x) ** 2 * stats.norm.pdf(x, scale=sa), -12 * sa,
                          12 * sa, epsabs=0, epsrel=1e-10)[0]


def one_value() -> float:
    import sympy as sp

    from critsym.activations import activation_expr
    from critsym.gaussian.expectation import GaussE
    from critsym.gaussian.numeric import compile_expr

    w, z = sp.symbols("w z", real=True)
    inner = GaussE(sp.Lambda(z, activation_expr("gelu", w + z)), sp.Float(B))
    return float(compile_expr(GaussE(sp.Lambda(w, inner**2), sp.Float(A)), ())())


def mixer_blocks(n: int):
    """``n`` GELU Mixer blocks (μ = 1, LayerNorm, token then channel MLP), numeric σ's each."""
    from critsym.ops.activation import Act
    from critsym.ops.axes import Transpose
    from critsym.ops.linear import Linear
    from critsym.ops.norm import LayerNorm
    from critsym.ops.residual import Residual

    blocks = []
    for (w1, b1), (w2, b2), (w3, b3), (w4, b4) in SIGMAS[:n]:
        tok = Residual(LayerNorm() >> Transpose() >> Linear(w1, b1) >> Act("gelu")
                       >> Linear(w2, b2) >> Transpose(), 1)
        ch = Residual(LayerNorm() >> Linear(w3, b3) >> Act("gelu") >> Linear(w4, b4), 1)
        blocks.append(tok >> ch)
    return blocks


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def run(quick: bool = False, former: bool = False) -> list[Row]:
    import critsym as cs
    from critsym.gaussian.numeric import clear_caches, nested_tables
    from critsym.interop.network import run_blocks

    ref = reference()
    floor_val, t_floor = timed(scipy_floor)
    floor_name = "scipy nested quad"
    clear_caches()
    val, t_one = timed(one_value)
    rows = [Row("nested", "one nested GELU expectation, cold (direct quadrature)", t_one,
                floor_name, t_floor, goal=1.0,
                note=f"rel. error {abs(val / ref - 1):.1e} critsym, "
                     f"{abs(floor_val / ref - 1):.1e} the scipy floor")]
    if not quick:
        clear_caches()
        with nested_tables("always"):
            old, t_old = timed(one_value)
        rows.append(Row("nested", "one nested GELU expectation, former table path", t_old,
                        floor_name, t_floor,
                        note=f"rel. error {abs(old / ref - 1):.1e}; "
                             f"{t_old / t_one:.0f}x the direct path"))
    blocks = mixer_blocks(2)
    theories, t_derive = timed(lambda: [cs.derive(b) for b in blocks])
    clear_caches()
    run2, t_run = timed(lambda: run_blocks([(th, {}) for th in theories], K0=1.0))
    rows.append(Row("nested", "GELU Mixer J^{0,2}, per-block σ's: run (theory derived)", t_run,
                    floor_name, t_floor, goal=1.0,
                    note=f"J = {run2.J[-1]:.10f}; derive {t_derive:.1f} s for both blocks"))
    again, t_again = timed(lambda: run_blocks([(th, {}) for th in theories], K0=1.0))
    rows.append(Row("nested", "GELU Mixer J^{0,2}: the same run again (values kept)", t_again,
                    floor_name, t_floor, note=f"J equal: {again.J[-1] == run2.J[-1]}"))
    if former:
        new1 = run_blocks([(theories[0], {})], K0=1.0)  # direct quadrature (before any table)
        th = cs.derive(blocks[0])
        clear_caches()
        with nested_tables("always"):
            old1, t_old1 = timed(lambda: run_blocks([(th, {})], K0=1.0))
        diff = max(float(np.max(np.abs(getattr(old1, k) - getattr(new1, k))[1:]
                             / np.abs(getattr(new1, k))[1:])) for k in ("K", "J", "O_T", "O_C"))
        rows.append(Row("nested", "GELU Mixer J^{0,1}: former table path", t_old1, floor_name,
                        t_floor, note=f"largest relative difference of K, O_T, O_C, J from the "
                                      f"direct path {diff:.1e}"))
    return rows


def main(argv=None) -> list[Row]:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="no former-path rows")
    p.add_argument("--former", action="store_true",
                   help="also the Mixer block on the former table path (minutes)")
    a = p.parse_args(argv)
    rows = run(a.quick, a.former)
    print("== nested Gaussian expectations")
    for r in rows:
        print(r.line())
    save("nested", rows)
    return rows


if __name__ == "__main__":
    main()
