"""The activation registry: each activation is a sympy expression phi(x), with derivatives that
sympy knows, a numpy implementation (through lambdify) and a torch implementation.

Kinked activations (relu, leaky relu, elu/selu) are custom sympy functions whose derivative is a
``Heaviside`` step, so that phi'(x)^2 stays a finite expression and the closed-form rules can
rewrite relu(x) = x * Heaviside(x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from .errors import DerivationError, UnknownActivationError

x = sp.Symbol("x", real=True)

_SELU_ALPHA = sp.Float("1.6732632423543772848170429916717")
_SELU_SCALE = sp.Float("1.0507009873554804934193349852946")


class ReLU(sp.Function):
    r"""relu(x) = max(0, x); relu'(x) = Heaviside(x)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return sp.Max(0, arg)
        if arg.is_nonnegative:
            return arg
        if arg.is_nonpositive:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0])

    def _eval_rewrite_as_Heaviside(self, arg, **kwargs):
        return arg * sp.Heaviside(arg)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)

    def _numpycode(self, printer):
        return "numpy.maximum(0, %s)" % printer._print(self.args[0])


class ELU(sp.Function):
    r"""elu(x) = x for x > 0, e^x - 1 for x <= 0; elu'(x) = H(x) + e^x H(-x)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return arg if arg > 0 else sp.exp(arg) - 1
        return None

    def fdiff(self, argindex=1):
        a = self.args[0]
        return sp.Heaviside(a) + sp.exp(a) * sp.Heaviside(-a)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{elu}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)

    def _numpycode(self, printer):
        a = printer._print(self.args[0])
        return f"numpy.where({a} > 0, {a}, numpy.expm1(numpy.minimum({a}, 0)))"


class Sigmoid(sp.Function):
    r"""sigmoid(x) = 1 / (1 + e^{-x}); sigmoid' = sigmoid (1 - sigmoid)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return 1 / (1 + sp.exp(-arg))
        return None

    def fdiff(self, argindex=1):
        s = Sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _latex(self, printer, exp=None):
        s = r"\sigma\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)

    def _numpycode(self, printer):
        return "(0.5 + 0.5*numpy.tanh(0.5*(%s)))" % printer._print(self.args[0])


