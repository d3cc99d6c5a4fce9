"""``python -m critsym.repro NAME``: the same as ``critsym repro NAME``."""

from ..cli import run_subcommand

raise SystemExit(run_subcommand("repro", prog="python -m critsym.repro"))
