"""critsym: symbolic-numeric criticality of deep networks at initialization.

Describe one repeating block with layer operators, derive its mean-field recursions, evaluate
them numerically::

    import critsym as cs
    theory = cs.derive(cs.Act("tanh") >> cs.Linear())
    theory.F, theory.chi          # sympy: variance map and APJN multiplier
    theory.run(50, K0=1.0, sigma_w=1.3, sigma_b=0.2)
"""

from . import criticality, errors
from .activations import activation_names
from .criticality import (
    analytic_exponents,
    correlation,
    critical_line,
    critical_point,
    everywhere_critical,
    fit_nu,
    fit_p,
    fixed_point,
    phase_grid,
    plot_phase,
    summary,
)
from .derive import derive
from .errors import CritsymError
from .gaussian.expectation import GaussE, GaussE2, expect, expect2
from .ops import (
    Act,
    LayerNorm,
    Linear,
    Op,
    Residual,
    Sequential,
    from_dict,
    from_json,
    mlp_block,
)
from .symbols import K, mu, sigma_b, sigma_w
from .theory import RunResult, Theory
from .torch import (
    APJNResult,
    CritsymNet,
    SimulationResult,
    ValidationResult,
    apjn,
    build,
    simulate,
    validate,
)

# isort: split
# kernel shaping
from . import shaping

# real architectures (conv ResNets, MLP-Mixer), torch import, reproductions
from .axis_theory import O_C, O_T, AxisRunResult, AxisTheory
from .importer import ImportResult, from_torch, to_torch_model
from .ops.axes import Transpose
from .ops.batchnorm import BatchNorm
from .ops.conv import Conv
from .ops.mixer import channel_mixing, mixer_block, resnet_block, token_mixing, two_layer_block
from .ops.pool import AvgPool, GlobalAvgPool, pool_theory
from .shaping import ShapedActivation
from .torch.shaped import ShapedResult, simulate_shaped

# isort: split
# issue 6b: criticality of multi-axis (Mixer) states
from .criticality.state_fixed_point import StateFixedPoint, state_fixed_point

__all__ = [
    "Act", "CritsymError", "GaussE", "GaussE2", "K", "LayerNorm", "Linear", "Op", "Residual",
    "RunResult", "Sequential", "Theory", "activation_names", "derive", "errors", "expect",
    "expect2", "from_dict", "from_json", "mlp_block", "mu", "sigma_b", "sigma_w",
    "analytic_exponents", "correlation", "critical_line", "critical_point", "criticality",
    "everywhere_critical", "fit_nu", "fit_p", "fixed_point", "phase_grid", "plot_phase",
    "summary",
    "APJNResult", "CritsymNet", "SimulationResult", "ValidationResult", "apjn", "build",
    "simulate", "validate",
    # kernel shaping
    "ShapedActivation", "shaping",
    "AvgPool", "AxisRunResult", "AxisTheory", "BatchNorm", "Conv", "GlobalAvgPool",
    "ImportResult", "O_C", "O_T", "ShapedResult", "Transpose", "channel_mixing", "from_torch",
    "mixer_block", "pool_theory", "resnet_block", "simulate_shaped", "to_torch_model",
    "token_mixing", "two_layer_block",
    # issue 6b
    "StateFixedPoint", "state_fixed_point",
]
