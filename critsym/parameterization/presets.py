r"""Named abc-parameterizations (exponents of finite_width.md section 2).

| name    | a (l=0; hidden; L) | b            | c                                          |
| SP      | 0; 0; 0            | 0; 1/2; 1/2  | 0                                          |
| SP-lr/m | 0; 0; 0            | 0; 1/2; 1/2  | 1                                          |
| NTK     | 0; 1/2; 1/2        | 0            | 0                                          |
| muP     | -1/2; 0; 1/2       | 1/2          | 0                                          |
| IP      | 0; 1; 1            | 0            | -1; -2; -1                                 |
| IP-LLR  | 0; 1; 1            | 0            | first step -(L+1)/2; -(L+2)/2; -(L+1)/2, then IP's |
"""

from __future__ import annotations

import sympy as sp

from critsym.errors import HyperparameterError
from critsym.parameterization.abc_parameterization import ABCParameterization, abc

H = sp.Rational(1, 2)
NAMES = ("SP", "SP-lr/m", "NTK", "muP", "IP", "IP-LLR")


def parameterization(name: str, n_layers: int) -> ABCParameterization:
    """The named parameterization with ``n_layers`` = L + 1 weight matrices."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
        raise HyperparameterError(f"n_layers must be an integer >= 2, got {n_layers!r}")
    L = n_layers - 1
    table = {
        "SP": ((0, 0, 0), (0, H, H), 0, None),
        "SP-lr/m": ((0, 0, 0), (0, H, H), 1, None),
        "NTK": ((0, H, H), 0, 0, None),
        "muP": ((-H, 0, H), H, 0, None),
        "IP": ((0, 1, 1), 0, (-1, -2, -1), None),
        "IP-LLR": ((0, 1, 1), 0, (-1, -2, -1),
                   (-sp.Rational(L + 1, 2), -sp.Rational(L + 2, 2), -sp.Rational(L + 1, 2))),
    }
    if name not in table:
        raise HyperparameterError(f"unknown parameterization {name!r}; choose one of {NAMES}")
    a, b, c, cf = table[name]
    return abc(a, b, c, n_layers=n_layers, name=name, c_first=cf)
