"""The activation table: each activation is a sympy expression phi(x), with derivatives that
sympy knows, a numpy implementation (through lambdify), a torch implementation, the ``torch.nn``
module types that compute it (how their settings read as parameters, and which module to export
to) and its kink points.  Every part of critsym (the fold, numerics, kernel shaping, torch build,
import and export) reads this one table.

Kinked activations (relu, leaky relu, elu/selu) are custom sympy functions whose derivative is a
``Heaviside`` step, so that phi'(x)^2 stays a finite expression and the closed-form rules can
rewrite relu(x) = x * Heaviside(x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from .errors import DerivationError, UnknownActivationError, UnsupportedModuleError

x = sp.Symbol("x", real=True)

_SELU_ALPHA = sp.Float("1.6732632423543772848170429916717")
_SELU_SCALE = sp.Float("1.0507009873554804934193349852946")


class _Activation(sp.Function):
    """A named activation function: prints as \\operatorname{name}(x) in LaTeX."""

    nargs = 1
    latex_name = ""

    def _latex(self, printer, exp=None):
        s = r"%s\left(%s\right)" % (self.latex_name, printer._print(self.args[0]))
        return s if exp is None else r"%s^{%s}" % (s, exp)

    def _torchcode(self, printer):
        # resolved in torch_lambdify's namespace (_torch_functions)
        return "%s(%s)" % (type(self).__name__, printer._print(self.args[0]))


class ReLU(_Activation):
    r"""relu(x) = max(0, x); relu'(x) = Heaviside(x)."""

    nargs = 1
    latex_name = r"\operatorname{relu}"

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

    def _numpycode(self, printer):
        return "numpy.maximum(0, %s)" % printer._print(self.args[0])


class ELU(_Activation):
    r"""elu(x) = x for x > 0, e^x - 1 for x <= 0; elu'(x) = H(x) + e^x H(-x)."""

    nargs = 1
    latex_name = r"\operatorname{elu}"

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return arg if arg > 0 else sp.exp(arg) - 1
        return None

    def fdiff(self, argindex=1):
        a = self.args[0]
        return sp.Heaviside(a) + sp.exp(a) * sp.Heaviside(-a)

    def _numpycode(self, printer):
        a = printer._print(self.args[0])
        return f"numpy.where({a} > 0, {a}, numpy.expm1(numpy.minimum({a}, 0)))"


class Sigmoid(_Activation):
    r"""sigmoid(x) = 1 / (1 + e^{-x}); sigmoid' = sigmoid (1 - sigmoid)."""

    nargs = 1
    latex_name = r"\sigma"

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

    def _numpycode(self, printer):
        return "(0.5 + 0.5*numpy.tanh(0.5*(%s)))" % printer._print(self.args[0])


class Softplus(_Activation):
    r"""softplus(x) = log(1 + e^x); softplus' = sigmoid."""

    nargs = 1
    latex_name = r"\operatorname{softplus}"

    @classmethod
    def eval(cls, arg):
        if arg.is_number:
            return sp.log(1 + sp.exp(arg))
        return None

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

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


#: sympy functions with a kink (a jump in the value or a derivative) where their argument is 0
KINKED_FUNCTIONS = (sp.Heaviside, ReLU, ELU, sp.Abs, sp.sign, sp.Max, sp.Min, sp.DiracDelta)


@dataclass(frozen=True)
class ActivationSpec:
    """One table entry: how to build phi(x) from parameters, and its torch counterparts.

    ``torch_modules``: dotted names of ``torch.nn`` module types computing φ; ``read_module``
    turns such a module into parameters (raising :class:`UnsupportedModuleError` when its
    settings are not φ); ``export_module(**params)`` builds the module to export to
    (``None``: critsym's ``ActModule``); ``kinks``: points where φ or φ' is not smooth.
    """

    name: str
    build: Callable[..., sp.Expr]
    defaults: dict[str, float] = field(default_factory=dict)
    doc: str = ""
    #: ``torch_build(t, **params)``: the same φ applied to a torch tensor ``t`` (``None``: use
    #: a torch lambdify of ``build``)
    torch_build: Callable[..., object] | None = None
    torch_modules: tuple[str, ...] = ()
    read_module: Callable[..., dict] | None = None
    export_module: Callable[..., object] | None = None
    kinks: tuple[float, ...] = ()


