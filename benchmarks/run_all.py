"""Every performance goal in one run: prints each benchmark and a summary table, and writes
``benchmarks/results/*.json`` and ``benchmarks/results/summary.md``.

    PYTHONPATH=. python benchmarks/run_all.py [--quick] [--threads 1]

Rows (each a ratio against a baseline measured in the same run):

* start-up: ``import critsym`` and ``critsym --help`` vs ``import numpy, sympy`` (goal <= 2x);
* closed forms: the erf grid vs a numpy loop (goal <= 2x), one layer at one point vs numpy scalars;
* the tanh correlation map (32x32 and 256x256, depth 10) vs a hand-written 64x64-node
  Gauss–Hermite recursion (goal <= 2x, c^10 within 1e-10 of a 200-node rule);
* a nested GELU expectation and a GELU Mixer's J with per-block σ's vs nested scipy quadrature
  of one such expectation (goal <= 1x);
* APJN vs a plain torch forward of the same network (goal <= 3x at one probe);
* conv ResNet and MLP-Mixer APJN vs a plain torch forward of the same models;
* the APJN (and cross-token overlap k) of a ViT-like transformer stack vs its plain forward;
* ``simulate`` throughput and peak memory vs the random-number floor (``bench_simulate.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, Row, _fmt  # noqa: E402


def _table(rows: list[Row]) -> str:
    lines = ["| benchmark | case | critsym | baseline | baseline time | ratio | goal | note |",
             "|---|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        goal = "" if r.goal is None else f"<= {r.goal:g}x ({'met' if r.passed else 'not met'})"
        note = getattr(r, "note", "").replace("|", "/")
        lines.append(f"| {r.bench} | {r.case} | {_fmt(r.critsym_s)} | {r.baseline} | "
                     f"{_fmt(r.baseline_s)} | {r.ratio:.2f}x | {goal} | {note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="smaller cases (no 256x256 c-map)")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(a.threads))
    import bench_cmap
    import bench_erf_grid
    import bench_import
    import bench_nested

    t0 = time.perf_counter()
    rows: list[Row] = []
    rows += bench_import.main(["--repeats", "3" if a.quick else "7"])
    rows += bench_erf_grid.main([])
    rows += bench_cmap.main(["--quick"] if a.quick else [])
    rows += bench_nested.main(["--quick"] if a.quick else [])
    import torch

    torch.set_num_threads(a.threads)
    import bench_apjn
    import bench_architectures
    import bench_transformer

    rows += bench_apjn.main(["--threads", str(a.threads)] + (["--quick"] if a.quick else []))
    rows += bench_architectures.main(["--quick"] if a.quick else [])
    rows += bench_transformer.main(["--threads", str(a.threads)] + (["--quick"] if a.quick
                                                                     else []))
    sim = HERE / "bench_simulate.py"
    sim_out = ""
    if sim.exists():
        args = [sys.executable, str(sim), "--threads", str(a.threads)]
        if a.quick:
            args += ["--width", "1024", "--depth", "20"]
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        sim_out = subprocess.run(args, capture_output=True, text=True, env=env).stdout
        print(sim_out)
        (RESULTS / "simulate.txt").write_text(sim_out)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = (f"platform: {platform.platform()}, python {platform.python_version()}, "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {a.threads}, "
            f"{'quick' if a.quick else 'full'} run, {when}")
    table = _table(rows)
    print("\n== summary\n" + head + "\n\n" + table)
    RESULTS.mkdir(exist_ok=True)
    text = f"{head}\n\n{table}\n"
    if sim_out:
        text += f"\n`bench_simulate.py`:\n\n```text\n{sim_out.strip()}\n```\n"
    (RESULTS / "summary.md").write_text(text)
    print(f"\nwrote {RESULTS / 'summary.md'} ({time.perf_counter() - t0:.0f} s)")
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
