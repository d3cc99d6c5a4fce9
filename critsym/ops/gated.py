r"""The gated MLP (Llama's SiLU-gated feed-forward): everything critsym knows about it.

    y = W_down (φ(W_gate x + b_gate) ⊙ (W_up x + b_up)) + b_down,

three Linear layers with independent weights W ~ N(0, σ²/fan_in), biases N(0, σ_b²) (Llama:
no biases, φ = SiLU).

Fold rule.  At infinite width the gate and up preactivations g₁ = W_gate x + b_gate,
g₂ = W_up x + b_up are two *independent* Gaussian variables (independent weights), each with
the law of a Linear output: Var g_k = σ_k² E[x²] + σ_{b,k}², Cov_k = σ_k² E[x_a x_b] + σ_{b,k}².
The product z = φ(g₁) g₂ is not Gaussian; the down projection closes it:

    K' = σ_d² E[φ(g₁)²] E[g₂²] + σ_{b,d}²,
    K'_ab = σ_d² E[φ(g₁ᵃ) φ(g₁ᵇ)] E[g₂ᵃ g₂ᵇ] + σ_{b,d}²,

and, since ∂z/∂x = φ'(g₁) g₂ W_gate + φ(g₁) W_up with independent zero-mean W_gate, W_up (the
cross term averages to zero),

    χ = σ_d² (σ_gate² E[φ'(g₁)²] E[g₂²] + σ_up² E[φ(g₁)²])      (per unit APJN of x).

This is exactly what the generic fold does with the two closed variables multiplied
(:mod:`critsym.fold`: expectations factor over independent variables, the Jacobian sums
E[(∂z/∂g_k)²] J_{g_k}); no formula is written here by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ArchitectureError, UnsupportedModuleError
from .activation import Act
from .base import Op, as_op
from .linear import Linear


@dataclass(frozen=True, init=False)
class GatedMLP(Op):
    r"""x ↦ down(φ(gate(x)) ⊙ up(x)) with three independent Linear layers ``gate``, ``up``,
    ``down`` (default ``Linear()``: the symbols σ_w, σ_b) and the activation ``act`` (default
    SiLU, Llama's MLP).

    ``GatedMLP("silu")``, ``GatedMLP(Act("gelu"), gate=Linear(1.2, 0), up=Linear(1.0, 0),
    down=Linear(0.8, 0))``.  Fold rule in the module docstring:
    K' = σ_d² E[φ(g₁)²] E[g₂²] + σ_{b,d}²,
    χ = σ_d² (σ_g² E[φ'(g₁)²] E[g₂²] + σ_u² E[φ(g₁)²]).
    """

    act: Act
    gate: Linear
    up: Linear
    down: Linear
    latex_name = r"\mathrm{GLU}"
    torch_types = ("critsym.torch.gated.GatedMLPModule",
                   "transformers.models.llama.modeling_llama.LlamaMLP")

    def __init__(self, act: object = "silu", gate: object = None, up: object = None,
                 down: object = None):
        a = act if isinstance(act, Act) else as_op(act, "GatedMLP act") \
            if isinstance(act, dict) else Act(act)
        if not isinstance(a, Act):
            raise ArchitectureError(f"GatedMLP act must be an activation (Act), got {a!r}")
        object.__setattr__(self, "act", a)
        for name, v in (("gate", gate), ("up", up), ("down", down)):
            lin = Linear() if v is None else as_op(v, f"GatedMLP {name}")
            if not isinstance(lin, Linear):
                raise ArchitectureError(
                    f"GatedMLP {name} must be a Linear layer, got {lin!r}")
            object.__setattr__(self, name, lin)

    def __repr__(self) -> str:
        lin = [repr(getattr(self, n)) for n in ("gate", "up", "down")]
        if len(set(lin)) == 1 and self.gate == Linear():
            return f"GatedMLP({self.act!r})"
        return f"GatedMLP({self.act!r}, gate={lin[0]}, up={lin[1]}, down={lin[2]})"

    def children(self) -> tuple[Op, ...]:
        return (self.act, self.gate, self.up, self.down)

    def latex(self) -> str:
        phi = self.act.latex().replace(r"\cdot", "W_{g}h")
        return rf"W_{{d}}\left({phi} \odot W_{{u}}h\right)"

    # fold ---------------------------------------------------------------------------------
    def apply(self, s):
        """Close gate and up as two independent variables, multiply φ(g₁)·g₂, close down."""
        g = self.gate.apply(s)
        u = self.up.apply(s)
        prod = replace(
            g,
            expr_a=self.act.phi(g.expr_a) * u.expr_a,
            expr_b=self.act.phi(g.expr_b) * u.expr_b,
            gvars=g.gvars + tuple(v for v in u.gvars if v not in g.gvars),
            defs=g.defs + tuple(d for d in u.defs if d not in g.defs),
        )
        return self.down.apply(prod)

    # torch --------------------------------------------------------------------------------
    def to_torch(self, ctx, shape: tuple[int, ...]):
        """Stacked gate/up/down maps (every output ``ctx.width`` wide) around φ."""
        from ..torch.gated import GatedMLPModule

        g, mid = self.gate.to_torch(ctx, shape)
        u, _ = self.up.to_torch(ctx, shape)
        d, out = self.down.to_torch(ctx, mid)
        a, _ = self.act.to_torch(ctx, mid)
        return GatedMLPModule(g, u, d, a), out

    def export(self, ctx, fan: int):
        """:class:`critsym.torch.gated.GatedMLPModule` of three ``nn.Linear`` and the
        activation's module (the attribute names of Hugging Face's ``LlamaMLP``)."""
        from ..torch.gated import GatedMLPModule

        g, mid = self.gate.export(ctx, fan)
        u, _ = self.up.export(ctx, fan)
        d, out = self.down.export(ctx, mid)
        a, _ = self.act.export(ctx, mid)
        return GatedMLPModule(g, u, d, a), out

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        """A module with ``gate_proj``, ``up_proj``, ``down_proj`` (Linear) and ``act_fn``
        computing ``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` (Llama's MLP)."""
        name = reader.label(path)
        parts = {}
        for attr in ("gate_proj", "up_proj", "down_proj", "act_fn"):
            m = getattr(module, attr, None)
            if m is None:
                raise UnsupportedModuleError(
                    f"submodule {name!r} ({type(module).__name__}) has no {attr!r}; a gated MLP "
                    "is read from gate_proj, up_proj, down_proj and act_fn")
            parts[attr] = reader.map(m, reader.join(path, attr))
        for attr in ("gate_proj", "up_proj", "down_proj"):
            if not isinstance(parts[attr], Linear):
                raise UnsupportedModuleError(
                    f"submodule {reader.join(path, attr)!r} of the gated MLP {name!r} maps to "
                    f"{parts[attr]!r}, not a Linear layer")
        act = parts["act_fn"] if parts["act_fn"] is not None else Act("identity")
        if not isinstance(act, Act):
            raise UnsupportedModuleError(
                f"submodule {reader.join(path, 'act_fn')!r} of {name!r} maps to {act!r}, not "
                "an elementwise activation")
        return GatedMLP(act, parts["gate_proj"], parts["up_proj"], parts["down_proj"])

    # contract tests -----------------------------------------------------------------------
    @classmethod
    def examples(cls):
        from .contract import Example
        from .norm import LayerNorm
        from .residual import Residual
        from .rmsnorm import RMSNorm

        hp = dict(sigma_w=1.1, sigma_b=0.2)
        return (Example(GatedMLP("silu"), hp, name="GatedMLP(silu)"),
                Example(Residual(RMSNorm() >> GatedMLP("silu", Linear(), Linear(),
                                                       Linear(sigma_b=0))),
                        {**hp, "mu": 0.95}, name="Residual(RMS >> GatedMLP(silu))"),
                Example(Residual(LayerNorm() >> GatedMLP("gelu")), {**hp, "mu": 0.9},
                        name="Residual(LN >> GatedMLP(gelu))"))
