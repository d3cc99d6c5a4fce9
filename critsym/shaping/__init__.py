"""Kernel shaping: local and network Q/C maps, DKS / TAT / TReLU activation transforms.

::

    import critsym as cs
    s = cs.shaping.transform("tanh", depth=16, method="TAT")     # dks's plain chain
    s.input_scale, s.input_shift, s.output_shift, s.output_scale, s.local, s.network
    s.torch()                                                     # an nn.Module
    s2 = cs.shaping.transform("tanh", arch=cs.mlp_block("tanh", "pre", 0.9, 1.0, 0.1), depth=16)
"""

from .activation import BaseActivation, base_activation
from .maps import LocalMaps, local_map_exprs, local_maps
from .network import (
    NetworkMaps,
    ShapedAct,
    compare,
    network_maps,
    plain_block,
    with_activation,
)
from .transforms import (
    METHODS,
    ShapedActivation,
    leaky_relu_cmap,
    solve_dks_local,
    solve_tat_local,
    transform,
)

__all__ = [
    "METHODS", "BaseActivation", "LocalMaps", "NetworkMaps", "ShapedAct", "ShapedActivation",
    "base_activation", "compare", "leaky_relu_cmap", "local_map_exprs", "local_maps",
    "network_maps", "plain_block", "solve_dks_local", "solve_tat_local", "transform",
    "with_activation",
]
