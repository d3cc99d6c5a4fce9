"""Benchmark of the APJN estimators.  Prints ratios measured in the same run.

    PYTHONPATH=. python benchmarks/bench_apjn.py [--device cpu|cuda] [--quick]

1. APJN J^{0,l} for all l (forward mode, one Gaussian probe; dual tensors of
   torch.autograd.forward_ad, and torch.func.jvp for comparison) vs a plain torch forward pass
   of the same network (``to_torch_model``: an ``nn.Sequential`` of ``nn.Linear`` and ``nn.Tanh``
   with the same weights law, batch of one) — target ≤ 3×; critsym's own stacked forward is
   printed beside it;
2. the same vs torch.autograd.functional.jacobian of the full partial Jacobian ∂h^L/∂h^0 at
   width 1024, depth 20 (which gives J^{0,L} only) — target ≥ 50× faster;
3. networks·layers per second: the estimator alone on pre-built stacked networks, and the whole
   simulate() (weight generation included).
Timings are the minimum over repeats (the machine may be shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import critsym as cs
from critsym.torch.estimators import jvp_norms_folded, make_probes

try:
    from _common import Row, save
except ImportError:  # run from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import Row, save


def best(f, repeats=7, sync=None):
    f()
    ts = []
    for _ in range(repeats):
        if sync:
            sync()
        t = time.perf_counter()
        f()
        if sync:
            sync()
        ts.append(time.perf_counter() - t)
    return min(ts)


def bench_ratios(arch, hp, N, L, dt, dev, sync, quick):
    """Forward pass vs APJN (all l) vs the full Jacobian, one network."""
    net = cs.build(arch, N, L, n_nets=1, seed=0, dtype=dt, device=dev, **hp)
    plain = cs.to_torch_model(arch, N, L, seed=0, dtype=dt, **hp).to(dev)
    h = torch.randn(1, N, dtype=dt, device=dev)
    with torch.no_grad():
        t_stacked = best(lambda: net(h.unsqueeze(1)), sync=sync)
        t_fwd = best(lambda: plain(h), sync=sync)
    V1 = make_probes("gaussian", 1, h.shape, dtype=dt, device=dev)
    V8 = make_probes("gaussian", 8, h.shape, dtype=dt, device=dev)
    t_jvp1 = best(lambda: jvp_norms_folded(net.trajectory, h, V1), sync=sync)
    t_jvp8 = best(lambda: jvp_norms_folded(net.trajectory, h, V8), sync=sync)
    t_func = best(lambda: jvp_norms_folded(net.trajectory, h, V1, engine="func"), sync=sync)

    def full_jac(vectorize):
        return torch.autograd.functional.jacobian(lambda z: net(z.view(1, 1, N)), h[0],
                                                  vectorize=vectorize)

    reps = 1 if quick else 2
    t_jac = best(lambda: full_jac(False), repeats=reps, sync=sync)
    t_jacv = best(lambda: full_jac(True), repeats=reps, sync=sync)
    print(f"\n[{dt}] width {N}, depth {L}, one network")
    print(f"  plain torch forward (nn.Linear)     {t_fwd * 1e3:9.3f} ms")
    print(f"  critsym stacked forward             {t_stacked * 1e3:9.3f} ms  "
          f"= {t_stacked / t_fwd:5.2f}x plain forward")
    print(f"  APJN all l>=0, 1 probe (jvp)        {t_jvp1 * 1e3:9.3f} ms  "
          f"= {t_jvp1 / t_fwd:5.2f}x forward   (target <= 3x)")
    print(f"  same through torch.func.jvp         {t_func * 1e3:9.3f} ms  "
          f"= {t_func / t_fwd:5.2f}x forward")
    print(f"  APJN all l>=0, 8 probes (jvp)       {t_jvp8 * 1e3:9.3f} ms  "
          f"= {t_jvp8 / t_fwd:5.2f}x forward")
    print(f"  autograd.functional.jacobian        {t_jac * 1e3:9.1f} ms  "
          f"-> APJN(1 probe) {t_jac / t_jvp1:7.1f}x faster (target >= 50x); "
          f"8 probes {t_jac / t_jvp8:6.1f}x")
    print(f"  jacobian(vectorize=True)            {t_jacv * 1e3:9.1f} ms  "
          f"-> APJN(1 probe) {t_jacv / t_jvp1:7.1f}x faster")
    base = "plain torch forward"
    return [Row("apjn", f"[{dt}] APJN all l, 1 probe, width {N}, depth {L}", t_jvp1, base,
                t_fwd, 3.0),
            Row("apjn", f"[{dt}] APJN all l, 8 probes", t_jvp8, base, t_fwd),
            Row("apjn", f"[{dt}] critsym stacked forward", t_stacked, base, t_fwd)]


def bench_throughput(arch, hp, w, n, L, dev, sync):
    """Networks·layers per second: estimator alone, and simulate() with weight generation."""
    net = cs.build(arch, w, L, n_nets=n, seed=1, dtype=torch.float32, device=dev, **hp)
    h = torch.randn(n, w, device=dev)
    V = make_probes("gaussian", 4, h.shape, device=dev, dtype=torch.float32)
    t_est = best(lambda: jvp_norms_folded(net.trajectory, h, V), repeats=3, sync=sync)
    net = None  # free the weights before simulate() builds its own
    t_sim = best(lambda: cs.simulate(arch, w, L, n_nets=n, n_probes=4, c0=None,
                                     dtype=torch.float32, device=dev, **hp),
                 repeats=1, sync=sync)
    print(f"  width {w:5d}, {n:4d} nets: estimator {n * L / t_est:12.0f}/s   "
          f"simulate() incl. weight generation {n * L / t_sim:10.0f}/s")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 gives stable timings on a shared machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = cs.torch.default_device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}")
    arch = cs.mlp_block("tanh")
    hp = dict(sigma_w=1.3, sigma_b=0.2)
    rows = []
    for dt in (torch.float32, torch.float64):
        rows += bench_ratios(arch, hp, args.width, args.depth, dt, dev, sync, args.quick)
    print("\nthroughput (networks·layers / s), float32, 4 probes, tanh MLP:")
    sizes = ((256, 64), (1024, 8)) if args.quick else ((256, 256), (1024, 32))
    for w, n in sizes:
        bench_throughput(arch, hp, w, n, args.depth, dev, sync)
    print("\n== APJN vs a plain torch forward pass")
    for r in rows:
        print(r.line())
    save("apjn", rows)
    return rows


if __name__ == "__main__":
    main()
