"""Recognise the architectures the log-norm law covers, from critsym operators.

Covered (all bias-free and positively 1-homogeneous):
    Act("relu") >> Linear(sigma_w)                      MLP, c = sigma_w^2
    Act("leaky_relu", alpha=a) >> Linear(sigma_w)       leaky MLP
    Residual(Act("relu") >> Linear(sigma_w), mu=1)      standard ResNet, c = sigma_w^2
    BalancedResidual(sigma_w)                           Balanced ResNet, c = sigma_w^2
(the block is repeated ``depth`` times; a Sequential of one block is unwrapped).  Everything
else raises
:class:`NotApplicableError` with a ``reason``: "activation" (non-homogeneous activation),
"layernorm", "bias", "depth_scaled" (a branch variance that shrinks with depth: the infinite-width
Gaussian limit holds instead), "skip" (mu != 1) or "unsupported".

Operators are read by duck typing (class name and the documented attributes), so this module
does not
import the core and works with any operator that follows the core's conventions.
"""

from __future__ import annotations

import sympy as sp

from critsym.errors import HyperparameterError
from critsym.finite_width.errors import NotApplicableError
from critsym.finite_width.spec import ModelSpec

DEPTH_SYMBOLS = ("depth", "d", "L", "n_layers")
HOMOGENEOUS = {"relu": 0.0, "leaky_relu": None, "linear": 1.0, "identity": 1.0}


def _name(op: object) -> str:
    return type(op).__name__


def _number(expr: object, hp: dict, what: str) -> tuple[float, bool]:
    """Numeric value of a (sympy) hyperparameter; second item: depends on depth."""
    e = sp.sympify(expr)
    depth_dep = any(str(s) in DEPTH_SYMBOLS for s in e.free_symbols)
    subs = {s: hp[str(s)] for s in e.free_symbols if str(s) in hp}
    e = e.subs(subs)
    if depth_dep and e.free_symbols:
        return float("nan"), True
    if e.free_symbols:
        raise HyperparameterError(
            f"{what} = {expr} has free symbols {sorted(map(str, e.free_symbols))}: pass values "
            "as keyword arguments")
    val = complex(e)
    if val.imag != 0 or val.real != val.real:
        raise HyperparameterError(f"{what} = {expr} is not a real number")
    return float(val.real), depth_dep


def _unwrap(arch: object) -> object:
    while _name(arch) == "Sequential" and len(getattr(arch, "ops", ())) == 1:
        arch = arch.ops[0]
    return arch


def _ops(arch: object) -> tuple:
    return tuple(arch.ops) if _name(arch) == "Sequential" else (arch,)


def _act_alpha(op: object, hp: dict | None = None) -> float:
    name = str(getattr(op, "name", "")).lower()
    params = dict(getattr(op, "params", {}) or {})
    if name == "relu":
        return 0.0
    if name in ("leaky_relu", "leakyrelu", "leaky"):
        for key in ("alpha", "negative_slope", "slope", "a"):
            if key in params:
                a, _ = _number(params[key], hp or {}, f"leaky relu {key}")
                if not 0 <= a <= 1:
                    raise NotApplicableError(f"leaky relu slope {a} outside [0, 1]", "activation")
                return a
        return 0.01
    raise NotApplicableError(
        f"activation {name!r} is not positively 1-homogeneous: the log-norm law does not apply "
        "(the norm does not decouple from the direction)", "activation")


def _check_no_bias(lin: object, hp: dict) -> None:
    b = getattr(lin, "sigma_b", 0)
    bval, _ = _number(b if b is not None else 0, hp, "sigma_b")
    if bval != 0:
        raise NotApplicableError("biases break positive homogeneity: the log-norm law (derived "
                                 "for bias-free networks) does not apply", "bias")


def _act_linear(block: object, hp: dict) -> tuple[float, float, bool]:
    ops = _ops(_unwrap(block))
    names = [_name(o) for o in ops]
    if any(n in ("LayerNorm", "LN") for n in names):
        raise NotApplicableError("LayerNorm fixes the norm: the log-norm law does not apply",
                                 "layernorm")
    if names != ["Act", "Linear"]:
        raise NotApplicableError(
            f"block {names} is not Act >> Linear; the log-norm law is derived for relu/leaky-relu "
            "followed by a bias-free Linear", "unsupported")
    act, lin = ops
    alpha = _act_alpha(act, hp)
    _check_no_bias(lin, hp)
    sw, dep = _number(lin.sigma_w, hp, "sigma_w")
    return alpha, sw, dep


def recognize(arch: object, **hp: float) -> ModelSpec:
    """Map an architecture (one repeated block) to a :class:`ModelSpec`, or raise
    NotApplicableError."""
    if isinstance(arch, ModelSpec):
        if arch.depth_scaled:
            raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
        return arch
    arch = _unwrap(arch)
    kind = _name(arch)
    if kind == "BalancedResidual":
        alpha = _act_alpha(getattr(arch, "act", None) or _Relu())
        if alpha != 0:
            raise NotApplicableError("BalancedResidual is modelled with relu only", "activation")
        sw, dep = _number(arch.sigma_w, hp, "sigma_w")
        if dep:
            raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
        return ModelSpec("balanced", sw * sw)
    if kind == "Residual":
        mu, mdep = _number(getattr(arch, "mu", 1), hp, "mu")
        alpha, sw, dep = _act_linear(arch.branch, hp)
        if dep or mdep:
            raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
        if mu != 1:
            raise NotApplicableError(f"skip weight mu = {mu} != 1: no log-norm law derived",
                                     "skip")
        if alpha != 0:
            raise NotApplicableError("the ResNet law is derived for relu branches only",
                                     "activation")
        return ModelSpec("resnet", sw * sw)
    if kind in ("Sequential", "Act", "Linear", "LayerNorm"):
        alpha, sw, dep = _act_linear(arch, hp)
        if dep:
            raise NotApplicableError("an MLP whose weight variance depends on depth is not covered",
                                     "unsupported")
        return ModelSpec("mlp", sw * sw, alpha)
    raise NotApplicableError(f"no log-norm law for {kind}", "unsupported")


class _Relu:
    name = "relu"
    params: dict = {}


_DEPTH_MSG = ("depth-scaled residual branch (variance ~ c/(n d)): Var ln|x^d|^2 = O(1/n) at every "
              "depth, the infinite-width Gaussian limit holds and there is no d/n law")
