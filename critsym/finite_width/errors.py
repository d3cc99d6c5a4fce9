"""Errors specific to the finite depth-to-width laws."""

from __future__ import annotations

from critsym.errors import CritsymError, HyperparameterError


class NotApplicableError(CritsymError, ValueError):
    """The log-Gaussian depth-to-width law does not apply to this architecture.

    Raised (never silently extrapolated) for non-homogeneous activations, LayerNorm, biases,
    depth-scaled residual branches (where the infinite-width Gaussian limit holds instead) and any
    architecture critsym does not recognise.  ``reason`` says which of these it was.
    """

    def __init__(self, message: str, reason: str = "unsupported") -> None:
        super().__init__(message)
        self.reason = reason


def check_width_depth(depth: int, width: int) -> None:
    """Validate a (depth, width) pair: positive integers, width >= 2."""
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_int_like(value):
            raise HyperparameterError(f"{name} must be a positive integer, got {value!r}")
        if int(value) < 1:
            raise HyperparameterError(f"{name} must be a positive integer, got {value!r}")
    if int(width) < 2:
        raise HyperparameterError(f"width must be >= 2 for a finite-width law, got {width!r}")


def _is_int_like(value: object) -> bool:
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False
