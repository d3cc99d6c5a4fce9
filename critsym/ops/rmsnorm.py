r"""Root-mean-square normalisation over the neurons: everything critsym knows about RMSNorm.

x ↦ x / r(x), r(x) = sqrt((1/N) Σ_i x_i² + ε) (no mean subtraction; γ = 1 at initialization).

Fold rule.  At infinite width the neuron average is the expectation over the layer's Gaussian
variables, so RMS(e) = e / r with the constant r = sqrt(E[e²]).  Its Jacobian
(1/r)(I − x̂x̂ᵀ/N), x̂ = x/r, contributes the factor 1/r² to the APJN (the rank-one projection is
O(1/N)).  On zero-mean preactivations E[e²] = Var e, so RMS-pre has LayerNorm-pre's theory; after
an activation the mean of φ is *not* removed: RMS-post divides by E[φ²], LN-post by Var φ.
Multi-axis states (a Mixer's rows × neurons): on a Gaussian variable without per-row offsets
the rule is the same (variances and per-neuron offsets divided by r²); a per-row offset would
make r differ between rows, which the state does not carry, so it is refused.  Token states
(transformers) keep the rule with r² = E[e²], the token average of the mean square: exact
without per-token offsets (O_T = 0, which transformer blocks preserve); with O_T > 0 an
approximation (the per-token mean square a_r² + Var − O_T is replaced by its average).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import DerivationError, SimulationError, UnsupportedModuleError
from .base import Op


@dataclass(frozen=True)
class RMSNorm(Op):
    r"""x ↦ x / sqrt(mean_i x_i²) over the neurons (γ = 1): RMS(e) = e / sqrt(E[e²]), APJN
    factor 1/E[e²].

    ``RMSNorm() >> Act("tanh") >> Linear()`` (pre), ``Act("relu") >> RMSNorm() >> Linear()``
    (post).  ``torch.nn.RMSNorm`` over the last axis imports to it.
    """

    latex_name = r"\mathrm{RMS}"
    torch_types = ("torch.nn.RMSNorm", "transformers.models.llama.modeling_llama.LlamaRMSNorm")

    # fold ---------------------------------------------------------------------------------
    def apply(self, s):
        if s.axes and not s.tokens and any(not g.off.is_zero()
                                           for g in s.present(s.expr_a, "a")):
            raise DerivationError(
                "RMSNorm over neurons of a state with per-row offsets: the mean square then "
                "differs between rows, which this state does not carry. Apply a LayerNorm "
                "first, or RMSNorm where no per-row offset is present.")
        r = {}
        for side, e in (("a", s.expr_a), ("b", s.expr_b)):
            s, r[side] = s.statistic(f"r{side}", sp.sqrt(s.E(e**2, side)), positive=True)
        return s.map(lambda e, side: e / r[side]).canonical()

    # torch --------------------------------------------------------------------------------
    def to_torch(self, ctx, shape: tuple[int, ...]):
        """x / sqrt(mean(x², last axis) + ``ctx.ln_eps``) for the stacked networks."""
        from ..torch.modules import OpModule

        eps = ctx.ln_eps

        def rms(x, eps=eps):
            return x / (x * x).mean(-1, keepdim=True).add(eps).sqrt()

        return OpModule(rms, RMSNorm()), shape

    def export(self, ctx, fan: int):
        """``torch.nn.RMSNorm(fan)`` (eps 1e-12, weight 1) on the last axis."""
        from torch import nn

        if ctx.channels_first:
            raise SimulationError(
                "RMSNorm next to convolutions would normalise the channel axis 1 of a "
                "channels-first map, which torch.nn.RMSNorm (last axes) does not do; export "
                "the block without convolutions")
        return nn.RMSNorm(fan, eps=1e-12, dtype=ctx.dtype), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """``nn.RMSNorm`` (or Hugging Face's ``LlamaRMSNorm``) over the last axis with
        weight 1 (its initialization)."""
        import torch

        name = reader.label(path)
        shape = getattr(module, "normalized_shape", None) or tuple(module.weight.shape)
        if len(shape) != 1:
            raise UnsupportedModuleError(
                f"submodule {name!r}: RMSNorm over {tuple(shape)}; only the "
                "last axis (the neurons) is supported")
        w = module.weight
        if w is not None and not torch.all(w == 1):
            raise UnsupportedModuleError(
                f"submodule {name!r}: RMSNorm with weight != 1 (not at its initialization); "
                "the theory assumes weight 1")
        return RMSNorm()

    # contract tests -----------------------------------------------------------------------
    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .linear import Linear
        from .residual import Residual

        hp = dict(sigma_w=1.3, sigma_b=0.3)
        return (Example(RMSNorm() >> Act("tanh") >> Linear(), hp, name="RMS-pre tanh"),
                Example(Act("relu") >> RMSNorm() >> Linear(), hp, name="RMS-post relu"),
                Example(Residual(Act("gelu") >> RMSNorm() >> Linear()), {**hp, "mu": 0.8},
                        name="Residual(RMS-post gelu)"))
