"""``python -m critsym.criticality``: the same as ``critsym phase``."""

from ..cli import run_subcommand

raise SystemExit(run_subcommand("phase", prog="python -m critsym.criticality"))
