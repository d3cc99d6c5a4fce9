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
    activation_torch_types,
    check_differentiable,
    x,
)
from ..errors import DerivationError, UnknownActivationError, UnsupportedModuleError
from ..symbols import as_hyper
from .base import Op

#: activation functions and methods in a captured graph → (torch module type, {module argument:
#: (position in the call, keyword in the call)}); the module's entry in the activation table
#: reads the settings
_GRAPH_ACTIVATIONS: dict[str, tuple[str, dict[str, tuple[int, str]]]] = {
    **{f"{pre}{fn}": (mod, {}) for fn, mod in (("relu", "ReLU"), ("tanh", "Tanh"),
                                              ("sigmoid", "Sigmoid"))
       for pre in ("torch.", "torch.nn.functional.", "Tensor.")},
    "torch.selu": ("SELU", {}), "torch.nn.functional.selu": ("SELU", {}),
    **{f"torch.ops.aten.{fn}.default": (mod, {}) for fn, mod in (
        ("relu", "ReLU"), ("tanh", "Tanh"), ("sigmoid", "Sigmoid"), ("silu", "SiLU"))},
    "torch.nn.functional.silu": ("SiLU", {}),
    "torch.nn.functional.gelu": ("GELU", {"approximate": (1, "approximate")}),
    "torch.ops.aten.gelu.default": ("GELU", {"approximate": (1, "approximate")}),
    "torch.nn.functional.leaky_relu": ("LeakyReLU", {"negative_slope": (1, "negative_slope")}),
    "torch.ops.aten.leaky_relu.default": ("LeakyReLU",
                                          {"negative_slope": (1, "negative_slope")}),
    "torch.nn.functional.elu": ("ELU", {"alpha": (1, "alpha")}),
    "torch.nn.functional.softplus": ("Softplus", {"beta": (1, "beta"),
                                                  "threshold": (2, "threshold")}),
}


