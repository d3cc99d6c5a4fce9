"""Elementwise activation operator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from ..activations import (
    ELU,
    REGISTRY,
    ReLU,
    Sigmoid,
    Softplus,
    activation_expr,
    check_differentiable,
    x,
)
from ..errors import DerivationError, UnknownActivationError
from ..symbols import as_hyper
from .base import Op


@lru_cache(maxsize=256)
def _parse_custom(text: str) -> sp.Expr:
    """Rebuild a custom activation from its ``srepr``, knowing critsym's own sympy functions."""
    local = {"ReLU": ReLU, "ELU": ELU, "Sigmoid": Sigmoid, "Softplus": Softplus}
    return sp.sympify(sp.parse_expr(text, local_dict=local))


@dataclass(frozen=True, init=False)
class Act(Op):
    r"""x ↦ φ(x) elementwise.

    ``Act("tanh")``, ``Act("leaky_relu", alpha=0.1)``, or ``Act(expr)`` for a sympy expression
    in one variable (e.g. ``Act(x**3 + x)``).  The fold composes φ into the signal expression;
    its Jacobian factor φ'(x) enters χ_J at the next Linear layer.
    """

    name: str
    params: tuple[tuple[str, sp.Expr], ...]
    expr: str | None
    hyper_fields = ()

    def __init__(self, name_or_expr: object = "relu", params=(), expr: str | None = None,
                 **kw):
        if "name" in kw:  # from_dict passes the field by name
            name_or_expr = kw.pop("name")
        if isinstance(name_or_expr, sp.Basic):
            e = name_or_expr
            free = e.free_symbols
            if len(free) != 1:
                raise UnknownActivationError(
                    f"an activation expression must have exactly one free variable, got {e} "
                    f"with {sorted(map(str, free)) or 'none'}"
                )
            (var,) = free
            e = e.subs(var, x)
            check_differentiable(e, x)
            name, expr = "custom", sp.srepr(e)
        else:
            name = name_or_expr
            if not isinstance(name, str):
                raise UnknownActivationError(
                    f"Act takes an activation name or a sympy expression, got {name_or_expr!r}"
                )
            if name == "custom" and expr is None:
                raise UnknownActivationError("Act('custom') needs expr=<sympy srepr string>")
        ps = dict(params)
        ps.update(kw)
        if name != "custom":
            if name not in REGISTRY:
                activation_expr(name)  # raises UnknownActivationError with the list of names
            ps = {k: as_hyper(v, what=f"{name} parameter {k}") for k, v in ps.items()}
            activation_expr(name, x, **ps)  # validates parameter names
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", tuple(sorted(ps.items())))
        object.__setattr__(self, "expr", expr)

    def __repr__(self) -> str:
        if self.name == "custom":
            return f"Act({self.phi()})"
        ps = "".join(f", {k}={v}" for k, v in self.params)
        return f"Act({self.name!r}{ps})"

    def phi(self, arg: sp.Expr = x) -> sp.Expr:
        """φ(arg) as a sympy expression."""
        if self.name == "custom":
            return _parse_custom(self.expr).subs(x, arg)
        return activation_expr(self.name, arg, **dict(self.params))

    def subs(self, values: dict) -> Act:
        """The same activation with hyperparameters in its parameters replaced."""
        if self.name == "custom":
            return self
        from ..symbols import hyper_symbol

        sym = {(hyper_symbol(k) if isinstance(k, str) else k): v for k, v in values.items()}
        return Act(self.name, params=tuple((k, sp.sympify(v).subs(sym)) for k, v in self.params))

    def hyperparameters(self) -> set[sp.Symbol]:
        out: set[sp.Symbol] = set()
        for _, v in self.params:
            out |= sp.sympify(v).free_symbols
        return out

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """φ elementwise: the registry's torch function, or a torch lambdify of a custom φ."""
        from ..activations import torch_activation, torch_lambdify
        from ..torch.modules import Elementwise

        if self.name == "custom":
            fn = torch_lambdify(self.phi())
        else:
            ps = {k: ctx.value(v, f"{self.name} parameter {k}") for k, v in self.params}
            fn = torch_activation(self.name, **ps)
        return Elementwise(fn, repr(self)), shape

    def apply(self, s):
        try:
            return s.map(lambda e, side: self.phi(e))
        except (TypeError, ValueError) as err:  # pragma: no cover - sympy internals
            raise DerivationError(f"cannot apply {self!r}: {err}") from err
