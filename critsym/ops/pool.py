r"""Average pooling on channels-last feature maps, and what it does to K and the APJN.

Pooling changes the spatial size, so a block containing it cannot repeat: critsym derives
repeating blocks, and :meth:`AvgPool.apply` raises a :class:`DerivationError`.  Between stages (or
at the readout) its effect follows from the per-position mean-field state, for a window of
P positions (stride = window, circular/stationary statistics):

* variance:  K_pool = (1/P²) Σ_{x,y∈window} K(x, y) = K·[1 + (P − 1)·c̄]/P, where c̄ is the mean
  correlation between distinct positions of the window.  For a spatially white input
  (independent positions) every offset's correlation follows the two-input correlation map
  from c = 0 (a Conv acts on each offset independently), so c̄ = c^l from
  ``Theory.run(..., c0=0)``;
* APJN:  J_pool = J / P, exactly in the mean field: the Jacobians of distinct positions with
  respect to a whole earlier layer are uncorrelated (their cross terms start at 0 and the
  offset-preserving recursion keeps them 0), and the output has P times fewer entries.

``GlobalAvgPool`` is the window of all positions.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import (
    ArchitectureError,
    DerivationError,
    HyperparameterError,
    SimulationError,
    UnsupportedModuleError,
)
from .base import Op


def pool_theory(K: object, c_spatial: object, window: int):
    """(K_pool, J factor) for a window of ``window`` positions (see the module docstring)."""
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
        raise ArchitectureError(f"window must be an integer >= 1, got {window!r}")
    try:
        K = np.asarray(K, dtype=float)
        c = np.asarray(c_spatial, dtype=float)
    except (TypeError, ValueError):
        raise HyperparameterError("K and c_spatial must be numbers or arrays of numbers") from None
    if not np.all(np.isfinite(K)) or np.any(K < 0):
        raise HyperparameterError(f"K is a variance: it must be finite and >= 0, got {K}")
    if not np.all(np.isfinite(c)) or np.any(np.abs(c) > 1):
        raise HyperparameterError(f"c_spatial is a correlation: it must lie in [-1, 1], got {c}")
    return K * (1 + (window - 1) * c) / window, 1.0 / window


@dataclass(frozen=True, init=False)
class AvgPool(Op):
    r"""Mean over non-overlapping windows of ``kernel_size``^dim positions (stride = kernel)."""

    kernel_size: int
    dim: int
    latex_name = r"\mathrm{Pool}"
    torch_types = ("torch.nn.AvgPool1d", "torch.nn.AvgPool2d", "torch.nn.AvgPool3d",
                   "critsym.torch.conv.ChannelsLastPool")

    def __init__(self, kernel_size: int = 2, dim: int = 2):
        for name, v in (("kernel_size", kernel_size), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ArchitectureError(f"AvgPool {name} must be an integer >= 1, got {v!r}")
        object.__setattr__(self, "kernel_size", int(kernel_size))
        object.__setattr__(self, "dim", int(dim))

    @property
    def window(self) -> int:
        return self.kernel_size ** self.dim

    def apply(self, s):
        raise DerivationError(
            f"{self!r} changes the spatial size, so a block containing it does not repeat; "
            "derive the blocks between poolings and use critsym.ops.pool.pool_theory(K, c, "
            "window) for the pooling itself (K_pool = K(1+(P-1)c)/P, J_pool = J/P)"
        )

    def to_torch(self, ctx, shape: tuple[int, ...]):
        from ..torch.conv import ChannelsLastPool

        k = self.kernel_size
        sp_ = shape[:-1]
        if len(sp_) != self.dim or any(n % k for n in sp_):
            raise SimulationError(
                f"AvgPool(kernel_size={k}, dim={self.dim}) needs {self.dim} spatial axes "
                f"divisible by {k}, got feature shape {shape}"
            )
        return ChannelsLastPool(k, self.dim), (*(n // k for n in sp_), shape[-1])

    def export(self, ctx, fan: int):
        from torch import nn

        return {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[self.dim](self.kernel_size), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """Non-overlapping average pooling (stride = kernel); critsym's stacked pools too."""
        from ..torch.conv import ChannelsLastPool

        if isinstance(module, ChannelsLastPool):
            if module.kernel is None:
                return GlobalAvgPool(module.dim)
            return AvgPool(module.kernel, module.dim)
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        st = module.stride if isinstance(module.stride, int) else module.stride[0]
        if st != k:
            raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: AvgPool with "
                                         f"stride {st} != kernel {k}; use non-overlapping windows")
        return AvgPool(k, dim=int(type(module).__name__[-2]))

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .conv import Conv

        return (Example(Conv(3, 1.2, 0.1, dim=1) >> Act("relu") >> AvgPool(2, dim=1),
                        shape=(8, 8), theory=False, monte_carlo=False, name="AvgPool1d"),)


@dataclass(frozen=True, init=False)
class GlobalAvgPool(Op):
    r"""Mean over all positions: (*spatial, C) ↦ (C,)."""

    dim: int
    latex_name = r"\mathrm{GAP}"
    torch_types = ("torch.nn.AdaptiveAvgPool1d", "torch.nn.AdaptiveAvgPool2d",
                   "torch.nn.AdaptiveAvgPool3d")

    def __init__(self, dim: int = 2):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ArchitectureError(f"GlobalAvgPool dim must be an integer >= 1, got {dim!r}")
        object.__setattr__(self, "dim", int(dim))

    def apply(self, s):
        raise DerivationError(
            "GlobalAvgPool removes the spatial axes, so a block containing it does not repeat; "
            "use critsym.ops.pool.pool_theory(K, c, window=H*W) for the readout"
        )

    def to_torch(self, ctx, shape: tuple[int, ...]):
        from ..torch.conv import ChannelsLastPool

        if len(shape) != self.dim + 1:
            raise SimulationError(f"GlobalAvgPool(dim={self.dim}) needs shape (*spatial, C), "
                                  f"got {shape}")
        return ChannelsLastPool(None, self.dim), (shape[-1],)

    def export(self, ctx, fan: int):
        from torch import nn

        return {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d,
                3: nn.AdaptiveAvgPool3d}[self.dim](1), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        out = module.output_size
        if out not in (1, (1,), (1, 1), (1, 1, 1)):
            raise UnsupportedModuleError(f"submodule {reader.label(path)!r}: adaptive pooling "
                                         f"to {out}; only output size 1 (global pooling) is "
                                         "supported")
        return GlobalAvgPool(dim=int(type(module).__name__[-2]))

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .conv import Conv

        return (Example(Conv(3, 1.2, 0.1, dim=1) >> Act("relu") >> GlobalAvgPool(dim=1),
                        shape=(8, 8), theory=False, monte_carlo=False, name="GlobalAvgPool1d"),)
