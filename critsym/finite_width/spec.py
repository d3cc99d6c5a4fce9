"""The small record of numbers that the log-norm laws and simulators need.

:func:`critsym.finite_width.recognize.recognize` turns a critsym architecture into a
:class:`ModelSpec`;
the laws and the simulators work on specs, so they can also be used without building an
architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from critsym.errors import HyperparameterError

KINDS = ("mlp", "resnet", "balanced")


@dataclass(frozen=True)
class ModelSpec:
    r"""One homogeneous, bias-free block repeated ``depth`` times.

    kind="mlp":      x' = W phi_alpha(x),                     W ~ N(0, c/n)
    kind="resnet":   x' = x + W relu(x),                      W ~ N(0, c/n)   (c/(n d) if
    depth_scaled)
    kind="balanced": x' = x + W_+ relu(x) + W_- relu(-x),     W_+- ~ N(0, c/(2n))
    phi_alpha = leaky relu with negative slope alpha (0: relu).
    """

    kind: str
    c: float
    alpha: float = 0.0
    depth_scaled: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HyperparameterError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not np.isfinite(self.c) or self.c <= 0:
            raise HyperparameterError(f"c (weight variance sigma_w^2) must be > 0, got {self.c}")
        if not np.isfinite(self.alpha) or not 0 <= self.alpha <= 1:
            raise HyperparameterError(f"leaky-relu slope alpha must be in [0, 1], got {self.alpha}")
        if self.alpha != 0 and self.kind != "mlp":
            raise HyperparameterError("leaky relu is only modelled in the MLP")
        if self.depth_scaled and self.kind != "resnet":
            raise HyperparameterError("depth_scaled applies to the standard ResNet branch only")

    def gain(self, depth: int = 1) -> float:
        """Infinite-width per-layer gain q of |x|^2 (closed form; the API cross-checks it with the
        critsym variance recursion)."""
        if self.kind == "mlp":
            return self.c * (1 + self.alpha**2) / 2.0
        if self.depth_scaled:
            return 1.0 + self.c / (2.0 * depth)
        return 1.0 + self.c / 2.0
