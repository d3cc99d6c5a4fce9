"""``critsym derivations [DIR]``: regenerate the derivation documents (default ``derivations/``)."""

from __future__ import annotations

import argparse

from .paths import check_output_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "derivations", help="regenerate the derivation documents (Markdown + LaTeX)",
        description="Write one Markdown and one LaTeX document per standard block into DIR, "
        "removing stale generated files.")
    p.add_argument("directory", nargs="?", default="derivations", metavar="DIR")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..derivations import write

    paths = write(check_output_dir(args.directory))
    print(f"wrote {len(paths)} files")
    return 0
