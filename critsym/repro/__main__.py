"""``python -m critsym.repro <name> --out fig.png [--quick] [--seed N]``."""

from __future__ import annotations

import argparse
import sys

from . import REPROS, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m critsym.repro", description=__doc__)
    p.add_argument("name", choices=sorted(REPROS))
    p.add_argument("--out", default=None, help="PNG file to write")
    p.add_argument("--quick", action="store_true", help="small widths/depths (CI settings)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    run(a.name, quick=a.quick, out=a.out or f"{a.name}.png", seed=a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
