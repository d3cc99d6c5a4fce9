"""The torch side of critsym: real finite-width networks from the same architecture objects.

* :func:`build` — an architecture as ``n_nets`` independent torch networks (stacked weights);
* :func:`simulate` — Monte Carlo K^l, J^{l0,l}, c^l with standard errors;
* :func:`apjn` — the APJN between submodules of *any* ``nn.Module``;
* :func:`validate` — theory against simulation, layer by layer, with z-scores.
"""

from .apjn import APJNResult, apjn
from .build import CritsymNet, build, default_device
from .estimators import jvp_norms, make_probes, vjp_norms
from .simulate import SimulationResult, make_inputs, simulate
from .validate import ValidationResult, extrapolate, validate

__all__ = [
    "APJNResult", "ValidationResult", "apjn", "extrapolate", "validate", "CritsymNet", "SimulationResult", "build", "default_device", "jvp_norms", "make_inputs",
    "make_probes", "simulate", "vjp_norms",
]
