"""Finite depth-to-width laws: ln(|x^d|^2/|x^0|^2) is Gaussian with mean and variance ~ d/n.

    >>> from critsym.finite_width import ModelSpec, log_norm
    >>> law = log_norm(ModelSpec("mlp", c=2.0), depth=64, width=128, order="leading")
    >>> round(law.var, 3)   # 5 d/n
    2.5
"""

from critsym.errors import HyperparameterError
from critsym.finite_width.api import ORDERS, gain_from_recursion, log_norm
from critsym.finite_width.errors import NotApplicableError
from critsym.finite_width.laws import (
    LayerMoments,
    ResNetConstants,
    balanced_layer_moments,
    mlp_layer_moments,
    resnet_constants,
    resnet_finite_depth,
)
from critsym.finite_width.plot import plot_log_norm
from critsym.finite_width.recognize import recognize
from critsym.finite_width.result import LogNormLaw
from critsym.finite_width.simulate import METHODS, LogNormSample
from critsym.finite_width.simulate import simulate_log_norm as _simulate_spec
from critsym.finite_width.spec import ModelSpec
from critsym.ops.balanced import BalancedResidual


def simulate_log_norm(arch: object, depth: int, width: int, n_nets: int = 1000, seed: int = 0,
                      device: str | None = None, method: str = "torch", record: bool = True,
                      depth_scaled: bool = False, **hp: float) -> LogNormSample:
    """Monte Carlo of ln(|x^d|^2/|x^0|^2) over ``n_nets`` networks (see
    :mod:`critsym.finite_width.simulate`).  ``arch``: an architecture or a :class:`ModelSpec`;
    ``depth_scaled=True`` simulates a standard ResNet whose branch variance is c/(n d) (the contrast
    case the law does not cover)."""
    if isinstance(arch, ModelSpec):
        if hp:
            raise HyperparameterError(
                f"unknown arguments {sorted(hp)}: a ModelSpec has numeric values already "
                "(hyperparameter values are for an architecture with symbols)")
        spec = arch
    else:
        spec = recognize(arch, **hp)
    if depth_scaled:
        spec = ModelSpec(spec.kind, spec.c, spec.alpha, depth_scaled=True)
    return _simulate_spec(spec, depth, width, n_nets, seed, device=device, method=method,
                          record=record)


__all__ = [
    "BalancedResidual", "ORDERS", "METHODS", "LayerMoments", "LogNormLaw", "LogNormSample",
    "ModelSpec",
    "NotApplicableError", "ResNetConstants", "balanced_layer_moments", "gain_from_recursion",
    "log_norm", "mlp_layer_moments", "plot_log_norm", "recognize", "resnet_constants",
    "resnet_finite_depth", "simulate_log_norm",
]
