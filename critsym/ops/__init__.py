"""The architecture language: layer operators and their composition."""

from .activation import Act
from .balanced import BalancedResidual
from .base import Op, Sequential, as_op, from_dict, from_json
from .blocks import mlp_block
from .linear import Linear
from .norm import LayerNorm
from .residual import Residual

__all__ = [
    "Act", "BalancedResidual", "LayerNorm", "Linear", "Op", "Residual", "Sequential", "as_op",
    "from_dict", "from_json", "mlp_block",
]