def _elementwise(module, x, y) -> bool:
    """Whether ``module`` maps ``x`` to ``y`` entry by entry (changing one entry of x changes
    only that entry of y)."""
    import torch

    x2 = x.clone()
    x2.view(-1)[0] += 0.5
    try:
        with torch.no_grad():
            y2 = module(x2)
    except Exception:  # noqa: BLE001 - not a function of one tensor
        return False
    d = (y2 - y).view(-1)
    return bool(d[0] != 0) and bool((d[1:] == 0).all())


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
    latex_name = r"\phi"
    torch_types = (*activation_torch_types(), "critsym.torch.modules.ActModule",
                   "critsym.torch.modules.Elementwise")
    graph_targets = tuple(_GRAPH_ACTIVATIONS)

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

    def latex(self) -> str:
        """φ(·) in LaTeX."""
        return sp.latex(self.phi(x), symbol_names={x: r"\cdot"})

    def torch_function(self, values: dict[str, float]):
        """φ as a torch callable, hyperparameters in its parameters taken from ``values``: the
        activation table's torch function for a named φ, else a torch lambdify of φ."""
        from ..activations import torch_activation, torch_lambdify
        from ..torch.modules import numeric_value

        if self.name in REGISTRY and type(self) is Act:
            ps = {k: numeric_value(v, values, f"{self.name} parameter {k}")
                  for k, v in self.params}
            return torch_activation(self.name, **ps)
        return torch_lambdify(self.numeric(values).phi())

    def numeric(self, values: dict[str, float]) -> Act:
        """The activation with its hyperparameters replaced by numbers from ``values``."""
        from ..torch.modules import numeric_value

        hp = self.hyperparameters()
        if not hp:
            return self
        return self.subs({s: numeric_value(s, values, f"{self!r}") for s in hp})

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """φ elementwise: the activation table's torch function, or a torch lambdify of φ."""
        from ..torch.modules import Elementwise

        return Elementwise(self.torch_function(ctx.values), repr(self),
                           op=self.numeric(ctx.values)), shape

    def export(self, ctx, fan: int):
        """The ``torch.nn`` module of the activation table (e.g. ``nn.Tanh``), else an
        ``ActModule`` computing φ."""
        from ..torch.modules import ActModule

        num = self.numeric(ctx.values)
        spec = REGISTRY.get(self.name)
        if type(self) is Act and spec is not None and spec.export_module is not None:
            ps = {**spec.defaults, **{k: float(v) for k, v in num.params}}
            return spec.export_module(**ps), fan
        return ActModule(num), fan

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op | None:
        from ..activations import module_activation
        from ..torch.modules import ActModule, Elementwise

        if isinstance(module, ActModule):
            return module.act
        if isinstance(module, Elementwise):
            if isinstance(module.op, Op):
                return module.op
            raise UnsupportedModuleError(
                f"submodule {reader.label(path)!r}: an elementwise map {module.name!r} that is "
                "not a critsym activation")
        found = module_activation(module)
        if found is None:
            raise UnsupportedModuleError(
                f"submodule {reader.label(path)!r}: {type(module).__name__} is not in the "
                "activation table")
        name, params = found
        return Act(name, **params)

    @classmethod
    def probe_torch(cls, module, reader, path: str) -> Op | None:
        """A parameter-free leaf module computing one of the activation table's φ (default
        parameters) elementwise, e.g. Hugging Face's ``GELUActivation`` (exact gelu),
        ``SiLUActivation``, ``NewGELUActivation`` (tanh gelu, where the table has it): tested
        on a probe tensor, |module(x) − φ(x)| ≤ 1e-9 (1 + |φ(x)|) everywhere."""
        import torch

        from ..activations import torch_activation
        from .contract import probe_leaf

        pair = probe_leaf(module)
        if pair is None or pair[1].shape != pair[0].shape:
            return None
        x, y = pair
        x, y = 3 * x, module(3 * x)  # values over [-10, 10]: tails tell gelu from its tanh form
        for name, spec in REGISTRY.items():
            if name == "identity" or spec.defaults:
                continue
            with torch.no_grad():
                want = torch_activation(name)(x)
            if ((y - want).abs() <= 1e-9 * (1 + want.abs())).all():
                return Act(name)
        if _elementwise(module, x, y):
            raise UnsupportedModuleError(
                f"submodule {reader.label(path)!r} ({type(module).__name__}) computes an "
                "elementwise function that is not in critsym's activation table "
                f"({', '.join(n for n in REGISTRY if n != 'identity')}); replace it by a "
                "module critsym reads (e.g. nn.GELU()), or build the architecture by hand with "
                "Act(<sympy expression>) for its φ")
        return None

    @classmethod
    def read_graph(cls, call, reader, path: str) -> Op | None:
        """An activation function or method: the same settings as its ``torch.nn`` module
        (e.g. ``F.gelu(x, approximate="tanh")`` reads as ``nn.GELU(approximate="tanh")``)."""
        from torch import nn

        module_name, settings = _GRAPH_ACTIVATIONS[call.name]
        kw = {}
        for key, (pos, word) in settings.items():
            v = call.argument(pos, word)
            if v is not None:
                kw[key] = v
        return cls.read_torch(getattr(nn, module_name)(**kw), reader, path)

    def apply(self, s):
        try:
            return s.map(lambda e, side: self.phi(e))
        except (TypeError, ValueError) as err:  # pragma: no cover - sympy internals
            raise DerivationError(f"cannot apply {self!r}: {err}") from err

    @classmethod
    def examples(cls):
        from .contract import Example
        from .linear import Linear

        hp = dict(sigma_w=1.2, sigma_b=0.3)
        return (Example(Act("erf") >> Linear(), hp, name="Act(erf) >> Linear"),
                Example(Act("leaky_relu", alpha=0.2) >> Linear(), hp,
                        name="Act(leaky_relu) >> Linear"),
                Example(Act(sp.sin(x) + x / 2) >> Linear(), hp, name="Act(custom) >> Linear"))
