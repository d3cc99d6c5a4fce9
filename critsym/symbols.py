"""The standard symbols of critsym and the conversion of user hyperparameters to sympy.

``K`` is the variance of one preactivation, K^l = E[(h_i^l)^2].  A multi-axis (rows × neurons)
state adds ``O_T`` and ``O_C``, the variances of its per-row and per-neuron components; two inputs
add the cross terms ``K_12``, ``O_T12`` and ``O_C12`` (their covariances).  Hyperparameters
named like the papers' (``sigma_w``, ``sigma_b``, ``mu``) carry the assumptions that make sympy
simplify square roots: sigma_w > 0, sigma_b >= 0, mu real.
"""

from __future__ import annotations

import math
import numbers

import sympy as sp

from .errors import HyperparameterError

K = sp.Symbol("K", positive=True)
K11 = sp.Symbol("K_11", positive=True)
K22 = sp.Symbol("K_22", positive=True)
K12 = sp.Symbol("K_12", real=True)
#: per-row (per-token) and per-neuron (per-channel) offset variances of a multi-axis state
O_T = sp.Symbol("O_T", nonnegative=True)
O_C = sp.Symbol("O_C", nonnegative=True)
#: their covariances between two inputs (the cross state of the correlation map)
O_T12 = sp.Symbol("O_T12", real=True)
O_C12 = sp.Symbol("O_C12", real=True)
#: the state of one input and the cross state of two inputs of equal law, K first
STATE = (K, O_T, O_C)
CROSS = (K12, O_T12, O_C12)
#: keyword name of each state and cross-state variable (``K12`` is the symbol ``K_12``)
STATE_NAMES = ("K", "O_T", "O_C")
CROSS_NAMES = ("K12", "O_T12", "O_C12")
sigma_w = sp.Symbol("sigma_w", positive=True)
sigma_b = sp.Symbol("sigma_b", nonnegative=True)
mu = sp.Symbol("mu", real=True)

#: names the engine reserves for states; a hyperparameter may not use these names
RESERVED = {"K", "K_11", "K_22", "K_12", "K11", "K22", "K12", "O_T", "O_C", "O_T12", "O_C12"}


def hyper_symbol(name: str) -> sp.Symbol:
    """The sympy symbol for a hyperparameter name, with the assumptions its name implies.

    ``sigma_w*`` -> positive, ``sigma_b*`` -> nonnegative, anything else -> real.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise HyperparameterError(
            f"hyperparameter name {name!r} is not a valid identifier; use e.g. 'sigma_w' or 'mu'"
        )
    if name in RESERVED:
        raise HyperparameterError(f"{name!r} is reserved for the variance state; pick another name")
    if name.startswith("sigma_w") or name.startswith("gamma"):
        return sp.Symbol(name, positive=True)
    if name.startswith("sigma_b") or name.startswith("sigma"):
        return sp.Symbol(name, nonnegative=True)
    return sp.Symbol(name, real=True)


#: Largest magnitude of a numeric hyperparameter: its square (and its square times an O(1)
#: expectation) must stay finite in float64.
MAX_HYPER = 1e100


def as_hyper(value: object, *, what: str, nonnegative: bool = False) -> sp.Expr:
    """Convert a user hyperparameter (number, name, or sympy expression) to a sympy expression.

    Raises :class:`HyperparameterError` for non-finite numbers, negative numbers where
    ``nonnegative`` is required, and objects that are neither.
    """
    if isinstance(value, sp.Basic):
        expr = value
    elif isinstance(value, str):
        expr = hyper_symbol(value)
    elif isinstance(value, numbers.Number) and not isinstance(value, bool):
        v = complex(value)
        if v.imag != 0 or not math.isfinite(v.real):
            raise HyperparameterError(f"{what} must be a finite real number, got {value!r}")
        if abs(v.real) > MAX_HYPER:
            raise HyperparameterError(
                f"{what} = {value!r} is too large: variances hold its square, which overflows "
                f"float64 beyond {MAX_HYPER:g}; rescale the problem")
        expr = sp.Integer(int(value)) if float(value).is_integer() else sp.Float(float(value))
    else:
        raise HyperparameterError(
            f"{what} must be a number, a hyperparameter name or a sympy expression, got {value!r}"
        )
    if expr.is_number:
        val = complex(expr.evalf())
        if val.imag != 0 or not math.isfinite(val.real):
            raise HyperparameterError(f"{what} must be finite and real, got {value!r}")
        if nonnegative and val.real < 0:
            raise HyperparameterError(
                f"{what} is a standard deviation and must be >= 0, got {value!r}"
            )
    return expr
