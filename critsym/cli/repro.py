"""``critsym repro NAME --out fig.png [--quick] [--seed N]``: one reproduction of the paper."""

from __future__ import annotations

import argparse

from .paths import check_output_file


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..repro import REPROS

    p = subparsers.add_parser(
        "repro", help="reproduce one of the partial-Jacobian paper's claims",
        description="Run one reproduction: write its figure and print the numbers it asserts.")
    p.add_argument("name", choices=sorted(REPROS))
    p.add_argument("--out", default=None, help="figure file to write (default NAME.png)")
    p.add_argument("--quick", action="store_true", help="small widths/depths (CI settings)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..repro import run as run_repro

    out = str(check_output_file(args.out or f"{args.name}.png"))
    run_repro(args.name, quick=args.quick, out=out, seed=args.seed)
    return 0
