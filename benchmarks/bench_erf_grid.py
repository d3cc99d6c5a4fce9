"""Closed-form recursions: the erf grid and one layer at one point, against hand-written numpy.

    PYTHONPATH=. python benchmarks/bench_erf_grid.py

* erf MLP (closed forms F = σ_w² (2/π) asin(2K/(1+2K)) + σ_b², χ_J = 4σ_w²/(π√(1+4K))) on a
  256×256 (σ_w, σ_b) grid, 50 layers: ``theory.run`` (K, χ_J, J for every layer) against a
  hand-written numpy loop filling the same three arrays.
  Beside it, the same 50 layers as plain ``variance_map`` and ``chi_J`` calls (no per-layer
  storage, no J): the cost of the compiled maps alone.
* one layer at one point (the per-call overhead): ``variance_map`` and ``run(1)`` of the erf
  and tanh MLPs against the same formula in numpy scalars (for tanh: the erf formula, the cost of
  evaluating one closed form).
"""

from __future__ import annotations

import timeit

import numpy as np
from _common import Row, best, save

DEPTH = 50


def floor_grid(sw, sb, depth=DEPTH):
    shape = sw.shape
    Ks, chis, Js = np.empty((depth + 1, *shape)), np.empty((depth, *shape)), \
        np.empty((depth + 1, *shape))
    K = Ks[0] = np.ones(shape)
    Js[0] = 1.0
    s2, b2 = sw * sw, sb * sb
    for layer in range(depth):
        chis[layer] = s2 * (4 / np.pi) / np.sqrt(1 + 4 * K)
        K = Ks[layer + 1] = s2 * (2 / np.pi) * np.arcsin(2 * K / (1 + 2 * K)) + b2
        np.multiply(Js[layer], chis[layer], out=Js[layer + 1])
    return Ks, chis, Js


_SW, _SB = np.float64(1.3), np.float64(0.2)


def floor_point(K=1.0, sw=_SW, sb=_SB):
    K = np.float64(K)
    return sw * sw * (2 / np.pi) * np.arcsin(2 * K / (1 + 2 * K)) + sb * sb


def _per_call(f, number=2000) -> float:
    return min(timeit.repeat(f, number=number, repeat=5)) / number


def run() -> list[Row]:
    import critsym as cs

    th = cs.derive(cs.mlp_block("erf"))
    SW, SB = np.meshgrid(np.linspace(0.5, 3.0, 256), np.linspace(0.0, 1.0, 256))
    res = th.run(DEPTH, K0=1.0, sigma_w=SW, sigma_b=SB)
    Ks, chis, Js = floor_grid(SW, SB)
    err = max(float(np.max(np.abs(res.K - Ks) / Ks)), float(np.max(np.abs(res.chi - chis) / chis)))
    t_cs = best(lambda: th.run(DEPTH, K0=1.0, sigma_w=SW, sigma_b=SB), 7)
    t_np = best(lambda: floor_grid(SW, SB), 7)
    hp2 = dict(sigma_w=SW, sigma_b=SB)

    def maps_only():
        K = np.ones(SW.shape)
        for _ in range(DEPTH):
            th.chi_J(K, **hp2)
            K = th.variance_map(K, **hp2)

    t_maps = best(maps_only, 7)
    rows = [Row("erf_grid", "erf MLP 256x256 grid, 50 layers (K, chi, J)", t_cs,
                "numpy loop", t_np, 2.0, f"max rel. difference {err:.1e}"),
            Row("erf_grid", "erf: variance_map + chi_J calls only, 50 layers", t_maps,
                "numpy loop", t_np, None, "the maps without run's bookkeeping")]
    hp = dict(sigma_w=1.3, sigma_b=0.2)
    t_pt = _per_call(floor_point)
    for act in ("erf", "tanh"):
        t = cs.derive(cs.mlp_block(act))
        t.run(2, K0=1.0, **hp)
        rows.append(Row("per_call", f"{act}: variance_map(1.0) at one point",
                        _per_call(lambda t=t: t.variance_map(1.0, **hp)), "numpy scalars", t_pt))
        rows.append(Row("per_call", f"{act}: run(1) at one point (K, chi, J)",
                        _per_call(lambda t=t: t.run(1, K0=1.0, **hp)), "numpy scalars", t_pt))
    return rows


def main(argv=None) -> list[Row]:
    rows = run()
    print("== closed-form grid and per-call overhead")
    for r in rows:
        print(r.line())
    save("erf_grid", rows)
    return rows


if __name__ == "__main__":
    main()