def _leaky(x_, alpha):
    return alpha * x_ + (1 - alpha) * ReLU(x_)


def _nn(name: str) -> Callable[..., object]:
    """A builder of ``torch.nn.<name>()`` (no arguments)."""
    return lambda: getattr(_torch().nn, name)()


def _read_plain(m) -> dict:
    return {}


def _read_gelu(m) -> dict:
    if m.approximate != "none":
        raise UnsupportedModuleError(
            f"GELU(approximate={m.approximate!r}); critsym's gelu is the exact xΦ(x): use "
            "nn.GELU() (approximate='none')")
    return {}


def _read_gelu_tanh(m) -> dict:
    if m.approximate != "tanh":
        raise UnsupportedModuleError(
            f"GELU(approximate={m.approximate!r}) is not the tanh approximation")
    return {}


def _gelu_tanh(x_):
    """x/2 (1 + tanh(√(2/π)(x + 0.044715 x³))), torch's GELU(approximate="tanh")."""
    return x_ * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x_ + sp.Rational(44715, 10**6) * x_**3))) / 2


def _read_leaky(m) -> dict:
    return {"alpha": float(m.negative_slope)}


def _read_unit(attr: str, what: str):
    def read(m) -> dict:
        if float(getattr(m, attr)) != 1.0:
            raise UnsupportedModuleError(
                f"{type(m).__name__}({attr}={getattr(m, attr)}); critsym's {what} has {attr} = 1")
        return {}

    return read


REGISTRY: dict[str, ActivationSpec] = {
    s.name: s
    for s in [
        ActivationSpec("identity", lambda x_: x_, doc="phi(x) = x", torch_build=lambda t: t),
        ActivationSpec("relu", lambda x_: ReLU(x_), doc="phi(x) = max(0, x)",
                       torch_build=lambda t: _torch().relu(t),
                       torch_modules=("torch.nn.ReLU",), read_module=_read_plain,
                       export_module=_nn("ReLU"), kinks=(0.0,)),
        ActivationSpec(
            "leaky_relu", _leaky, {"alpha": 0.01}, "phi(x) = alpha x + (1 - alpha) relu(x)",
            lambda t, alpha: alpha * t + (1 - alpha) * _torch().relu(t),
            torch_modules=("torch.nn.LeakyReLU",), read_module=_read_leaky,
            export_module=lambda alpha: _torch().nn.LeakyReLU(alpha), kinks=(0.0,),
        ),
        ActivationSpec("tanh", sp.tanh, doc="phi(x) = tanh(x)", torch_build=lambda t: t.tanh(),
                       torch_modules=("torch.nn.Tanh",), read_module=_read_plain,
                       export_module=_nn("Tanh")),
        ActivationSpec("erf", sp.erf, doc="phi(x) = erf(x)", torch_build=lambda t: t.erf()),
        ActivationSpec(
            "gelu",
            lambda x_: x_ * (1 + sp.erf(x_ / sp.sqrt(2))) / 2,
            doc="phi(x) = x Phi(x) (exact gelu)",
            torch_build=lambda t: _torch().nn.functional.gelu(t),
            torch_modules=("torch.nn.GELU",), read_module=_read_gelu, export_module=_nn("GELU"),
        ),
        ActivationSpec(
            "gelu_tanh", _gelu_tanh,
            doc="phi(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (tanh-approximate gelu)",
            torch_build=lambda t: _torch().nn.functional.gelu(t, approximate="tanh"),
            torch_modules=("torch.nn.GELU",), read_module=_read_gelu_tanh,
            export_module=lambda: _torch().nn.GELU(approximate="tanh"),
        ),
        ActivationSpec(
            "derf", lambda x_, alpha: sp.erf(alpha * x_), {"alpha": 1.0},
            doc="phi(x) = erf(alpha x), no rescaling: the 'Derf' replacement of LayerNorm in "
                "normalization-free transformers, in the form of Alekseev's transformers-apjn "
                "code (github labofdoubt/transformers-apjn, apjn/theory.py)",
            torch_build=lambda t, alpha: (alpha * t).erf(),
        ),
        ActivationSpec("silu", lambda x_: x_ * Sigmoid(x_), doc="phi(x) = x sigmoid(x)",
                       torch_build=lambda t: _torch().nn.functional.silu(t),
                       torch_modules=("torch.nn.SiLU",), read_module=_read_plain,
                       export_module=_nn("SiLU")),
        ActivationSpec("swish", lambda x_: x_ * Sigmoid(x_), doc="phi(x) = x sigmoid(x)",
                       torch_build=lambda t: _torch().nn.functional.silu(t)),
        ActivationSpec("sigmoid", Sigmoid, doc="phi(x) = 1/(1+e^-x)",
                       torch_build=lambda t: t.sigmoid(),
                       torch_modules=("torch.nn.Sigmoid",), read_module=_read_plain,
                       export_module=_nn("Sigmoid")),
        ActivationSpec("softplus", Softplus, doc="phi(x) = log(1+e^x)",
                       torch_build=lambda t: _torch().nn.functional.softplus(t),
                       torch_modules=("torch.nn.Softplus",),
                       read_module=_read_unit("beta", "softplus"),
                       export_module=_nn("Softplus")),
        ActivationSpec("elu", lambda x_: ELU(x_), doc="phi(x) = x (x>0), e^x - 1 (x<=0)",
                       torch_build=lambda t: _torch().nn.functional.elu(t),
                       torch_modules=("torch.nn.ELU",), read_module=_read_unit("alpha", "elu"),
                       export_module=_nn("ELU"), kinks=(0.0,)),
        ActivationSpec(
            "selu", lambda x_: _SELU_SCALE * ELU(x_) + _SELU_SCALE * (_SELU_ALPHA - 1) * (
                ELU(x_) - ReLU(x_)
            ),
            doc="phi(x) = lambda (x (x>0), alpha (e^x - 1) (x<=0))",
            torch_build=lambda t: _torch().nn.functional.selu(t),
            torch_modules=("torch.nn.SELU",), read_module=_read_plain, export_module=_nn("SELU"),
            kinks=(0.0,),
        ),
        ActivationSpec("sin", sp.sin, doc="phi(x) = sin(x)", torch_build=lambda t: t.sin()),
    ]
}


