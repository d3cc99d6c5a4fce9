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

Rules are registered per operator class with :func:`functools.singledispatch` (a registry that
follows the class hierarchy): :func:`block_rule` maps a whole block to a :class:`ModelSpec`,
:func:`layer_rule` describes one layer of an Act >> Linear block.  A new operator that the law
covers registers its rule beside these; nothing here lists operator types in a ladder.
"""

from __future__ import annotations

from functools import singledispatch

import sympy as sp

from critsym.errors import HyperparameterError
from critsym.finite_width.errors import NotApplicableError
from critsym.finite_width.spec import ModelSpec
from critsym.ops import Act, BalancedResidual, LayerNorm, Linear, Op, Residual, Sequential

DEPTH_SYMBOLS = ("depth", "d", "L", "n_layers")


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


def _unwrap(arch: Op) -> Op:
    while isinstance(arch, Sequential) and len(arch.ops) == 1:
        arch = arch.ops[0]
    return arch


def _act_alpha(op: Act, hp: dict | None = None) -> float:
    """The negative-side slope of a positively 1-homogeneous activation (relu: 0)."""
    name = op.name
    params = dict(op.params)
    if name == "relu":
        return 0.0
    if name == "leaky_relu":
        a, _ = _number(params.get("alpha", 0.01), hp or {}, "leaky relu alpha")
        if not 0 <= a <= 1:
            raise NotApplicableError(f"leaky relu slope {a} outside [0, 1]", "activation")
        return a
    raise NotApplicableError(
        f"activation {name!r} is not positively 1-homogeneous: the log-norm law does not apply "
        "(the norm does not decouple from the direction)", "activation")


def _check_no_bias(lin: Linear, hp: dict) -> None:
    bval, _ = _number(lin.sigma_b, hp, "sigma_b")
    if bval != 0:
        raise NotApplicableError("biases break positive homogeneity: the log-norm law (derived "
                                 "for bias-free networks) does not apply", "bias")


# ----------------------------------------------------------------------------- layer rules
@singledispatch
def layer_rule(op: Op, hp: dict) -> tuple[str, object]:
    """(role, value) of one layer of an Act >> Linear block: ("act", α) or ("linear",
    (σ_w, depth dependent)); other operators are not covered."""
    return ("other", type(op).__name__)


@layer_rule.register
def _(op: Act, hp: dict):
    return ("act", op)


@layer_rule.register
def _(op: Linear, hp: dict):
    return ("linear", op)


@layer_rule.register
def _(op: LayerNorm, hp: dict):
    raise NotApplicableError("LayerNorm fixes the norm: the log-norm law does not apply",
                             "layernorm")


def _act_linear(block: Op, hp: dict) -> tuple[float, float, bool]:
    b = _unwrap(block)
    ops = b.ops if isinstance(b, Sequential) else (b,)
    rules = [layer_rule(o, hp) for o in ops]  # raises for LayerNorm wherever it is
    roles = [r for r, _ in rules]
    if roles != ["act", "linear"]:
        names = [type(o).__name__ for o in ops]
        raise NotApplicableError(
            f"block {names} is not Act >> Linear; the log-norm law is derived for relu/leaky-relu "
            "followed by a bias-free Linear", "unsupported")
    (_, act), (_, lin) = rules
    alpha = _act_alpha(act, hp)
    _check_no_bias(lin, hp)
    sw, dep = _number(lin.sigma_w, hp, "sigma_w")
    return alpha, sw, dep


# ----------------------------------------------------------------------------- block rules
@singledispatch
def block_rule(arch: Op, hp: dict) -> ModelSpec:
    """The :class:`ModelSpec` of one repeated block (registered per operator class)."""
    raise NotApplicableError(f"no log-norm law for {type(arch).__name__}", "unsupported")


@block_rule.register
def _(arch: BalancedResidual, hp: dict) -> ModelSpec:
    sw, dep = _number(arch.sigma_w, hp, "sigma_w")
    if dep:
        raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
    return ModelSpec("balanced", sw * sw)


@block_rule.register
def _(arch: Residual, hp: dict) -> ModelSpec:
    mu, mdep = _number(arch.mu, hp, "mu")
    alpha, sw, dep = _act_linear(arch.branch, hp)
    if dep or mdep:
        raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
    if mu != 1:
        raise NotApplicableError(f"skip weight mu = {mu} != 1: no log-norm law derived", "skip")
    if alpha != 0:
        raise NotApplicableError("the ResNet law is derived for relu branches only",
                                 "activation")
    return ModelSpec("resnet", sw * sw)


def _mlp(arch: Op, hp: dict) -> ModelSpec:
    alpha, sw, dep = _act_linear(arch, hp)
    if dep:
        raise NotApplicableError("an MLP whose weight variance depends on depth is not covered",
                                 "unsupported")
    return ModelSpec("mlp", sw * sw, alpha)


for _cls in (Sequential, Act, Linear, LayerNorm):
    block_rule.register(_cls, _mlp)


def recognize(arch: object, **hp: float) -> ModelSpec:
    """Map an architecture (one repeated block) to a :class:`ModelSpec`, or raise
    NotApplicableError."""
    if isinstance(arch, ModelSpec):
        if arch.depth_scaled:
            raise NotApplicableError(_DEPTH_MSG, "depth_scaled")
        return arch
    if not isinstance(arch, Op):
        raise NotApplicableError(f"no log-norm law for {type(arch).__name__}: pass a critsym "
                                 "architecture or a ModelSpec", "unsupported")
    return block_rule(_unwrap(arch), hp)


_DEPTH_MSG = ("depth-scaled residual branch (variance ~ c/(n d)): Var ln|x^d|^2 = O(1/n) at every "
              "depth, the infinite-width Gaussian limit holds and there is no d/n law")
