"""``critsym derive ARCH.json [--latex]``: the recursions of an architecture file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CritsymError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "derive", help="derive the recursions of an architecture JSON file",
        description="Print the variance map F, the APJN multiplier chi_J and the covariance map "
        "G of the block in ARCH.json (written by Op.to_json()), or their LaTeX.")
    p.add_argument("arch", help="JSON file written by Op.to_json()")
    p.add_argument("--latex", action="store_true", help="print the LaTeX align environment")
    p.set_defaults(run=run)
    return p


def read_text(path: str) -> str:
    """The text of ``path``, or a CritsymError that says why it cannot be read."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise CritsymError(f"architecture file {path!r} not found; write one with "
                           "arch.to_json()") from None
    except IsADirectoryError:
        raise CritsymError(f"{path!r} is a directory; give an architecture JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CritsymError(f"cannot read architecture file {path!r}: {e}") from None


def run(args) -> int:
    from .. import derive, from_json

    theory = derive(from_json(read_text(args.arch)))
    if args.latex:
        print(theory.latex())
    else:
        print(f"F = {theory.F}\nchi_J = {theory.chi}\nG = {theory.G}")
    return 0
