"""Monte Carlo throughput of the log-norm simulation: networks x layers per second.

Compares explicit-weight torch networks (B stacked (n, n) weight draws + bmm per layer) with the
exact-in-law samplers (numpy binomial + chi-square / noncentral chi-square for the MLP and the
Balanced ResNet; the O(n) conditional-Gaussian step for the standard ResNet), on CPU and, when
available, on CUDA.  Usage: python benchmarks/bench_log_norm.py [--width 256] [--depth 64] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from critsym.finite_width import ModelSpec, simulate_log_norm  # noqa: E402


def rate(spec, depth, width, n_nets, method, device, repeats=2):
    simulate_log_norm(spec, depth, width, n_nets=max(2, n_nets // 8), method=method,
                      device=device, record=False)  # warm-up
    best = 0.0
    for r in range(repeats):
        s = simulate_log_norm(spec, depth, width, n_nets=n_nets, seed=r, method=method,
                              device=device, record=False)
        best = max(best, s.throughput)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--quick", action="store_true", help="small problem sizes")
    ap.add_argument("--models", default="mlp,balanced,resnet", help="comma-separated kinds")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated devices to try")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, d = args.width, args.depth
    devices = [d for d in args.devices.split(",")
               if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    print(f"log-norm Monte Carlo throughput (networks*layers/s), width {n}, depth {d}, "
          f"float64, {args.threads} CPU threads")
    if torch.cuda.is_available():
        print("GPU:", torch.cuda.get_device_name(0))
    print(f"{'model':>10} {'device':>6} {'torch (explicit W)':>20} {'exact-in-law':>16} "
          f"{'exact sampler':>14} {'ratio exact/torch':>18}")
    for kind in args.models.split(","):
        spec = ModelSpec(kind, 2.0)
        for dev in devices:
            nets_t = (64 if args.quick else 256) if dev == "cpu" else 4096
            nets_e = 4000 if args.quick else 40000
            t = rate(spec, d, n, nets_t, "torch", dev)
            exact_dev = dev if spec.kind == "resnet" else None
            e = rate(spec, d, n, nets_e, "exact", exact_dev)
            where = (dev if spec.kind == "resnet" else "numpy")
            print(f"{spec.kind:>10} {dev:>6} {t:>20.4g} {e:>16.4g} {where:>14} {e / t:>18.1f}")


if __name__ == "__main__":
    main()
