"""Two-input correlation map of a tanh MLP against a hand-written Gauss–Hermite recursion.

    PYTHONPATH=. python benchmarks/bench_cmap.py [--quick]

Grid of (σ_w, σ_b) ∈ [0.8, 1.6] × [0, 0.5], K^0 = 1, c^0 = 0.5, depth 10.  critsym:
``theory.run(10, c0=0.5, sigma_w=SW, sigma_b=SB)`` (which also computes χ_J and J).  The floor:
a numpy recursion with a 64-node (1-D, K) and 64×64-node (2-D, K_12) Gauss–Hermite rule,
chunked over grid points.  Accuracy: c^10 against the same recursion with a 200-node rule (the
whole 32×32 grid; 256 random points of the 256×256 grid).  critsym is timed cold (a fresh
process: derive, compile and the verified tables included, import excluded) and warm (best of
repeats in this process, tables built).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
from _common import Row, best, save

DEPTH, C0 = 10, 0.5
ROOT = Path(__file__).resolve().parents[1]


def grid(n: int):
    return np.meshgrid(np.linspace(0.8, 1.6, n), np.linspace(0.0, 0.5, n))


def gauss_hermite_cmap(sw, sb, nodes: int, depth: int = DEPTH, chunk: int = 1024):
    """c^depth by the hand-written Gauss–Hermite recursion (flat arrays of σ_w, σ_b)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    sw, sb = np.ravel(sw), np.ravel(sb)
    out = np.empty(sw.size)
    for lo in range(0, sw.size, chunk):
        s2, b2 = sw[lo:lo + chunk, None] ** 2, sb[lo:lo + chunk, None] ** 2
        K = np.ones((s2.shape[0], 1))
        c = np.full((s2.shape[0], 1), C0)
        for _ in range(depth):
            s = np.sqrt(K)                                             # (m, 1)
            u = np.tanh(s * x)                                         # (m, n)
            inner = np.tanh(s[..., None] * (c[..., None] * x[:, None]
                                             + np.sqrt(1 - c * c)[..., None] * x)) @ w
            K12 = s2 * ((u * inner) @ w)[:, None] + b2
            Kn = s2 * ((u * u) @ w)[:, None] + b2
            c, K = np.clip(K12 / Kn, -1, 1), Kn
        out[lo:lo + chunk] = c[:, 0]
    return out


COLD = """
import time, numpy as np, critsym as cs
SW, SB = np.meshgrid(np.linspace(0.8, 1.6, {n}), np.linspace(0.0, 0.5, {n}))
t = time.perf_counter()
cs.derive(cs.mlp_block("tanh")).run({depth}, c0={c0}, sigma_w=SW, sigma_b=SB)
print(time.perf_counter() - t)
"""


def cold_time(n: int) -> float:
    out = subprocess.run([sys.executable, "-c", COLD.format(n=n, depth=DEPTH, c0=C0)],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    import critsym as cs

    th = cs.derive(cs.mlp_block("tanh"))
    rows = []
    for n in (32,) if quick else (32, 256):
        SW, SB = grid(n)
        t_cold = cold_time(n)
        res = th.run(DEPTH, c0=C0, sigma_w=SW, sigma_b=SB)
        reps = 3 if n <= 64 else 1
        t_warm = best(lambda SW=SW, SB=SB: th.run(DEPTH, c0=C0, sigma_w=SW, sigma_b=SB), reps)
        t_floor = best(lambda SW=SW, SB=SB: gauss_hermite_cmap(SW, SB, 64), reps)
        floor_c = gauss_hermite_cmap(SW, SB, 64)
        if n <= 32:
            sel = np.arange(n * n)
        else:
            sel = np.random.default_rng(0).choice(n * n, 256, replace=False)
        ref = gauss_hermite_cmap(SW.ravel()[sel], SB.ravel()[sel], 200)
        err = float(np.max(np.abs(res.c[-1].ravel()[sel] - ref)))
        err_floor = float(np.max(np.abs(floor_c[sel] - ref)))
        where = "all points" if n <= 32 else "256 sampled points"
        note = (f"max deviation of c^10 from a 200-node rule: {err:.1e} critsym, "
                f"{err_floor:.1e} the 64-node floor ({where})")
        tracemalloc.start()
        th.run(DEPTH, c0=C0, sigma_w=SW, sigma_b=SB)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        note += f"; peak traced memory {peak / 2**20:.0f} MiB"
        rows.append(Row("cmap", f"tanh c-map {n}x{n}, depth 10, warm", t_warm,
                        "64x64 Gauss-Hermite", t_floor, 2.0, note))
        rows.append(Row("cmap", f"tanh c-map {n}x{n}, depth 10, cold (fresh process)", t_cold,
                        "64x64 Gauss-Hermite", t_floor, None,
                        "includes derive, compile and building the verified tables"))
    return rows


def main(argv=None) -> list[Row]:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    rows = run(a.quick)
    print("== correlation map (tanh MLP) vs the hand-written Gauss-Hermite floor")
    for r in rows:
        print(r.line())
    save("cmap", rows)
    return rows


if __name__ == "__main__":
    main()
