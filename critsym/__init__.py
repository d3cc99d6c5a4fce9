"""critsym: symbolic-numeric criticality of deep networks at initialization.

Describe one repeating block with layer operators, derive its mean-field recursions, evaluate
them numerically::

    import critsym as cs
    theory = cs.derive(cs.Act("tanh") >> cs.Linear())
    theory.F, theory.chi          # sympy: variance map and APJN multiplier
    theory.run(50, K0=1.0, sigma_w=1.3, sigma_b=0.2)
"""

from . import criticality, errors
from . import ops as _ops
from ._version import __version__
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
    j_growth,
    phase_grid,
    plot_phase,
    summary,
    transitions,
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
from .symbols import O_C, O_T, K, mu, sigma_b, sigma_w
from .theory import RunResult, Theory

# Heavy dependencies (torch, scipy.optimize, matplotlib) load on first use: the names below are
# resolved by the module ``__getattr__`` (PEP 562), so ``import critsym`` costs numpy + sympy.
_LAZY = {
    # Monte Carlo of real torch networks
    "APJNResult": ".torch", "CritsymNet": ".torch", "SimulationResult": ".torch",
    "ValidationResult": ".torch", "apjn": ".torch", "build": ".torch", "simulate": ".torch",
    "validate": ".torch",
    # Monte Carlo on multi-axis feature maps (conv images, Mixer tokens); the Shaped* / *_shaped
    # spellings are the old names of the same objects, kept for existing scripts
    "MapsResult": ".torch.feature_maps", "simulate_maps": ".torch.feature_maps",
    "ShapedResult": ".torch.feature_maps", "simulate_shaped": ".torch.feature_maps",
    # Monte Carlo of token networks: q, p and the two-part Jacobian (j, k)
    "TokenResult": ".torch.tokens", "simulate_tokens": ".torch.tokens",
    "validate_tokens": ".torch.tokens",
    # kernel shaping
    "ShapedActivation": ".shaping",
    # real architectures (conv ResNets, MLP-Mixer), torch import
    "AxisRunResult": ".axis_theory", "AxisTheory": ".axis_theory",
    "ImportResult": ".importer", "from_torch": ".importer", "to_torch_model": ".importer",
    "Transpose": ".ops.axes", "Conv": ".ops.conv",
    "channel_mixing": ".ops.mixer", "mixer_block": ".ops.mixer", "resnet_block": ".ops.resnet",
    "token_mixing": ".ops.mixer", "two_layer_block": ".ops.resnet",
    "AvgPool": ".ops.pool", "BatchNorm": ".ops.batchnorm", "GlobalAvgPool": ".ops.pool",
    "pool_theory": ".ops.pool",
    # transformers (token states)
    "transformer_block": ".ops.transformer",
    # the input stage of a transformer (embeddings → q⁰, p⁰)
    "InputStage": ".input_stage", "LearnedPositions": ".input_stage",
    "SinusoidalPositions": ".input_stage", "TokenEmbedding": ".input_stage",
    "TokenState": ".input_stage", "TokenTypes": ".input_stage",
    # criticality of multi-axis (Mixer) states
    "StateFixedPoint": ".criticality.state_fixed_point",
    "state_fixed_point": ".criticality.state_fixed_point",
    # one model: theory beside the measured APJN (critical initialization: critsym.init)
    "Report": ".report", "report": ".report",
}
#: subpackages available as attributes (imported on first access)
_SUBMODULES = ("shaping", "finite_width", "parameterization", "torch", "repro", "stats", "sweep",
               "init")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'critsym' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


# every operator registered in critsym.ops (a new operator module needs no edit here)
globals().update({n: getattr(_ops, n) for n in _ops.__all__ if n not in globals()})

__all__ = [
    "Act", "CritsymError", "GaussE", "GaussE2", "K", "LayerNorm", "Linear", "Op", "Residual",
    "RunResult", "Sequential", "Theory", "activation_names", "derive", "errors", "expect",
    "expect2", "from_dict", "from_json", "mlp_block", "mu", "sigma_b", "sigma_w",
    "analytic_exponents", "correlation", "critical_line", "critical_point", "criticality",
    "everywhere_critical", "fit_nu", "fit_p", "fixed_point", "phase_grid", "plot_phase",
    "summary", "transitions", "j_growth",
    "APJNResult", "CritsymNet", "SimulationResult", "ValidationResult", "apjn", "build",
    "simulate", "validate",
    # kernel shaping
    "ShapedActivation", "shaping",
    "AvgPool", "AxisRunResult", "AxisTheory", "BatchNorm", "Conv", "GlobalAvgPool",
    "ImportResult", "O_C", "O_T", "MapsResult", "Transpose", "channel_mixing", "from_torch",
    "mixer_block", "pool_theory", "resnet_block", "simulate_maps", "to_torch_model",
    "token_mixing", "two_layer_block", "sweep", "transformer_block",
    "InputStage", "LearnedPositions", "SinusoidalPositions", "TokenEmbedding", "TokenState",
    "TokenTypes",
    "TokenResult", "simulate_tokens", "validate_tokens",
    # multi-axis criticality
    "StateFixedPoint", "state_fixed_point",
    # one model: report and critical initialization
    "Report", "init", "report",
    "__version__", "finite_width", "parameterization",
]
__all__ += sorted(set(_ops.__all__) - set(__all__))
