"""``critsym phase --act tanh --out phase.png``: one phase diagram, one command."""

from __future__ import annotations

import argparse

from .paths import check_output_file


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "phase", help="phase diagram (sigma_w x sigma_b) of an MLP or MLP-Mixer block",
        description="Heatmap of log chi_J* (or xi_J, K*) over a sigma_w x sigma_b grid with the "
        "critical line chi_J* = 1; PNG or PDF by the extension of --out.")
    add_arguments(p)
    p.set_defaults(run=run, parser=p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--block", choices=["mlp", "mixer"], default="mlp")
    p.add_argument("--act", default=None, help="activation (default tanh; gelu for mixer)")
    p.add_argument("--layernorm", choices=["pre", "post"], default=None)
    p.add_argument("--mu", type=float, default=None, help="residual strength (omit: none)")
    p.add_argument("--quantity", choices=["log_chi", "xi", "K"], default="log_chi")
    p.add_argument("--sw", type=float, nargs=2, default=(0.1, 3.0), metavar=("MIN", "MAX"))
    p.add_argument("--sb", type=float, nargs=2, default=(0.0, 1.5), metavar=("MIN", "MAX"))
    p.add_argument("--n", type=int, default=256, help="grid points per axis")
    p.add_argument("--K0", type=float, default=1.0)
    p.add_argument("--out", default="phase.png", help="figure file (.png, .pdf, .svg)")


def run(args) -> int:
    if args.n < 2:
        args.parser.error(f"--n {args.n}: a grid needs at least 2 points per axis")
    if args.block == "mixer" and (args.mu is None or args.layernorm is not None):
        args.parser.error("--block mixer needs --mu (e.g. 0.5) and takes no --layernorm")
    check_output_file(args.out)

    import numpy as np

    from ..criticality import phase_grid, plot_phase
    from ..derive import derive
    from ..ops import mlp_block

    if args.block == "mixer":
        from ..ops.mixer import mixer_block

        theory = derive(mixer_block(args.act or "gelu", mu=args.mu))
    else:
        theory = derive(mlp_block(args.act or "tanh", layernorm=args.layernorm,
                                  residual_mu=args.mu))
    xs = np.linspace(*args.sw, args.n)
    ys = np.linspace(*args.sb, args.n)
    grid = phase_grid(theory, "sigma_w", xs, "sigma_b", ys, K0=args.K0)
    plot_phase(theory, grid, args.out, quantity=args.quantity, K0=args.K0)
    frac = {ph: float(np.mean(grid.phase == ph)) for ph in ("ordered", "critical", "chaotic")}
    print(f"wrote {args.out}: {theory.arch!r}; phase fractions {frac}")
    return 0
