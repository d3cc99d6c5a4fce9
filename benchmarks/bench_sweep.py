"""critsym.sweep: shards per second and scaling, serial vs local processes vs local Ray, in one run.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--workers 2] [--points 8] [--width 256]
                                                  [--no-ray] [--nodes 100 --cores 32]

1. Per-worker start-up, in a fresh interpreter: ``import critsym`` (torch included) and the
   first ``simulate`` call beyond a warm one (lazy imports, kernel set-up);
2. one sweep (a tanh MLP over ``--points`` σ_w values, ``--shards`` shards per point) run
   serially in this process (warm), with ``--workers`` local processes (spawn, start-up
   included), and as Ray tasks on a local Ray with ``--workers`` CPUs (``ray.init`` timed
   separately); shards/s, speed-up over serial and scaling efficiency = speed-up / workers;
   the tables must be identical (checked);
3. the data volume per row of the table (Parquet and CSV) and per shard result (pickle);
4. a plan for a cluster sweep (``--nodes`` × ``--cores``): a σ_w × σ_b phase diagram at three
   widths with many networks, its shard count, data volume and expected time, extrapolated
   from this run's serial cost per network-block (∝ width², the weights dominate) and
   start-up.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time

STARTUP = r"""
import time, json
t0 = time.perf_counter()
import torch, critsym as cs
t1 = time.perf_counter()
a = cs.mlp_block("tanh")
cs.simulate(a, 64, 2, n_nets=2, sigma_w=1.0, sigma_b=0.1, progress=False)
t2 = time.perf_counter()
cs.simulate(a, 64, 2, n_nets=2, sigma_w=1.0, sigma_b=0.1, progress=False)
t3 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, first=(t2 - t1) - (t3 - t2), warm=t3 - t2)))
"""


def startup(repeats: int) -> dict:
    import json

    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True,
                             env=env, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: min(r[k] for r in runs) for k in runs[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--depth", type=int, default=9)
    p.add_argument("--nets", type=int, default=16)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--cores", type=int, default=32)
    p.add_argument("--plan-grid", type=int, nargs=2, default=(96, 64))
    p.add_argument("--plan-widths", type=int, nargs="+", default=(512, 1024, 2048, 4096))
    p.add_argument("--plan-nets", type=int, default=128)
    p.add_argument("--plan-shards", type=int, default=8)
    a = p.parse_args(argv)

    import numpy as np
    import torch

    import critsym as cs

    torch.set_num_threads(1)
    st = startup(2)
    print(f"per-worker start-up (fresh interpreter, best of 2): imports {st['imports']:.2f} s, "
          f"first simulate {st['first']:.2f} s beyond a warm one ({st['warm']:.3f} s)")

    arch = cs.mlp_block("tanh")
    kw = dict(grid={"sigma_w": list(np.linspace(0.8, 1.6, a.points))}, sigma_b=0.2,
              widths=(a.width,), depth=a.depth, n_nets=a.nets, shards=a.shards, c0=None,
              n_probes=4, dtype="float32", progress=False)
    cs.sweep(arch, **dict(kw, grid={"sigma_w": [1.0]}, widths=(16,)))  # warm this process
    rows = []
    t = time.perf_counter()
    serial = cs.sweep(arch, backend="serial", **kw)
    rows.append(("serial (this process, warm)", 1, time.perf_counter() - t, 0.0))
    n_shards = len(serial.plan.shards)
    t = time.perf_counter()
    local = cs.sweep(arch, backend="local", workers=a.workers, **kw)
    rows.append((f"local, {a.workers} processes", a.workers, time.perf_counter() - t, 0.0))
    same = [local.table.equals(serial.table)]
    if not a.no_ray:
        try:
            import ray
        except ImportError:
            print("(Ray not installed: pip install 'critsym[ray]'; skipping the Ray row)")
        else:
            t = time.perf_counter()
            ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False)
            t_init = time.perf_counter() - t
            try:
                t = time.perf_counter()
                rs = cs.sweep(arch, backend="ray", **kw)
                rows.append((f"Ray, {a.workers} CPUs", a.workers, time.perf_counter() - t,
                             t_init))
                same.append(rs.table.equals(serial.table))
            finally:
                ray.shutdown()
    t_serial = rows[0][2]
    print(f"\nsweep: {a.points} points × width {a.width}, depth {a.depth}, {a.nets} networks "
          f"each, {a.shards} shards per point = {n_shards} shards "
          f"({os.cpu_count()} cores here)")
    boot = st["imports"] + st["first"]
    print(f"{'backend':30} {'seconds':>8} {'shards/s':>9} {'speed-up':>9} {'efficiency':>10} "
          f"{'w/o start-up':>12}")
    for name, w, secs, extra in rows:
        sp = t_serial / secs
        steady = t_serial / max(secs - (boot if w > 1 else 0.0), 1e-9) / w
        note = f"  (+ ray.init {extra:.1f} s)" if extra else ""
        print(f"{name:30} {secs:8.2f} {n_shards / secs:9.2f} {sp:9.2f} {sp / w:10.2f} "
              f"{steady:12.2f}{note}")
    print("(efficiency = speed-up / workers; w/o start-up: the parallel time less one "
          "worker start-up, as on a sweep long enough to amortize it)")
    print(f"tables identical across backends: {all(same)}")

    with tempfile.TemporaryDirectory() as d:
        pq = serial.save(os.path.join(d, "t.parquet")).stat().st_size
        csv = serial.save(os.path.join(d, "t.csv")).stat().st_size
    n_rows = len(serial.table)
    shard_bytes = np.mean([len(pickle.dumps(r)) for r in serial.results.values()]) / a.shards
    per_net_layer = shard_bytes / (a.nets / a.shards * (a.depth + 1))
    print(f"\ndata: {n_rows} rows; Parquet {pq / n_rows:.0f} B/row, CSV {csv / n_rows:.0f} B/row; "
          f"a shard's result pickles to {shard_bytes / 1e3:.1f} kB")

    # the plan: cost per network-block from the serial run, scaled by width^2
    per_block = t_serial / (a.points * a.nets * a.depth)  # seconds per network-block here
    gw, gb = a.plan_grid
    points = gw * gb
    blocks = points * a.plan_nets * a.depth * sum((w / a.width) ** 2 for w in a.plan_widths)
    cpu_s = blocks * per_block
    shards = points * len(a.plan_widths) * a.plan_shards
    workers = a.nodes * a.cores
    wall = cpu_s / workers + st["imports"] + st["first"]
    rows_out = points * len(a.plan_widths) * (a.depth + 1)
    print(f"\nplan: {gw}×{gb} σ_w×σ_b grid × widths {tuple(a.plan_widths)}, depth {a.depth}, "
          f"{a.plan_nets} networks per point, {a.plan_shards} shards per task")
    print(f"  shards: {shards}  ({shards / workers:.1f} per worker on {a.nodes} nodes × "
          f"{a.cores} cores)")
    print(f"  compute: {cpu_s / 3600:.1f} core-hours at this run's {per_block * 1e3:.2f} ms per "
          f"network-block of width {a.width} (∝ width²)")
    print(f"  expected wall time: {wall / 60:.1f} min on {workers} cores (start-up "
          f"{st['imports'] + st['first']:.1f} s per worker included; one core here: "
          f"{cpu_s / 3600:.1f} h)")
    print(f"  data: {rows_out} table rows ≈ {rows_out * pq / n_rows / 1e6:.1f} MB Parquet, "
          f"{rows_out * csv / n_rows / 1e6:.1f} MB CSV; shard results "
          f"{shards * a.plan_nets / a.plan_shards * (a.depth + 1) * per_net_layer / 1e6:.0f} "
          "MB in transit (pickled, per-network values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
