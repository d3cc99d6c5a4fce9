r"""The kernel-shaped activation x ↦ γ (φ(α x + β) + δ) as an operator.

:func:`critsym.shaping.transform` finds (α, β, δ, γ) for a kernel-shaping target and returns it
as this operator (``.act``); it lives with the other operators so that ``cs.from_json`` reads it
without importing the shaping solvers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..activations import x
from ..errors import ArchitectureError
from ..symbols import as_hyper, hyper_symbol
from .activation import Act
from .base import Op
from .linear import Linear


@dataclass(frozen=True, init=False)
class ShapedAct(Act):
    r"""x ↦ γ (φ(α x + β) + δ) for a base activation φ (an :class:`~critsym.Act`); the four
    parameters are numbers or sympy expressions (hyperparameters of the architecture).

    An operator like any other: it folds as the activation φ̂, round-trips through JSON, builds
    (a torch lambdify of φ̂), exports to an ``ActModule`` and imports back from it."""

    base_act: Act
    input_scale: sp.Expr
    input_shift: sp.Expr
    output_shift: sp.Expr
    output_scale: sp.Expr
    hyper_fields = ("input_scale", "input_shift", "output_shift", "output_scale")
    latex_name = r"\hat\phi"

    @classmethod
    def serial_fields(cls) -> tuple[str, ...]:
        return ("base_act", *cls.hyper_fields)

    @classmethod
    def examples(cls):
        from ..ops.contract import Example

        return (Example(ShapedAct("tanh", 1.2, 0.1, -0.05, 1.3) >> Linear(), dict(
            sigma_w=1.1, sigma_b=0.2), name="ShapedAct(tanh) >> Linear"),)

    def __init__(self, base_act: Act | str, input_scale: object = 1.0, input_shift: object = 0.0,
                 output_shift: object = 0.0, output_scale: object = 1.0):
        if not isinstance(base_act, (Act, str)):
            raise ArchitectureError(f"ShapedAct takes a base activation (a name or an Act), "
                                    f"got {base_act!r}")
        base_act = base_act if isinstance(base_act, Act) else Act(base_act)
        object.__setattr__(self, "name", "shaped")
        object.__setattr__(self, "params", ())
        object.__setattr__(self, "expr", None)
        object.__setattr__(self, "base_act", base_act)
        for k, v in (("input_scale", input_scale), ("input_shift", input_shift),
                     ("output_shift", output_shift), ("output_scale", output_scale)):
            v = sp.Float(float(v)) if isinstance(v, (float, np.floating)) else v
            object.__setattr__(self, k, as_hyper(v, what=k))

    def __repr__(self) -> str:
        def f(v):
            return f"{float(v):.6g}" if v.is_number else str(v)

        return (f"ShapedAct({self.base_act!r}, input_scale={f(self.input_scale)}, "
                f"input_shift={f(self.input_shift)}, output_shift={f(self.output_shift)}, "
                f"output_scale={f(self.output_scale)})")

    def phi(self, arg: sp.Expr = x) -> sp.Expr:
        return self.output_scale * (self.base_act.phi(self.input_scale * arg + self.input_shift)
                                    + self.output_shift)

    def hyperparameters(self) -> set[sp.Symbol]:
        out = set(self.base_act.hyperparameters())
        for v in (self.input_scale, self.input_shift, self.output_shift, self.output_scale):
            out |= v.free_symbols
        return out

    def subs(self, values: dict) -> Op:
        sym = {(hyper_symbol(k) if isinstance(k, str) else k): v for k, v in values.items()}
        return ShapedAct(self.base_act.subs(values),
                         *(sp.sympify(v).subs(sym) for v in (
                             self.input_scale, self.input_shift, self.output_shift,
                             self.output_scale)))
