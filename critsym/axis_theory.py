"""Deprecated aliases: a multi-axis block's theory is a :class:`~critsym.theory.Theory` like any
other (its state record holds K, O_T and O_C); use ``Theory`` and ``RunResult``.

``AxisTheory`` is ``Theory`` and ``AxisRunResult`` is ``RunResult`` (the same classes), kept so
that existing imports keep working; ``O_T`` and ``O_C`` live in :mod:`critsym.symbols`.
"""

from __future__ import annotations

from .symbols import O_C, O_T
from .theory import RunResult as AxisRunResult
from .theory import Theory as AxisTheory

__all__ = ["O_C", "O_T", "AxisRunResult", "AxisTheory"]
