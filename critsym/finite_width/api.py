r"""``log_norm``: the law of ln(|x^d|^2/|x^0|^2) for a recognised architecture.

order="leading"  the proportional-limit Gaussian N(d ln q + tau M, tau V), tau = d/n
order="1/n"      O(1/n)-accurate moments: the standard ResNet's 1/n expansion with its finite-depth
                 (transient) terms; for the exact-law models (MLP, Balanced ResNet) the exact
                 moments,
                 of which the 1/n expansion is a truncation (``order_used`` says "exact")
order="exact"    exact moments: MLP and Balanced ResNet only; the standard ResNet raises
                 NotApplicableError(reason="no_exact_law") -- use order="1/n"

Not applicable (NotApplicableError, a CritsymError): non-homogeneous activations, LayerNorm, biases,
depth-scaled branches, skip weights != 1, anything unrecognised.  Nothing is extrapolated.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from critsym.errors import DerivationError, HyperparameterError
from critsym.finite_width import laws
from critsym.finite_width.errors import NotApplicableError, check_width_depth
from critsym.finite_width.recognize import recognize
from critsym.finite_width.result import LogNormLaw
from critsym.finite_width.spec import ModelSpec

ORDERS = ("leading", "1/n", "exact")


def gain_from_recursion(arch: object, **hp: float) -> float | None:
    """q = F(K)/K at K = 1 from critsym's variance recursion (None if the core is unavailable or
    the architecture is a bare ModelSpec).  Homogeneous, bias-free maps are linear in K."""
    if isinstance(arch, ModelSpec):
        return None
    try:
        from critsym import derive  # type: ignore[attr-defined]
    except ImportError:
        return None
    theory = derive(arch)
    f = theory.F.subs(theory.K, 1)
    subs = {s: hp[str(s)] for s in f.free_symbols if str(s) in hp}
    f = f.subs(subs)
    if f.free_symbols:
        free = sorted(map(str, f.free_symbols))
        raise HyperparameterError(f"variance map has free symbols {free}: pass their values")
    return float(f)


def _exp(x: float) -> float:
    """e^x, +inf beyond float64's range (a kurtosis of a very deep, narrow network)."""
    return math.exp(x) if x < 709.0 else math.inf


def _exact_mlp_kurtosis(spec: ModelSpec, depth: int, n: int) -> float:
    """3 E[R^2]/E[R]^2 for R = |x^0|^2 prod_l Y_l: (1 + 2/n) * (E Y^2/(E Y)^2)^d."""
    a2 = spec.alpha**2
    k = np.arange(n + 1)
    p = stats.binom.pmf(k, n, 0.5)
    mean_y = k + a2 * (n - k)
    second = 2 * k + 2 * a2 * a2 * (n - k) + mean_y**2
    ratio = float(p @ second) / float(p @ mean_y) ** 2
    return 3.0 * (1 + 2.0 / n) * _exp(depth * math.log(ratio))


def _exact_balanced_kurtosis(spec: ModelSpec, depth: int, n: int) -> float:
    lam = 2.0 * n / spec.c
    ratio = 1.0 + 2.0 * (n + 2 * lam) / (n + lam) ** 2
    return 3.0 * (1 + 2.0 / n) * _exp(depth * math.log(ratio))


def log_norm(arch: object, depth: int, width: int, order: str = "leading",
             **hp: float) -> LogNormLaw:
    """Law of ln(|x^d|^2/|x^0|^2) for ``depth`` repetitions of the block ``arch`` at ``width``.

    ``arch`` is a critsym architecture (see :mod:`critsym.finite_width.recognize`) or a
    :class:`ModelSpec`; ``hp`` gives values to free symbols of the operators.
    """
    check_width_depth(depth, width)
    if order not in ORDERS:
        raise HyperparameterError(f"order must be one of {ORDERS}, got {order!r}")
    depth, width = int(depth), int(width)
    spec = recognize(arch, **hp)
    q_closed = spec.gain()
    q_rec = gain_from_recursion(arch, **hp)
    if q_rec is not None and not math.isclose(q_rec, q_closed, rel_tol=1e-9):
        raise DerivationError(f"variance recursion gives q = {q_rec}, the log-norm model "
                              f"{q_closed}: the architecture was mis-recognised")
    q = q_rec if q_rec is not None else q_closed
    source = "variance recursion" if q_rec is not None else "closed form"
    log_gain = depth * math.log(q)
    tau = depth / width
    hypo: float | None = 0.0
    lag1: float | None = 0.0
    kurt_exact = None
    per_mean = per_var = None
    if spec.kind == "resnet":
        cst = laws.resnet_constants(spec.c)
        M, V = cst.M, cst.V
        hypo, lag1 = -cst.kappa / width, cst.lag1
        if order == "exact":
            raise NotApplicableError("no exact law for the standard ResNet (its increments are "
                                     "correlated); use order='1/n'", "no_exact_law")
        if order == "1/n":
            mean, var = laws.resnet_finite_depth(spec.c, depth, width)
            used = "1/n"
        else:
            mean, var, used = tau * M, tau * V, "leading"
    else:
        if spec.kind == "mlp":
            _, M, V = laws.mlp_leading(spec.c, spec.alpha)
        else:
            _, M, V = laws.balanced_leading(spec.c)
        if order == "leading":
            mean, var, used = tau * M, tau * V, "leading"
        else:
            lm = (laws.mlp_layer_moments(width, spec.c, spec.alpha) if spec.kind == "mlp"
                  else laws.balanced_layer_moments(width, spec.c))
            per_mean, per_var = lm.mean, lm.var
            mean, var, used = depth * lm.mean - log_gain, depth * lm.var, "exact"
        kurt_exact = (_exact_mlp_kurtosis(spec, depth, width) if spec.kind == "mlp"
                      else _exact_balanced_kurtosis(spec, depth, width))
    total_mean = log_gain + mean
    return LogNormLaw(
        spec=spec, depth=depth, width=width, order=order, order_used=used, mean=float(total_mean),
        var=float(var), M=float(M), V=float(V), log_gain=float(log_gain), gain_source=source,
        hypoactivation=hypo, lag1=lag1, kurtosis=3.0 * _exp(float(var)),
        kurtosis_exact=kurt_exact, per_layer_mean=per_mean, per_layer_var=per_var,
    )
