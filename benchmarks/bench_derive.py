"""derive + latex time per standard block (goal: < 0.5 s each, cold cache).

    python benchmarks/bench_derive.py
"""

import time

from critsym import derive
from critsym.derivations import STANDARD_ACTS, STANDARD_BLOCKS
from critsym.derive import _fold
from critsym.ops import mlp_block

BUDGET = 0.5


def main() -> None:
    worst = 0.0
    print(f"{'block':18s} {'act':5s} {'derive+latex [s]':>17s} {'/ budget':>9s}")
    for block, kw in STANDARD_BLOCKS.items():
        for act in STANDARD_ACTS:
            _fold.cache_clear()
            arch = mlp_block(act, **kw)
            t = time.perf_counter()
            th = derive(arch)
            th.latex()
            dt = time.perf_counter() - t
            worst = max(worst, dt)
            print(f"{block:18s} {act:5s} {dt:17.3f} {dt / BUDGET:9.2f}")
    print(f"worst {worst:.3f} s = {worst / BUDGET:.2f} x the 0.5 s budget")


if __name__ == "__main__":
    main()
