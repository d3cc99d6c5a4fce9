"""Streaming Monte Carlo: simulate() throughput and peak memory against the random-number floor.

    PYTHONPATH=. python benchmarks/bench_simulate.py [--width 2048] [--depth 50] [--nets 2]
                                                     [--device cpu|cuda] [--threads 1]

All in one run, float32, a tanh MLP block at (σ_w, σ_b) = (1.0, 0.1), 4 Gaussian probes:

1. the floor: ``Tensor.normal_`` into one preallocated (width, width) float32 tensor, repeated
   for as many normals as the simulation draws (n_nets · depth · (width² + width));
2. ``critsym.simulate`` (streaming: each block drawn when the pass reaches it, in place);
3. the eager path of the same networks (every block built first, ``critsym.build``, then the
   forward pass and one forward-mode pass): what simulate did before streaming.

Throughput is normals drawn per second (the weights dominate the work); memory is the peak
resident set above the process's level before the run (CPU, each measurement in its own
subprocess, after a small warm-up run) or ``torch.cuda.max_memory_allocated`` (CUDA), beside
one layer's weights and the whole network's.  Timings are the best of ``--repeats`` (the
machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CASES = ("floor", "simulate", "eager")


def _peak_bytes(dev) -> int:
    import resource

    import torch

    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(case: str, width: int, depth: int, nets: int, device: str, threads: int,
            repeats: int) -> dict:
    """One case in this process: best time and the peak memory above the level before it."""
    import torch

    import critsym as cs
    from critsym.torch.estimators import jvp_norms_folded, make_probes

    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    arch, hp = cs.mlp_block("tanh"), dict(sigma_w=1.0, sigma_b=0.1)
    n_normals = nets * depth * (width * width + width)

    def floor():
        buf = torch.empty(width, width, dtype=torch.float32, device=dev)
        g = torch.Generator(device=dev).manual_seed(0)
        for _ in range(nets * depth):
            buf.normal_(generator=g)
            buf[0].normal_(generator=g)  # the bias: width more

    def streaming():
        cs.simulate(arch, width, depth, n_nets=nets, n_probes=4, dtype=torch.float32,
                    device=dev, c0=0.5, progress=False, **hp)

    def eager():
        net = cs.build(arch, width, depth, n_nets=nets, seed=0, dtype=torch.float32,
                       device=dev, **hp)
        x = torch.randn(nets, 2, width, dtype=torch.float32, device=dev)
        with torch.no_grad():
            net.trajectory(x)
        V = make_probes("gaussian", 4, x[:, 0].shape, dtype=torch.float32, device=dev)
        jvp_norms_folded(lambda z: net.trajectory(z), x[:, 0], V)

    f = {"floor": floor, "simulate": streaming, "eager": eager}[case]
    w0, d0, width, depth = width, depth, 64, 2  # warm-up: load every code path at small size
    f()
    width, depth = w0, d0
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = 0 if dev.type == "cuda" else _peak_bytes(dev)
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        f()
        sync()
        times.append(time.perf_counter() - t)
    return dict(case=case, seconds=min(times), normals=n_normals,
                peak=max(0, _peak_bytes(dev) - before))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--nets", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--case", choices=CASES, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    args = dict(width=a.width, depth=a.depth, nets=a.nets, device=a.device, threads=a.threads,
                repeats=a.repeats)
    if a.case:  # one measurement in this (fresh) process
        print(json.dumps(measure(a.case, **args)))
        return 0
    rows = {}
    for case in CASES:  # a fresh process each, so that peak memory is the case's own
        out = subprocess.run([sys.executable, __file__, "--case", case, *sum(
            ([f"--{k}", str(v)] for k, v in args.items()), [])], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        rows[case] = json.loads(out.stdout.strip().splitlines()[-1])
    layer = a.nets * (a.width * a.width + a.width) * 4
    fl = rows["floor"]
    print(f"width {a.width}, depth {a.depth}, {a.nets} networks, float32, {a.device}, "
          f"{a.threads} thread(s); {fl['normals'] / 1e6:.0f} M normals per run")
    print(f"one layer's weights: {layer / 2**20:.1f} MiB; the whole network's: "
          f"{a.depth * layer / 2**20:.0f} MiB")
    print(f"{'':28} {'seconds':>8} {'M normals/s':>12} {'vs floor':>9} {'peak MiB':>9} "
          f"{'layers':>7}")
    for case, label in (("floor", "floor: normal_ in place"),
                        ("simulate", "simulate (streaming)"),
                        ("eager", "eager build + passes")):
        r = rows[case]
        rate = r["normals"] / r["seconds"]
        print(f"{label:28} {r['seconds']:8.2f} {rate / 1e6:12.1f} "
              f"{fl['seconds'] / r['seconds']:9.2f} {r['peak'] / 2**20:9.1f} "
              f"{r['peak'] / layer:7.1f}")
    print("(vs floor: floor time / case time, 1 = at the random-number floor; layers: peak "
          "memory in units of one layer's weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