class Softplus(sp.Function):
    r"""softplus(x) = log(1 + e^x); softplus' = sigmoid."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return sp.log(1 + sp.exp(arg))
        return None

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    def _latex(self, printer, exp=None):
        s = r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)

    def _numpycode(self, printer):
        return "numpy.logaddexp(0, %s)" % printer._print(self.args[0])


#: functions the numpy printer needs help with (lambdify ``modules`` entries)
NUMPY_FUNCTIONS: dict[str, Callable] = {}
MPMATH_FUNCTIONS: dict[str, Callable] = {}


def _mp_setup() -> None:
    import mpmath

    MPMATH_FUNCTIONS.update(
        {
            "ReLU": lambda a: mpmath.mpf(0) if a < 0 else a,
            "ELU": lambda a: a if a > 0 else mpmath.expm1(a),
            "Sigmoid": lambda a: 1 / (1 + mpmath.exp(-a)),
            "Softplus": lambda a: mpmath.log1p(mpmath.exp(a)) if a < 30 else a + mpmath.log1p(
                mpmath.exp(-a)
            ),
            "Heaviside": lambda a, h0=0.5: mpmath.mpf(1) if a > 0 else (
                mpmath.mpf(0) if a < 0 else mpmath.mpf(h0)
            ),
        }
    )


_mp_setup()


@dataclass(frozen=True)
class ActivationSpec:
    """One registry entry: how to build phi(x) from parameters, and the torch counterpart."""

    name: str
    build: Callable[..., sp.Expr]
    defaults: dict[str, float] = field(default_factory=dict)
    doc: str = ""
    #: ``torch_build(t, **params)``: the same φ applied to a torch tensor ``t`` (``None``: use
    #: a torch lambdify of ``build``)
    torch_build: Callable[..., object] | None = None


def _leaky(x_, alpha):
    return alpha * x_ + (1 - alpha) * ReLU(x_)


REGISTRY: dict[str, ActivationSpec] = {
    s.name: s
    for s in [
        ActivationSpec("identity", lambda x_: x_, doc="phi(x) = x", torch_build=lambda t: t),
        ActivationSpec("relu", lambda x_: ReLU(x_), doc="phi(x) = max(0, x)",
                       torch_build=lambda t: _torch().relu(t)),
        ActivationSpec(
            "leaky_relu", _leaky, {"alpha": 0.01}, "phi(x) = alpha x + (1 - alpha) relu(x)",
            lambda t, alpha: alpha * t + (1 - alpha) * _torch().relu(t),
        ),
        ActivationSpec("tanh", sp.tanh, doc="phi(x) = tanh(x)", torch_build=lambda t: t.tanh()),
        ActivationSpec("erf", sp.erf, doc="phi(x) = erf(x)", torch_build=lambda t: t.erf()),
        ActivationSpec(
            "gelu",
            lambda x_: x_ * (1 + sp.erf(x_ / sp.sqrt(2))) / 2,
            doc="phi(x) = x Phi(x) (exact gelu)",
            torch_build=lambda t: _torch().nn.functional.gelu(t),
        ),
        ActivationSpec("silu", lambda x_: x_ * Sigmoid(x_), doc="phi(x) = x sigmoid(x)",
                       torch_build=lambda t: _torch().nn.functional.silu(t)),
        ActivationSpec("swish", lambda x_: x_ * Sigmoid(x_), doc="phi(x) = x sigmoid(x)",
                       torch_build=lambda t: _torch().nn.functional.silu(t)),
        ActivationSpec("sigmoid", Sigmoid, doc="phi(x) = 1/(1+e^-x)",
                       torch_build=lambda t: t.sigmoid()),
        ActivationSpec("softplus", Softplus, doc="phi(x) = log(1+e^x)",
                       torch_build=lambda t: _torch().nn.functional.softplus(t)),
        ActivationSpec("elu", lambda x_: ELU(x_), doc="phi(x) = x (x>0), e^x - 1 (x<=0)",
                       torch_build=lambda t: _torch().nn.functional.elu(t)),
        ActivationSpec(
            "selu", lambda x_: _SELU_SCALE * ELU(x_) + _SELU_SCALE * (_SELU_ALPHA - 1) * (
                ELU(x_) - ReLU(x_)
            ),
            doc="phi(x) = lambda (x (x>0), alpha (e^x - 1) (x<=0))",
            torch_build=lambda t: _torch().nn.functional.selu(t),
        ),
        ActivationSpec("sin", sp.sin, doc="phi(x) = sin(x)", torch_build=lambda t: t.sin()),
    ]
}


def activation_names() -> list[str]:
    """The names of the built-in activations."""
    return sorted(REGISTRY)


def activation_expr(name: str, arg: sp.Expr = x, **params) -> sp.Expr:
    """phi(arg) for a registered activation name."""
    try:
        spec = REGISTRY[name]
    except KeyError:
        raise UnknownActivationError(
            f"unknown activation {name!r}; built in are {', '.join(activation_names())}, "
            "or pass a sympy expression in one variable, e.g. Act(x**3)"
        ) from None
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise UnknownActivationError(
            f"activation {name!r} takes parameters {sorted(spec.defaults) or 'none'}, "
            f"got {sorted(unknown)}"
        )
    kw = {**spec.defaults, **params}
    return spec.build(arg, **kw)


def check_differentiable(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """d expr / d var, or a :class:`DerivationError` if sympy leaves it unevaluated."""
    d = sp.diff(expr, var)
    if d.has(sp.Derivative) or d.has(sp.Subs):
        raise DerivationError(
            f"sympy cannot differentiate {expr} with respect to {var}: it contains an undefined "
            "function. Write the activation with functions sympy knows (exp, tanh, erf, ...)."
        )
    return d


# ---------------------------------------------------------------------------- torch
def _torch():
    import torch

    return torch


def _torch_functions() -> dict[str, Callable]:
    torch = _torch()
    return {
        "ReLU": torch.relu,
        "ELU": torch.nn.functional.elu,
        "Sigmoid": torch.sigmoid,
        "Softplus": torch.nn.functional.softplus,
        "Heaviside": lambda a, h0=0.5: torch.heaviside(a, torch.full_like(a, h0)),
        "erf": torch.erf,
        "erfc": torch.erfc,
        "Abs": torch.abs,
        "sign": torch.sign,
    }


def torch_lambdify(expr: sp.Expr, var: sp.Symbol = x) -> Callable:
    """A torch callable t ↦ expr(var = t) for a sympy expression in one variable (numbers only
    otherwise), through sympy's ``lambdify`` with the torch module and critsym's functions."""
    expr = sp.sympify(expr)
    extra = expr.free_symbols - {var}
    if extra:
        raise DerivationError(
            f"cannot build a torch function of {expr}: it has free symbols "
            f"{sorted(map(str, extra))} besides {var}; substitute numeric values first"
        )
    torch = _torch()
    f = sp.lambdify(var, expr, modules=[_torch_functions(), "torch"])

    def phi(t):
        out = f(t)
        if not isinstance(out, torch.Tensor):  # a constant expression
            out = torch.full_like(t, float(out))
        return out

    return phi


def torch_activation(name: str, **params: float) -> Callable:
    r"""The torch version of a registered activation: a callable tensor ↦ φ(tensor).

    Numeric ``params`` only (hyperparameters substituted).  Entries without a hand-written
    torch function use :func:`torch_lambdify` of their sympy expression.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        activation_expr(name)  # raises UnknownActivationError with the list of names
    assert spec is not None
    kw = {**spec.defaults, **params}
    if spec.torch_build is not None:
        fn = spec.torch_build
        return lambda t: fn(t, **kw)
    return torch_lambdify(activation_expr(name, x, **kw))
