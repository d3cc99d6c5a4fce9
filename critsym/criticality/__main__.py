"""``python -m critsym.criticality --act tanh --out phase.png``: one phase diagram, one command."""

from .phase import main

raise SystemExit(main())
