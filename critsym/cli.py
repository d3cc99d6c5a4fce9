"""Command line: ``critsym demo``, ``critsym derive ARCH.json``.

Thin layer over the public API (argparse only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import derive, from_json, mlp_block
from .errors import CritsymError


def _demo(args) -> int:
    import numpy as np

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    from .criticality import critical_point, phase_grid, plot_phase, summary

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


def _derive(args) -> int:
    arch = from_json(Path(args.arch).read_text())
    th = derive(arch)
    print(th.latex() if args.latex else f"F = {th.F}\nchi_J = {th.chi}\nG = {th.G}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="critsym", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="print derivations and numbers, write figures")
    d.add_argument("--out", default="critsym-demo", help="directory for figures")
    d.set_defaults(fn=_demo)
    r = sub.add_parser("derive", help="derive the recursions of an architecture JSON file")
    r.add_argument("arch", help="JSON file written by Op.to_json()")
    r.add_argument("--latex", action="store_true")
    r.set_defaults(fn=_derive)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except CritsymError as e:
        print(f"critsym: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
