"""The exception hierarchy of critsym: every error a user can trigger derives from
:class:`CritsymError`, and each message says what was wrong and what to do."""

from __future__ import annotations


class CritsymError(Exception):
    """Root of all critsym errors."""


class ArchitectureError(CritsymError, TypeError):
    """A malformed composition of layer operators (e.g. an object that is not an operator)."""


class UnknownActivationError(CritsymError, ValueError):
    """An activation name that is not in the registry."""


class HyperparameterError(CritsymError, ValueError):
    """A missing, mis-shaped, negative or non-finite hyperparameter."""


class DerivationError(CritsymError):
    """The symbolic fold cannot proceed (non-differentiable expression, non-Gaussian output)."""


class NumericalError(CritsymError, ArithmeticError):
    """A numeric evaluation produced non-finite values or a recursion diverged."""


class NoFixedPointError(CritsymError):
    """No finite fixed point of the variance map exists where one was required."""


class NoCriticalPointError(CritsymError):
    """No critical point (chi_J* = 1) exists in the requested hyperparameter range."""


class SimulationError(CritsymError):
    """Bad input to, or a failure of, a Monte Carlo simulation."""


class UnsupportedModuleError(CritsymError, TypeError):
    """A torch module that critsym cannot map to an architecture."""


class ShapingError(CritsymError):
    """No activation transform satisfies the requested kernel-shaping targets."""


class CritsymWarning(UserWarning):
    """A result that is correct but was obtained differently than asked (e.g. numerically after
    a symbolic time budget ran out), or that needs the user's attention."""


def warn_if_nan(reason: str, *values: object) -> None:
    """Warn (:class:`CritsymWarning`) when a returned value holds NaN: a NaN result always comes
    with a reason, never silently."""
    import warnings

    import numpy as np

    for v in values:
        if v is not None and np.any(np.isnan(np.asarray(v, dtype=float))):
            warnings.warn(reason, CritsymWarning, stacklevel=3)
            return
