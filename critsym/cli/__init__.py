"""The ``critsym`` command: one entry point with subcommands.

``critsym derive ARCH.json``, ``critsym demo``, ``critsym phase``, ``critsym repro NAME``,
``critsym derivations [DIR]``, ``critsym sweep phase``; ``python -m critsym`` is the same command.

A subcommand is a module listed in :data:`SUBCOMMANDS` that provides
``add_parser(subparsers) -> argparse.ArgumentParser``; the parser it adds sets ``run`` (a
function of the parsed arguments returning the exit status) with ``set_defaults(run=...)``
(``func=`` is accepted too).
Subcommand modules import numerical libraries (torch, matplotlib, sympy-heavy parts of
critsym) only inside ``run``, so ``critsym --help`` stays fast.

Every :class:`critsym.errors.CritsymError` ends the command with a one-line message on stderr
and exit status 2 (the status argparse uses for bad arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand modules, in the order ``critsym --help`` lists them
SUBCOMMANDS: list[str] = [
    "critsym.cli.derive",
    "critsym.cli.demo",
    "critsym.cli.phase",
    "critsym.cli.repro",
    "critsym.cli.derivations",
    "critsym.sweep.cli",
]

#: exit status of a command that ended with a CritsymError (same as an argparse usage error)
ERROR_STATUS = 2


def build_parser(prog: str = "critsym") -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per module in :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Mean-field criticality of deep networks at initialization: derive the "
        "recursions of an architecture, draw phase diagrams, run the reproductions.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def error_line(err: BaseException) -> str:
    """``critsym: error: <message>`` on one line (newlines of the message become spaces)."""
    return "critsym: error: " + " ".join(str(err).split())


def _run(args: argparse.Namespace) -> int:
    from ..errors import CritsymError

    run = getattr(args, "run", None) or args.func  # ``func``: the argparse docs' convention
    try:
        return int(run(args) or 0)
    except CritsymError as err:
        print(error_line(err), file=sys.stderr)
        return ERROR_STATUS


def main(argv: Sequence[str] | None = None, prog: str = "critsym") -> int:
    """Run one ``critsym`` command line; returns the exit status."""
    return _run(build_parser(prog).parse_args(argv))


def run_subcommand(name: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """Run subcommand ``name`` as its own program ``prog`` (the ``python -m`` entry points)."""
    subparsers = argparse.ArgumentParser(prog=prog).add_subparsers()
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_parser(subparsers)
        if name in subparsers.choices:
            break
    parser = subparsers.choices[name]
    parser.prog = prog
    return _run(parser.parse_args(sys.argv[1:] if argv is None else argv))