def module_activation(module) -> tuple[str, dict] | None:
    """(name, params) of the table entry whose ``torch_modules`` holds ``type(module)``
    or a base class of it (``None`` if none does); the module's settings are checked by the
    entry's ``read_module``."""
    refused: UnsupportedModuleError | None = None
    for cls in type(module).__mro__:
        for spec in REGISTRY.values():
            for name in spec.torch_modules:
                if _resolves_to(name, cls):
                    try:  # several entries may share a module type (GELU exact / tanh)
                        return spec.name, spec.read_module(module) if spec.read_module else {}
                    except UnsupportedModuleError as e:
                        refused = refused or e
    if refused is not None:
        raise refused
    return None


def _resolves_to(dotted: str, cls: type) -> bool:
    mod, _, attr = dotted.rpartition(".")
    import importlib

    try:
        return getattr(importlib.import_module(mod), attr) is cls
    except (ImportError, AttributeError):
        return False


def activation_torch_types() -> tuple[str, ...]:
    """Every ``torch.nn`` module type named in the table (each once)."""
    return tuple(dict.fromkeys(n for spec in REGISTRY.values() for n in spec.torch_modules))


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


def _either(tf, mf):
    """Apply the torch function to tensors and the math function to plain numbers."""
    return lambda v: tf(v) if isinstance(v, _torch().Tensor) else mf(v)


def _torch_functions() -> dict[str, Callable]:
    """torch counterparts of the sympy functions activations are written with (lambdify)."""
    import math

    torch = _torch()
    return {
        "ReLU": torch.relu,
        "ELU": torch.nn.functional.elu,
        "Sigmoid": torch.sigmoid,
        "Softplus": torch.nn.functional.softplus,
        "Heaviside": lambda a, h0=0.5: torch.heaviside(a, torch.full_like(a, h0)),
        **{n: _either(getattr(torch, n), getattr(math, n))
           for n in ("tanh", "erf", "exp", "log", "sqrt", "sin", "cos", "sinh", "cosh", "atan")},
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
