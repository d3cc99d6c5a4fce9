r"""A wall-clock budget for symbolic work that can explode.

Closed forms of nested Gaussian expectations (a deep block's second activation sees a variance
built from the first one's statistics) can grow until a single fold takes minutes.  Symbolic
routines call :func:`check_budget` between steps; inside ``with time_budget(seconds):`` it raises
:class:`BudgetExceeded` once the time is spent, and the caller falls back to numerics (e.g.
:func:`critsym.derive` leaves the expectations to quadrature).  Outside any budget it does
nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


class BudgetExceeded(Exception):
    """The symbolic time budget is spent (always caught inside critsym, never shown to users)."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Within the block, :func:`check_budget` raises :class:`BudgetExceeded` after ``seconds``
    (nested budgets keep the earlier deadline)."""
    prev = getattr(_state, "deadline", None)
    deadline = time.monotonic() + float(seconds)
    _state.deadline = deadline if prev is None else min(prev, deadline)
    try:
        yield
    finally:
        _state.deadline = prev


def check_budget() -> None:
    """Raise :class:`BudgetExceeded` if the innermost :func:`time_budget` is spent."""
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded
