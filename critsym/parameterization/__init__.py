"""Width scaling of abc-parameterizations (SP, NTK, muP, IP, ...) after one SGD step.

    >>> from critsym.parameterization import parameterization
    >>> p = parameterization("muP", n_layers=6)
    >>> p.classify().feature_learning
    True
"""

from critsym.parameterization.abc_parameterization import ABCParameterization, abc
from critsym.parameterization.calculus import Exponents, exponent_calculus
from critsym.parameterization.classify import Classification, classify
from critsym.parameterization.plot import plot_one_step
from critsym.parameterization.presets import NAMES, parameterization
from critsym.parameterization.torch_model import (
    ABCNet,
    OneStepResult,
    fit_slope,
    one_step,
    simulate_one_step,
)

__all__ = [
    "ABCParameterization", "abc", "Exponents", "exponent_calculus", "Classification", "classify",
    "NAMES", "parameterization", "ABCNet", "OneStepResult", "fit_slope", "one_step",
    "simulate_one_step", "plot_one_step",
]
