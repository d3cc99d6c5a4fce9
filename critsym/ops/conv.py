r"""Convolution operator (channels-last feature maps).

A feature map of shape (*spatial, C) (channels last, so LayerNorm / Act / Linear act per
position over the channels, and ``Linear`` is a 1×1 convolution).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import sympy as sp

from ..errors import ArchitectureError, SimulationError, UnsupportedModuleError
from ..symbols import as_hyper
from ..symbols import sigma_b as _sb
from ..symbols import sigma_w as _sw
from .base import Op

PADDINGS = ("circular", "zeros")


@dataclass(frozen=True, init=False)
class Conv(Op):
    r"""h_{i,x} = Σ_{j, δ} W_{ij,δ} e_{j,x+δ} + b_i, W ~ N(0, σ_w²/(k^d·C_in)), b ~ N(0, σ_b²).

    ``kernel_size`` k, ``dim`` d spatial axes (2 for images), 'same' padding (k−1)/2,
    ``channels``: output channels (None: the build width), ``stride`` s (the output keeps the
    positions x = s·x', i.e. ⌈n/s⌉ of n per axis: a ResNet stage's downsampling conv).

    Mean field (infinite C_in).  Distinct taps δ have independent weights, so every cross term
    between taps vanishes and, at each output position x,

        K'(x)  = σ_w² (1/k^d) Σ_δ E[e(x+δ)²] + σ_b²,
        J'(x)  = σ_w² (1/k^d) Σ_δ E[(∂e(x+δ))²] J(x+δ),
        K'_12(x, y) = σ_w² (1/k^d) Σ_δ E[e_a(x+δ) e_b(y+δ)] + σ_b².

    With **circular padding** and a translation-invariant input law the state is the same at
    every position, so K', J' and the covariance at any fixed spatial offset follow exactly the
    recursion of a Linear layer with the same σ_w, σ_b (the fold uses that rule; offsets
    evolve independently, Xiao et al. 2018).  With **zero padding** the taps that fall outside the
    map contribute 0: a position within ⌈(k−1)/2⌉·l of the border after l layers sees fewer
    terms, K and J become position dependent there and the fold's recursion holds only in the
    interior (the bulk).  The fold then gives the bulk recursion; simulations of small maps
    with zero padding deviate from it.  :mod:`critsym.interop.padded` carries the state per
    position (the importer runs it for zero-padded bodies given an example input).

    **Stride** s keeps the output positions s·x' of the stride-1 map: each kept position is the
    same sum over its k^d taps, so for a spatially uniform input state K', J' and the offsets
    follow the same per-position rule as at stride 1 (the APJN is per output unit).  The
    contract Monte Carlo checks this on a strided example.
    """

    kernel_size: int
    sigma_w: sp.Expr
    sigma_b: sp.Expr
    padding: str
    dim: int
    channels: int | None
    stride: int
    hyper_fields = ("sigma_w", "sigma_b")
    latex_name = r"\mathrm{Conv}"
    torch_types = ("torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d",
                   "critsym.torch.conv.StackedConv")
    channels_first = True

    def __init__(self, kernel_size: int = 3, sigma_w: object = _sw, sigma_b: object = _sb,
                 padding: str = "circular", dim: int = 2, channels: int | None = None,
                 stride: int = 1):
        for name, v, lo in (("kernel_size", kernel_size, 1), ("dim", dim, 1),
                            ("stride", stride, 1)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ArchitectureError(f"Conv {name} must be an integer >= {lo}, got {v!r}")
        if kernel_size % 2 == 0:
            raise ArchitectureError(
                f"Conv kernel_size must be odd (a centred 'same' convolution), got {kernel_size}")
        if padding not in PADDINGS:
            raise ArchitectureError(f"Conv padding must be one of {PADDINGS}, got {padding!r}")
        if channels is not None and (isinstance(channels, bool)
                                     or not isinstance(channels, numbers.Integral) or channels < 1):
            raise ArchitectureError(f"Conv channels must be None or an integer >= 1, got "
                                    f"{channels!r}")
        object.__setattr__(self, "kernel_size", int(kernel_size))
        object.__setattr__(self, "sigma_w", as_hyper(sigma_w, what="sigma_w", nonnegative=True))
        object.__setattr__(self, "sigma_b", as_hyper(sigma_b, what="sigma_b", nonnegative=True))
        object.__setattr__(self, "padding", padding)
        object.__setattr__(self, "dim", int(dim))
        object.__setattr__(self, "channels", None if channels is None else int(channels))
        object.__setattr__(self, "stride", int(stride))

    def __repr__(self) -> str:
        text = (f"Conv(kernel_size={self.kernel_size}, sigma_w={self.sigma_w}, "
                f"sigma_b={self.sigma_b}, padding={self.padding!r}, dim={self.dim}, "
                f"channels={self.channels}")
        return text + (f", stride={self.stride})" if self.stride != 1 else ")")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.stride == 1:  # descriptions written before strides read back the same
            del d["stride"]
        return d

    @property
    def taps(self) -> int:
        return self.kernel_size ** self.dim

    def apply(self, s):
        # per position, the same closing rule as a Linear layer (see the class docstring)
        return s.close(self.sigma_w, self.sigma_b)

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """A stacked convolution on channels-last maps (n_nets, *batch, *spatial, C)."""
        from ..torch.conv import StackedConv

        if len(shape) != self.dim + 1:
            raise SimulationError(
                f"Conv(dim={self.dim}) needs a feature shape (*spatial[{self.dim}], channels), "
                f"got {shape}; pass shape=(H, W, C) for images"
            )
        if any(n < self.kernel_size for n in shape[:-1]):
            raise SimulationError(
                f"spatial size {shape[:-1]} is smaller than the kernel {self.kernel_size}; use "
                "larger inputs or a smaller kernel_size"
            )
        c_out = self.channels or ctx.width
        mod = StackedConv.init(ctx, shape[-1], c_out, self.kernel_size, self.dim,
                               ctx.value(self.sigma_w, "Conv sigma_w"),
                               ctx.value(self.sigma_b, "Conv sigma_b"), self.padding,
                               self.stride)
        return mod, (*(-(-n // self.stride) for n in shape[:-1]), c_out)

    def export(self, ctx, fan: int):
        """``nn.Conv{dim}d`` on channels-first maps, 'same' padding in the op's mode."""
        from torch import nn

        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[self.dim]
        c_out = self.channels or ctx.width
        m = cls(fan, c_out, self.kernel_size, stride=self.stride,
                padding=self.kernel_size // 2, padding_mode=self.padding, dtype=ctx.dtype)
        ctx.init(m, ctx.value(self.sigma_w, "Conv sigma_w"), ctx.value(self.sigma_b,
                                                                      "Conv sigma_b"),
                 fan * self.taps)
        return m, c_out

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """An odd square kernel, equal strides, dilation 1, groups 1, 'same' padding."""
        from ..torch.conv import StackedConv

        if isinstance(module, StackedConv):
            w = module.weight.reshape(-1, *module.weight.shape[2:])
            sw, sb = reader.weights(path, "Conv", w, module.bias)
            return Conv(int(module.weight.shape[-1]), sw, sb, padding=module.padding,
                        dim=module.dim, stride=module.stride)
        name = reader.label(path)
        d = len(module.kernel_size)
        k = set(module.kernel_size)
        if len(k) != 1 or min(k) % 2 == 0:
            raise UnsupportedModuleError(
                f"submodule {name!r}: kernel {module.kernel_size}; critsym's Conv needs an odd "
                "square kernel")
        (k,) = k
        pad = module.padding if isinstance(module.padding, str) else set(module.padding)
        if len(set(module.stride)) != 1 or set(module.dilation) != {1} or module.groups != 1 or (
                pad != "same" and pad != {k // 2}):
            raise UnsupportedModuleError(
                f"submodule {name!r}: {module}; critsym's Conv has equal strides, dilation 1, "
                f"groups 1 and 'same' padding ({k // 2})")
        if module.padding_mode not in PADDINGS:
            raise UnsupportedModuleError(
                f"submodule {name!r}: padding_mode {module.padding_mode!r}; use 'circular' "
                "(exact mean field) or 'zeros'")
        sw, sb = reader.weights(path, "Conv", module.weight, module.bias)
        if module.padding_mode == "zeros" and k > 1:
            from .contract import approximate

            approximate(reader, path, (
                "zero padding: the bulk theory (interior positions; exact with circular "
                "padding), border taps lower J on small maps (measured/theory 0.64 at 8×8 maps, "
                "0.86 at 32×32); with an example input, bodies of Conv / BatchNorm / activation "
                "chains or post-activation residual blocks run the position-resolved theory "
                "instead (docs/architectures.md)"))
        return Conv(k, sw, sb, padding=module.padding_mode, dim=d, stride=module.stride[0])

    def symbolic(self) -> Op:
        return Conv(self.kernel_size, _sw, _sb if self.sigma_b != 0 else 0,
                    padding=self.padding, dim=self.dim, channels=self.channels,
                    stride=self.stride)

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example

        return (Example(Act("relu") >> Conv(3, dim=1), dict(sigma_w=1.3, sigma_b=0.1),
                        shape=(6, 8), name="Act(relu) >> Conv1d"),)
