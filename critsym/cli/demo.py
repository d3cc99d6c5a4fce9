"""``critsym demo --out DIR``: derivations, their numbers, a criticality report, a phase diagram."""

from __future__ import annotations

import argparse

from .paths import check_output_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="print derivations and numbers, write a phase diagram",
        description="Derive two blocks (plain and LaTeX), print their recursions at one point, "
        "a criticality report and the tanh critical line, and write a 256 x 256 phase diagram "
        "to DIR/phase_tanh.png.")
    p.add_argument("--out", default="critsym-demo", metavar="DIR",
                   help="directory for figures (created if missing; default critsym-demo)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    out = check_output_dir(args.out)
    import numpy as np

    from .. import derive, mlp_block
    from ..criticality import critical_point, phase_grid, plot_phase, summary

    print("critsym demo: mean-field theory of deep networks at initialization\n")
    for title, arch, hp in [
        ("tanh MLP block", mlp_block("tanh"), dict(sigma_w=1.3, sigma_b=0.2)),
        ("LN-pre + residual (mu = 1) relu block", mlp_block("relu", "pre", 1),
         dict(sigma_w=1.5, sigma_b=0.3)),
    ]:
        th = derive(arch)
        print(f"== {title}: {arch!r}")
        print(f"   K^(l+1) = {th.F}")
        print(f"   chi_J^l = {th.chi}")
        print("   LaTeX:")
        print("   " + th.latex().replace("\n", "\n   "))
        r = th.run(50, K0=1.0, c0=0.5, **hp)
        print(f"   at {hp}, K^0 = 1:")
        for layer in (0, 1, 10, 50):
            print(f"     l = {layer:2d}: K^l = {r.K[layer]:.6f}  J^(0,l) = {r.J[layer]:.6f}  "
                  f"c^l = {r.c[layer]:.6f}")
        print()

    th = derive(mlp_block("tanh"))
    print("== criticality report, tanh MLP at sigma_w = 1.3, sigma_b = 0.2")
    print(summary(th, sigma_w=1.3, sigma_b=0.2)["text"])
    sb = np.array([0.0, 0.2, 0.5, 1.0])
    sw = critical_point(th, "sigma_w", bracket=(0.5, 3.0), sigma_b=sb)
    print("\ncritical line of the tanh MLP (chi_J* = 1):")
    for b, w in zip(sb, sw):
        print(f"  sigma_b = {b:.2f}:  sigma_w* = {w:.8f}")
    grid = phase_grid(th, "sigma_w", np.linspace(0.1, 3.0, 256), "sigma_b",
                      np.linspace(0.0, 1.5, 256))
    png = out / "phase_tanh.png"
    plot_phase(th, grid, str(png))
    print(f"\nwrote {png} (log chi_J* over a 256 x 256 (sigma_w, sigma_b) grid, critical line)")
    return 0
