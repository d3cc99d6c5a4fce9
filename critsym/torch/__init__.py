"""The torch side of critsym: real finite-width networks from the same architecture objects.

* :func:`build` — an architecture as ``n_nets`` independent torch networks (stacked weights);
* :func:`simulate` — Monte Carlo K^l, J^{l0,l}, c^l with standard errors;
* :func:`apjn` — the APJN between submodules of *any* ``nn.Module``;
* :func:`validate` — theory against simulation, layer by layer, with z-scores;
* :func:`simulate_tokens`, :func:`validate_tokens` — token networks (attention): q, p and the
  two-part Jacobian (j, k).
"""

from .apjn import APJNResult, apjn
from .build import CritsymNet, build, default_device
from .estimators import (
    jvp_norms,
    jvp_norms_folded,
    make_probes,
    vjp_norms,
    vjp_norms_folded,
)
from .simulate import SimulationResult, make_inputs, simulate
from .tokens import TokenResult, simulate_tokens, validate_tokens
from .validate import ValidationResult, extrapolate, validate

__all__ = [
    "APJNResult", "CritsymNet", "SimulationResult", "TokenResult", "ValidationResult", "apjn",
    "build", "simulate_tokens", "validate_tokens",
    "default_device", "extrapolate", "jvp_norms", "jvp_norms_folded", "make_inputs",
    "make_probes", "simulate", "validate", "vjp_norms", "vjp_norms_folded",
]
