"""Monte Carlo APJN of a conv ResNet and an MLP-Mixer vs a plain torch forward of the same models.

    PYTHONPATH=. python benchmarks/bench_architectures.py [--quick]

For each model (n_nets networks, depth blocks) it times, in the same run and on the same device:
(a) a plain torch forward pass of one input through each of the n_nets networks, built as
standard modules by ``to_torch_model`` (``nn.Conv2d`` / ``nn.Linear`` / ``nn.GroupNorm`` /
``nn.LayerNorm`` stacks, channels-first for the convolutions), (b) critsym's own stacked forward
of the same networks, (c) the forward-mode APJN J^{0,l} for every l with P Gaussian probes (one
torch.func.jvp with the probes folded into the batch).  Printed: seconds (best of 3) and the
ratios to (a); the ideal for forward mode is ≈ 2–3 × P (one primal + P tangents, each a forward
pass).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import critsym as cs
from critsym.torch.estimators import jvp_norms_folded, make_probes
from critsym.torch.feature_maps import block_trajectory, build_maps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, save  # noqa: E402


def best(f, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def plain_forward(arch, shape, depth, n_nets, conv, **hp):
    """A plain torch forward of one input through each of ``n_nets`` standard-module models."""
    width = shape[-1]
    models = [cs.to_torch_model(arch, width, depth, seed=k, **hp) for k in range(n_nets)]
    # critsym's shapes are channels-last; torch convolutions take (N, C, *spatial)
    x = torch.randn(1, shape[-1], *shape[:-1]) if conv else torch.randn(1, *shape)
    x = x.to(torch.float64)

    def forward():
        with torch.no_grad():
            for m in models:
                m(x)

    return forward


def bench(name, arch, shape, depth, n_nets, P, conv=False, **hp):
    net = build_maps(arch, shape, depth, n_nets=n_nets, seed=0, **hp)
    x = torch.randn(n_nets, *shape, dtype=torch.float64)
    plain = plain_forward(arch, shape, depth, n_nets, conv, **hp)

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
    plain()
    tp, tf, ta = best(plain), best(forward), best(apjn)
    print(f"{name:<28} shape={shape} depth={depth} nets={n_nets} probes={P}: "
          f"plain torch forward {tp * 1e3:8.1f} ms   critsym forward {tf * 1e3:8.1f} ms   "
          f"APJN {ta * 1e3:8.1f} ms   APJN / plain {ta / tp:6.2f} (= {ta / tp / P:.2f} per probe)")
    case = f"{name} {shape}, depth {depth}, {n_nets} nets"
    return [Row("architectures", f"{case}: APJN, {P} probes", ta, "plain torch forward", tp,
                None, f"{ta / tp / P:.2f}x per probe"),
            Row("architectures", f"{case}: critsym stacked forward", tf, "plain torch forward",
                tp)]


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
    rows = bench("conv ResNet block", cs.resnet_block(), img, depth, nets, P, conv=True, **hp)
    rows += bench("MLP-Mixer block", cs.mixer_block(), tok, depth, nets, P, **hp)
    save("architectures", rows)
    return rows


if __name__ == "__main__":
    main()
