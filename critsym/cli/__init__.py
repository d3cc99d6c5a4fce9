"""The ``critsym`` command: one entry point with subcommands.

``critsym derive ARCH.json``, ``critsym demo``, ``critsym phase``, ``critsym repro NAME``,
``critsym derivations [DIR]``, ``critsym report MODULE:FACTORY``, ``critsym sweep phase``;
``python -m critsym`` is the same command.

A subcommand is a module listed in :data:`SUBCOMMANDS` that provides
``add_parser(subparsers) -> argparse.ArgumentParser``; the parser it adds sets ``run`` (a
function of the parsed arguments returning the exit status) with ``set_defaults(run=...)``
(``func=`` is accepted too).
Subcommand modules import numerical libraries (torch, matplotlib, sympy-heavy parts of
critsym) only inside ``run``, so ``critsym --help`` stays fast; a module that cannot (it
belongs to a package that imports torch) is listed in :data:`LAZY_SUBCOMMANDS` instead, and
imported only when its command is chosen.

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
    "critsym.cli.report",
    "critsym.sweep.cli",
]

#: subcommands whose modules import heavy libraries when imported: name -> (module, help).
#: ``critsym --help`` lists them from here; the module is imported only when the command runs.
LAZY_SUBCOMMANDS: dict[str, tuple[str, str]] = {}

#: exit status of a command that ended with a CritsymError (same as an argparse usage error)
ERROR_STATUS = 2


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on a command line (its first argument that is not an option)."""
    return next((a for a in argv or () if not a.startswith("-")), None)


def build_parser(prog: str = "critsym", argv: Sequence[str] | None = None
                 ) -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per module in :data:`SUBCOMMANDS`, and one per
    entry of :data:`LAZY_SUBCOMMANDS` (its real parser only when ``argv`` chooses it)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Mean-field criticality of deep networks at initialization: derive the "
        "recursions of an architecture, draw phase diagrams, run the reproductions and "
        "Monte Carlo sweeps.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    chosen = _chosen(argv)
    for name, (module, help_text) in LAZY_SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module).add_parser(subparsers)
        else:  # listed by --help; never parsed (choosing it loads the real parser)
            subparsers.add_parser(name, help=help_text)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    return _run(build_parser(prog, argv).parse_args(argv))


def run_subcommand(name: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """Run subcommand ``name`` as its own program ``prog`` (the ``python -m`` entry points)."""
    subparsers = argparse.ArgumentParser(prog=prog).add_subparsers()
    modules = [LAZY_SUBCOMMANDS[name][0]] if name in LAZY_SUBCOMMANDS else SUBCOMMANDS
    for module in modules:
        importlib.import_module(module).add_parser(subparsers)
        if name in subparsers.choices:
            break
    parser = subparsers.choices[name]
    parser.prog = prog
    return _run(parser.parse_args(sys.argv[1:] if argv is None else argv))
