r"""``critsym sweep phase``: a measured phase diagram of real networks on the command line.

    critsym sweep phase --arch mlp --act tanh --out phase_mc.png
    critsym sweep phase --arch mixer --mu 0.5 --width 64 --backend local --out mixer_mc.png
    critsym sweep phase --arch mlp --width 1024 --n 64 --points 32 24 --backend ray \
        --address auto --shards 4 --table phase.parquet --out phase_1024.png

:func:`add_parser` adds the ``sweep`` command to a ``critsym`` subparsers object;
:func:`main` runs it on its own (``python -m critsym.sweep.cli phase ...``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import CritsymError

FIGURE_TYPES = (".png", ".pdf", ".svg")


def _phase_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=["mlp", "mixer"], default="mlp",
                   help="an MLP block (act → Linear) or an MLP-Mixer block (default: mlp)")
    p.add_argument("--act", default=None, help="activation (default tanh; gelu for mixer)")
    p.add_argument("--mu", type=float, default=None,
                   help="residual strength (mixer: required, e.g. 0.5; mlp: omit for none)")
    p.add_argument("--width", type=int, default=256,
                   help="hidden width (mixer: channels; default 256, mixer 64)")
    p.add_argument("--tokens", type=int, default=None, help="mixer tokens (default: width)")
    p.add_argument("--n", type=int, default=16, help="networks per grid point (default 16)")
    p.add_argument("--sw", type=float, nargs=2, default=(0.6, 2.2), metavar=("MIN", "MAX"))
    p.add_argument("--sb", type=float, nargs=2, default=(0.0, 1.0), metavar=("MIN", "MAX"))
    p.add_argument("--points", type=int, nargs=2, default=(13, 9), metavar=("NW", "NB"),
                   help="grid points along sigma_w and sigma_b (default 13 9)")
    p.add_argument("--burn-in", type=int, default=8,
                   help="blocks before the measured one (default 8)")
    p.add_argument("--probes", type=int, default=4, help="Hutchinson probes per network")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["serial", "local", "ray"], default="local")
    p.add_argument("--workers", type=int, default=None,
                   help="local processes / local Ray CPUs (default: all cores)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto)")
    p.add_argument("--shards", type=int, default=1, help="network ranges per grid point")
    p.add_argument("--table", default=None, help="also write the table (.parquet or .csv)")
    p.add_argument("--out", default="phase_measured.png", help="figure (.png, .pdf, .svg)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``sweep`` (with its subcommand ``phase``) to a ``critsym`` subparsers object; the
    parsed namespace's ``run`` runs it and returns the exit status."""
    p = subparsers.add_parser("sweep", help="Monte Carlo sweeps of real networks",
                              description="Monte Carlo sweeps of real networks.")
    sub = p.add_subparsers(dest="sweep_command", metavar="COMMAND")
    sub.required = True
    ph = sub.add_parser("phase", help="measured phase diagram (one-block APJN over sigma_w x "
                        "sigma_b) with the theory's critical line",
                        description=__doc__.split("\n\n")[0])
    _phase_arguments(ph)
    ph.set_defaults(run=run_phase)
    p.set_defaults(run=lambda args: p.error("choose a sweep command, e.g. 'phase'"))
    return p


def _arch(a):
    from ..ops import mlp_block
    from ..ops.mixer import mixer_block
    from ..symbols import mu

    if a.arch == "mixer":
        if a.mu is None:
            raise CritsymError("--arch mixer needs --mu (e.g. 0.5 or 1)")
        width = a.width if a.width != 256 else 64
        tokens = a.tokens or width
        return (mixer_block(a.act or "gelu", mu=mu), {"mu": a.mu}, width, (tokens, width),
                f"MLP-Mixer block ({a.act or 'gelu'}, mu = {a.mu:g}), {tokens} tokens x "
                f"{width} channels")
    block = mlp_block(a.act or "tanh", residual_mu=None if a.mu is None else mu)
    name = f"MLP block ({a.act or 'tanh'}{'' if a.mu is None else f', mu = {a.mu:g}'})"
    return block, ({} if a.mu is None else {"mu": a.mu}), a.width, None, \
        f"{name}, width {a.width}"


def run_phase(a: argparse.Namespace) -> int:
    import numpy as np

    from .phase import measure_phase
    from .table import check_output

    out = Path(a.out)
    if out.suffix.lower() not in FIGURE_TYPES:
        raise CritsymError(f"--out must end in one of {FIGURE_TYPES}, got {a.out!r}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise CritsymError(f"the folder of --out {a.out!r} does not exist; create it first")
    if a.table is not None:
        check_output(a.table)
    if min(a.points) < 2:
        raise CritsymError("--points needs at least 2 values along each axis")
    arch, fixed, width, in_shape, name = _arch(a)
    sw = np.linspace(*a.sw, a.points[0])
    sb = np.linspace(*a.sb, a.points[1])
    t0 = time.perf_counter()
    ph = measure_phase(arch, sw, sb, width=width, n_nets=a.n, burn_in=a.burn_in,
                       in_shape=in_shape, dtype=a.dtype, n_probes=a.probes, seed=a.seed,
                       backend=a.backend, shards=a.shards, workers=a.workers,
                       address=a.address, progress=False if a.quiet else None,
                       out_table=a.table, **fixed)
    ph.plot(out=out, title=f"{name}: {a.n} networks per point, measured after "
                           f"{a.burn_in} blocks")
    secs = time.perf_counter() - t0
    cl = ph.critical_line()
    print(f"{len(sw)}x{len(sb)} grid, width {width}, {a.n} networks per point, "
          f"{len(ph.study.plan.shards)} shards on {a.backend}: {secs:.1f} s")
    print("sigma_b    theory sigma_w*   measured chi at the grid sigma_w nearest to it")
    for k, b in enumerate(sb):
        s = cl.y[k]
        if np.isfinite(s):
            j = int(np.argmin(np.abs(sw - s)))
            print(f"{b:7.3f}    {s:10.4f}        {ph.chi[k, j]:.4f} ± {ph.chi_se[k, j]:.4f} "
                  f"(sigma_w = {sw[j]:.3f})")
    print(f"figure: {out}" + (f", table: {a.table}" if a.table else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``critsym sweep ...`` on its own."""
    p = argparse.ArgumentParser(prog="critsym")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "sweep":
        argv = ["sweep", *argv]
    a = p.parse_args(argv)
    try:
        return a.run(a)
    except CritsymError as e:
        print(f"critsym sweep: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
