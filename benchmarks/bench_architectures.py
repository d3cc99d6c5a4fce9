"""Monte Carlo APJN of a conv ResNet and an MLP-Mixer vs a plain forward pass of the same model.

    PYTHONPATH=. python benchmarks/bench_architectures.py [--quick]

For each model (n_nets stacked networks, depth blocks) it times, in the same run and on the same
device: (a) a plain forward pass of one input per network, (b) the forward-mode APJN J^{0,l} for
every l with P Gaussian probes (one torch.func.jvp with the probes folded into the batch).
Printed: seconds (best of 3) and the ratio (b)/(a); the ideal for forward mode is ≈ 2–3 × P
(one primal + P tangents, each a forward pass).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import critsym as cs
from critsym.torch.estimators import jvp_norms_folded, make_probes
from critsym.torch.shaped import block_trajectory, build_shaped


def best(f, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def bench(name, arch, shape, depth, n_nets, P, **hp):
    net = build_shaped(arch, shape, depth, n_nets=n_nets, seed=0, **hp)
    x = torch.randn(n_nets, *shape, dtype=torch.float64)

    def traj(h):
        return block_trajectory(net, h)

    def forward():
        with torch.no_grad():
            traj(x.unsqueeze(1))

    V = make_probes("gaussian", P, x.shape, dtype=torch.float64)

    def apjn():
        jvp_norms_folded(traj, x, V)

    forward()
    apjn()
    tf, ta = best(forward), best(apjn)
    print(f"{name:<28} shape={shape} depth={depth} nets={n_nets} probes={P}: "
          f"forward {tf * 1e3:8.1f} ms   APJN {ta * 1e3:8.1f} ms   ratio {ta / tf:6.2f} "
          f"(= {ta / tf / P:.2f} per probe)")
    return ta / tf


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if a.quick:
        img, tok, depth, nets, P = (8, 8, 32), (32, 32), 4, 4, 4
    else:
        img, tok, depth, nets, P = (16, 16, 64), (64, 64), 8, 8, 8
    hp = dict(sigma_w=math.sqrt(2), sigma_b=0.0, mu=1.0)
    print(f"device cpu, torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench("conv ResNet block", cs.resnet_block(), img, depth, nets, P, **hp)
    bench("MLP-Mixer block", cs.mixer_block(), tok, depth, nets, P, **hp)


if __name__ == "__main__":
    main()
