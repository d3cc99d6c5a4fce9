"""The architecture language: layer operators and their composition.

Every module of this package is imported here, so an operator defined in a new module
registers itself (:mod:`critsym.ops.base`) and is exported by name, with no list to edit.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .activation import Act
from .balanced import BalancedResidual
from .base import Op, Sequential, as_op, from_dict, from_json, operators
from .blocks import mlp_block
from .linear import Linear
from .norm import LayerNorm
from .residual import Parallel, Residual

for _m in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_m.name}")


def _package_operators() -> dict[str, type]:
    """The registered operator classes defined in this package, by name."""
    return {n: c for n, c in operators().items() if c.__module__.startswith(__name__ + ".")}


globals().update(_package_operators())

__all__ = [
    "Act", "BalancedResidual", "LayerNorm", "Linear", "Op", "Parallel", "Residual",
    "Sequential", "as_op", "from_dict", "from_json", "mlp_block", "operators",
]
__all__ += sorted(set(_package_operators()) - set(__all__))
