"""``python -m critsym``: the ``critsym`` command."""

from .cli import main

raise SystemExit(main(prog="python -m critsym"))
