r"""DKS, TAT and TReLU activation transforms, for dks's plain chain or any critsym architecture.

φ̂(x) = γ (φ(α x + β) + δ)  (output_scale γ, input_scale α, input_shift β, output_shift δ), or
φ̂(x) = γ · leaky_relu_s(x) with negative slope s for TReLU.

* **DKS** (Martens et al. 2021): local Q(1) = 1 (γ), C(0) = 0 (δ = -E[φ(αz+β)]),
  Q'(1) = ``q_slope`` (1) and the local C'(1) chosen so that the network's C_f'(1) = ζ
  (``zeta`` = 1.5).  Plain chain of L layers: C'(1) = ζ^{1/L}.
* **TAT** (Zhang et al. 2022), smooth φ: local Q(1) = 1, Q'(1) = 1, C'(1) = 1 (α, β, δ, γ) and
  the local C''(1) chosen so that the network's C_f''(1) = τ (``tau`` = 0.3); plain chain:
  C''(1) = τ/L.  A root with α γ ≥ 2 is rejected (as dks does: unstable Q maps).
* **TReLU**: γ = √(2/(1+s²)) (Q(1) = 1) and s such that the network's C_f(0) = η (``eta`` =
  0.9), from the closed-form leaky-ReLU C map
  C(c) = ((1-s)² (√(1-c²) + (π - arccos c) c)/π + 2 s c)/(1+s²).

Network quantities (C_f'(1), C_f''(1), C_f(0)) are those of :mod:`critsym.shaping.network`:
for ``arch=None`` dks's plain chain ``φ̂ >> Linear(1, 0)`` with the closed compositions, for any
other architecture the fold's network maps (the local targets are then found by an outer 1-D
root solve; every Act of the block is replaced by φ̂).

Non-unique roots (documented choice): the local equations are solved by Powell's hybrid method
from dks's fixed list of starting points, in dks's order, and the first root (not rejected) is
taken, then put in canonical form: α > 0 (φ̂(-x) has the same Q and C maps, since z and -z have
the same law) and, for odd φ, β ≥ 0 ((α, β, δ) and (α, -β, -δ) give identical maps).  ReLU under
DKS has one parameter too few: as in dks β = 1 (β = -1 when C'(1) ≥ π/(π-1)) and α solves
C'(1) by bracketing; Q'(1) is not targeted.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize as so
import sympy as sp

from ..errors import HyperparameterError, ShapingError
from ..ops.activation import Act
from ..ops.base import Op, as_op
from .activation import BaseActivation, base_activation
from .maps import LocalMaps, base_moments, invariants_from
from .network import NetworkMaps, ShapedAct, count_activations, plain_block

METHODS = ("DKS", "TAT", "TReLU")
RELU_MAX_SLOPE = math.pi / (math.pi - 1)  # C'(1) of a shifted-then-normalised relu as α → ∞
_TRY = {"input_scale": (1.0, 0.1), "input_shift": (0.0, 1.0, -1.0),
        "output_shift": (0.0, 1.0, -1.0)}
_TOL = 1e-12


# ------------------------------------------------------------------ local solves

def _solve_point(base: BaseActivation, a: float, b: float, d: float | None = None):
    """(δ, γ, invariants) at (α, β): δ from C(0) = 0 when ``d`` is None, γ from Q(1) = 1."""
    mom = base_moments(base, a, b)
    if d is None:
        d = -float(mom[0])
    var = mom[1] + 2 * d * mom[0] + d * d
    g = 1.0 / math.sqrt(var) if var > 0 else math.inf
    return d, g, invariants_from(mom, a, d, g)


def _maps(base, a, b, d=None) -> LocalMaps:
    d, g, _ = _solve_point(base, a, b, d)
    return LocalMaps(base, float(a), float(b), float(d), float(g))


def _canonical(base: BaseActivation, lm: LocalMaps) -> LocalMaps:
    a, b, d, g = lm.input_scale, lm.input_shift, lm.output_shift, lm.output_scale
    if a < 0:
        a = -a  # the law of z is symmetric: φ(-a z + b) has the same maps as φ(a z + b)
    if base.is_odd and b < 0:
        b, d = -b, -d
    return LocalMaps(base, a, b, d, g)


def _hybr(resid, starts, accept=None):
    for p0 in starts:
        try:
            sol = so.root(resid, np.asarray(p0, float), method="hybr",
                          options={"xtol": 1e-15, "maxfev": 400})
        except (ValueError, FloatingPointError, ZeroDivisionError):
            continue
        if np.all(np.isfinite(sol.fun)) and np.max(np.abs(sol.fun)) < _TOL:
            if accept is None or accept(sol.x):
                return sol.x
    return None


def solve_dks_local(activation, c_slope_1: float, q_slope: float = 1.0) -> LocalMaps:
    """Local DKS: Q(1) = 1, C(0) = 0, Q'(1) = ``q_slope``, C'(1) = ``c_slope_1`` (> 1)."""
    base = base_activation(activation)
    if not c_slope_1 > 1:
        raise HyperparameterError(f"the local C'(1) target must exceed 1, got {c_slope_1}")
    if base.name == "relu":
        b = 1.0 if c_slope_1 < RELU_MAX_SLOPE else -1.0

        def f(la):
            return _solve_point(base, math.exp(la), b)[2]["C'(1)"] - c_slope_1

        lo, hi = -12.0, 12.0
        if np.sign(f(lo)) == np.sign(f(hi)):
            raise ShapingError(f"no ReLU transform reaches C'(1) = {c_slope_1}")
        la = so.brentq(f, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
        return _maps(base, math.exp(la), b)

    def resid(p):
        inv = _solve_point(base, p[0], p[1])[2]
        return [inv["Q'(1)"] - q_slope, inv["C'(1)"] - c_slope_1]

    starts = itertools.product(_TRY["input_scale"], _TRY["input_shift"])
    p = _hybr(resid, starts)
    if p is None:
        raise ShapingError(
            f"DKS found no transform of {base.name} with Q'(1) = {q_slope}, C'(1) = {c_slope_1}: "
            "lower zeta, use a deeper network, or another activation"
        )
    return _canonical(base, _maps(base, p[0], p[1]))


def solve_tat_local(activation, c_curv_1: float) -> LocalMaps:
    """Local TAT (smooth φ): Q(1) = 1, Q'(1) = 1, C'(1) = 1, C''(1) = ``c_curv_1`` (> 0)."""
    base = base_activation(activation)
    if base.name in ("relu",) or base.name.startswith("leaky_relu"):
        raise ShapingError(
            f"TAT cannot shape {base.name}: a (leaky) ReLU has C''(1) = 0 or undefined; use "
            "method='TReLU' with leaky_relu"
        )
    if not c_curv_1 > 0:
        raise HyperparameterError(f"the local C''(1) target must be > 0, got {c_curv_1}")

    def resid(p):
        inv = _solve_point(base, p[0], p[1], p[2])[2]
        return [inv["Q'(1)"] - 1.0, inv["C'(1)"] - 1.0, inv["C''(1)"] - c_curv_1]

    def accept(p):
        return abs(p[0]) * _solve_point(base, p[0], p[1], p[2])[1] < 2.0

    starts = itertools.product(_TRY["input_scale"], _TRY["input_shift"], _TRY["output_shift"])
    p = _hybr(resid, starts, accept)
    if p is None:
        raise ShapingError(
            f"TAT found no transform of {base.name} with Q'(1) = C'(1) = 1 and C''(1) = "
            f"{c_curv_1}: lower tau or use a deeper network"
        )
    return _canonical(base, _maps(base, p[0], p[1], p[2]))


def leaky_relu_cmap(c, s):
    """C(c) of γ·leaky_relu_s with Q(1) = 1 (arc-cosine kernel)."""
    c = np.clip(np.asarray(c, float), -1.0, 1.0)
    return ((1 - s) ** 2 * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi
            + 2 * s * c) / (1 + s * s)


# ------------------------------------------------------------------ result object

@dataclass(frozen=True)
class ShapedActivation:
    r"""A transformed activation φ̂(x) = output_scale·(φ(input_scale·x + input_shift) +
    output_shift) (TReLU: output_scale·leaky_relu(x, negative_slope)) and what it achieves.

    ``local``: Q(1), Q'(1), C(0), C'(1), C'(0), C''(1) of φ̂; ``network``: C_f'(1), C_f''(1),
    C_f(0), J (APJN J^{0,L}) and K_L of ``depth`` blocks of ``arch`` (the plain chain
    φ̂ >> Linear(1, 0) when ``arch`` is None).  For the plain chain C_f(0) is not a TAT/DKS
    target and is computed on first access of ``network`` (it is not in ``solve_seconds``).
    """

    activation: str
    method: str
    depth: int
    input_scale: float
    input_shift: float
    output_shift: float
    output_scale: float
    negative_slope: float | None
    targets: dict
    local: dict
    network_: dict = field(repr=False)
    arch: Op | None = None
    solve_seconds: float = 0.0
    base: BaseActivation = field(repr=False, default=None)

    @property
    def network(self) -> dict:
        """Network invariants (C_f(0) of the plain chain computed on first access)."""
        net = self.network_
        if "C_f(0)" not in net:
            net["C_f(0)"] = _iterate_c(self.maps, 0.0, self.depth)
        return net

    @property
    def act(self) -> ShapedAct:
        """φ̂ as a critsym operator (to build architectures: ``s.act >> cs.Linear(1, 0)``)."""
        if self.negative_slope is not None:
            return ShapedAct(Act("leaky_relu", alpha=self.negative_slope), 1.0, 0.0, 0.0,
                             self.output_scale)
        return ShapedAct(Act(self.activation) if self.base is None else _base_act(self.base),
                         self.input_scale, self.input_shift, self.output_shift,
                         self.output_scale)

    @property
    def expr(self) -> sp.Expr:
        """φ̂(x) as a sympy expression."""
        return self.act.phi()

    @property
    def maps(self) -> LocalMaps:
        """The local maps of φ̂ (the quadrature-based ones, also for TReLU)."""
        if self.negative_slope is not None:
            return LocalMaps(base_activation(Act("leaky_relu", alpha=self.negative_slope)), 1.0,
                             0.0, 0.0, self.output_scale)
        return LocalMaps(self.base, self.input_scale, self.input_shift, self.output_shift,
                         self.output_scale)

    @property
    def block(self) -> Op:
        """The shaped block: ``arch`` with φ̂, or the plain chain block."""
        from .network import with_activation

        return plain_block(self.act) if self.arch is None else with_activation(self.arch,
                                                                              self.act)

    def network_maps(self, depth: int | None = None, K0: float = 1.0) -> NetworkMaps:
        """The fold's :class:`NetworkMaps` of the shaped block."""
        return NetworkMaps(self.block, int(depth or self.depth), float(K0))

    def numpy(self, t):
        """φ̂ on numpy arrays."""
        lm = self.maps
        f0 = lm.base.f[0]
        return lm.output_scale * (f0(lm.input_scale * np.asarray(t, float) + lm.input_shift)
                                  + lm.output_shift)

    def __call__(self, t):
        """φ̂ on a torch tensor (or numpy array)."""
        import torch

        if isinstance(t, torch.Tensor):
            return self.torch()(t)
        return self.numpy(t)

    def torch(self):
        """φ̂ as a torch ``nn.Module``."""
        from .torch_act import shaped_module

        return shaped_module(self)


def _base_act(base: BaseActivation) -> Act:
    from ..activations import REGISTRY

    if base.name in REGISTRY:
        return Act(base.name)
    if "(" in base.name and base.name.split("(")[0] in REGISTRY:
        return Act(base.name.split("(")[0], **{
            k: float(v) for k, v in (p.split("=") for p in base.name[:-1].split("(")[1]
                                     .split(", "))})
    return Act(base.expr)


# ------------------------------------------------------------------ the public solve

def transform(activation: object, arch: Op | None = None, depth: int = 16, method: str = "DKS",
              *, zeta: float = 1.5, tau: float = 0.3, eta: float = 0.9, q_slope: float = 1.0,
              K0: float = 1.0, hyperparameters: dict | None = None) -> ShapedActivation:
    """Shape ``activation`` for ``depth`` blocks of ``arch`` by DKS, TAT or TReLU.

    ``arch``: a critsym block whose every ``Act`` is replaced by the shaped activation (numeric
    hyperparameters, or give them in ``hyperparameters``); None is dks's plain chain
    ``φ̂ >> Linear(1, 0)`` (for ``K0`` ≠ 1 it is solved through the fold like any
    architecture).  Targets: ``zeta`` (DKS C_f'(1)), ``tau`` (TAT C_f''(1)), ``eta``
    (TReLU C_f(0)), ``q_slope`` (DKS local Q'(1)); ``K0`` the input variance for the network maps.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise HyperparameterError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise HyperparameterError(f"depth must be an integer >= 1, got {depth!r}")
    if arch is not None:
        arch = as_op(arch)
        if hyperparameters:
            arch = arch.subs(hyperparameters)
        if count_activations(arch) == 0:
            raise HyperparameterError(f"the architecture {arch!r} has no Act to shape")
        free = arch.hyperparameters()
        if free:
            raise HyperparameterError(
                f"the architecture has free hyperparameters {sorted(map(str, free))}: pass "
                "hyperparameters={...} with numbers for them"
            )
    L = int(depth)
    if arch is None and float(K0) != 1.0:
        # dks's chain at another input variance: not the closed q = 1 composition, use the fold
        arch = plain_block(activation if isinstance(activation, Act) else "relu")
    if activation == "leaky_relu" and method in ("TAT", "TReLU"):
        return _trelu("leaky_relu", arch, L, eta, K0, t0)  # as dks: TAT for leaky ReLU is TReLU
    base = base_activation(activation)
    if method == "TAT" and base.name.startswith("leaky_relu"):
        method = "TReLU"
    if method == "TReLU":
        return _trelu(base.name, arch, L, eta, K0, t0)
    if method == "DKS":
        if not zeta > 1:
            raise HyperparameterError(f"DKS needs zeta > 1, got {zeta}")
        targets = {"Q(1)": 1.0, "Q'(1)": q_slope, "C(0)": 0.0, "C_f'(1)": zeta}

        def local(t):
            return solve_dks_local(base, t, q_slope)

        key, plain_t, lo = "C_f'(1)", zeta ** (1.0 / L), 1.0
    else:
        if not tau > 0:
            raise HyperparameterError(f"TAT needs tau > 0, got {tau}")
        targets = {"Q(1)": 1.0, "Q'(1)": 1.0, "C'(1)": 1.0, "C_f''(1)": tau}

        def local(t):
            return solve_tat_local(base, t)

        key, plain_t, lo = "C_f''(1)", tau / L, 0.0
        target = tau
    target = zeta if method == "DKS" else tau
    if arch is None:
        lm = local(plain_t)
        net = _plain_network(lm, L, method)
    else:
        lm, net = _outer_solve(local, arch, L, K0, key, target, plain_t, lo)
        if base.slope_jump:
            net["C_f''(1)"] = math.inf  # the block C maps have infinite curvature at c = 1
    return ShapedActivation(
        activation=base.name, method=method, depth=L, input_scale=lm.input_scale,
        input_shift=lm.input_shift, output_shift=lm.output_shift,
        output_scale=lm.output_scale, negative_slope=None, targets=targets,
        local=lm.invariants(), network_=net, arch=arch,
        solve_seconds=time.perf_counter() - t0, base=base,
    )


def _plain_network(lm: LocalMaps, L: int, method: str) -> dict:
    """Closed compositions for dks's plain chain (K^l = 1 since Q(1) = 1)."""
    inv = lm.invariants()
    s, g2 = inv["C'(1)"], inv["C''(1)"]
    f1, f2 = 1.0, 0.0
    for _ in range(L):
        f1, f2 = s * f1, g2 * f1 * f1 + s * f2
    if method == "DKS":
        if abs(inv["C(0)"]) < 1e-15:  # c = 0 is a fixed point of the C map
            return {"C_f'(1)": f1, "C_f''(1)": f2, "C_f(0)": 0.0, "J": f1, "K_L": inv["Q(1)"]}
    return {"C_f'(1)": f1, "C_f''(1)": f2, "J": f1, "K_L": inv["Q(1)"]}


def _iterate_c(lm: LocalMaps, c: float, L: int) -> float:
    for _ in range(L):
        c = lm.C(min(max(c, -1.0), 1.0))
    return float(c)


def _outer_solve(local, arch, L, K0, key, target, t0, lo):
    """Find the local target t with network[key](t) = target by bracketing + Brent.

    The block is derived once with a symbolic shaped activation (hyperparameters
    shape_alpha, shape_beta, shape_delta, shape_gamma); each step only evaluates it."""
    cache: dict[float, tuple] = {}
    base_act = None

    def evaluate(t):
        nonlocal base_act
        if t not in cache:
            lm = local(t)
            if base_act is None:
                base_act = _base_act(lm.base)
            cache[t] = (lm, _symbolic_network(arch, base_act, L, K0, lm))
        return cache[t]

    def f(t):
        return evaluate(t)[1].invariant(key) - target

    a = t0
    fa = f(a)
    step = 2.0
    b = None
    for _ in range(40):
        cand = lo + (a - lo) * (step if fa < 0 else 1.0 / step)
        try:
            fb = f(cand)
        except ShapingError:
            step = math.sqrt(step)
            if step < 1.0001:
                break
            continue
        if np.sign(fb) != np.sign(fa):
            b = cand
            break
        a, fa = cand, fb
    if b is None:
        raise ShapingError(
            f"no local transform gives the network {key} = {target} for this architecture and "
            f"depth {L}: the target is out of reach (try another target or depth)"
        )
    t = so.brentq(f, min(a, b), max(a, b), xtol=1e-14, rtol=4 * np.finfo(float).eps)
    lm, nm = evaluate(t)
    return lm, nm.invariants()


def _symbolic_network(arch, base_act, L, K0, lm) -> NetworkMaps:
    from .network import SHAPE_SYMBOLS, with_activation

    block = with_activation(arch, ShapedAct(base_act, *SHAPE_SYMBOLS))
    hp = tuple(zip((s.name for s in SHAPE_SYMBOLS),
                   (lm.input_scale, lm.input_shift, lm.output_shift, lm.output_scale),
                   strict=True))
    return NetworkMaps(block, L, float(K0), hp)


def _trelu(name, arch, L, eta, K0, t0) -> ShapedActivation:
    if not name.startswith("leaky_relu") and name != "relu":
        raise ShapingError(f"TReLU shapes leaky_relu only, got {name}; use DKS or TAT")
    if not 0 <= eta < 1:
        raise HyperparameterError(f"TReLU needs 0 <= eta < 1, got {eta}")

    def scale(s):
        return math.sqrt(2.0 / (1.0 + s * s))

    if arch is None:
        def c0(s):
            c, k, n = 0.0, (1 - s) ** 2 / math.pi, 1 + s * s
            for _ in range(L):
                c = min(c, 1.0)
                c = (k * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) + 2 * s * c) / n
            return c
    else:
        def c0(s):
            return _trelu_network(arch, L, K0, None, s, scale(s)).invariant("C_f(0)")

    if c0(0.0) < eta:
        raise ShapingError(
            f"TReLU: even the ReLU network of depth {L} only reaches C_f(0) = {c0(0.0):.6g} < "
            f"eta = {eta}; lower eta or use a deeper network"
        )
    s = so.brentq(lambda s: c0(s) - eta, 0.0, 1.0, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    g = scale(s)
    lbase = None
    # closed forms for γ·leaky_relu_s (degree-1 homogeneous, so Q(q) = q Q(1) and Q'(1) = Q(1))
    Q = g * g * (1 + s * s) / 2
    inv = {"Q(1)": Q, "Q'(1)": Q, "C(0)": g * g * (1 - s) ** 2 / (2 * math.pi) / Q,
           "C'(1)": g * g * (1 + s * s) / 2 / Q, "C'(0)": g * g * (1 + s) ** 2 / 4 / Q,
           "C''(1)": math.inf if s < 1 else 0.0}
    if arch is None:
        f1 = inv["C'(1)"] ** L
        net = {"C_f'(1)": f1, "C_f''(1)": inv["C''(1)"], "C_f(0)": c0(s), "J": f1, "K_L": 1.0}
    else:
        net = _trelu_network(arch, L, K0, None, s, g).invariants()
        net["C_f''(1)"] = inv["C''(1)"]
    return ShapedActivation(
        activation="leaky_relu", method="TReLU", depth=L, input_scale=1.0, input_shift=0.0,
        output_shift=0.0, output_scale=g, negative_slope=s,
        targets={"Q(1)": 1.0, "C_f(0)": eta}, local=inv, network_=net, arch=arch,
        solve_seconds=time.perf_counter() - t0, base=lbase,
    )



_SLOPE = sp.Symbol("shape_negative_slope", real=True)


def _trelu_network(arch, L, K0, lbase, s, g) -> NetworkMaps:
    from .network import SHAPE_SYMBOLS, with_activation

    block = with_activation(arch, ShapedAct(Act("leaky_relu", alpha=_SLOPE), 1.0, 0.0, 0.0,
                                            SHAPE_SYMBOLS[3]))
    return NetworkMaps(block, L, float(K0), ((_SLOPE.name, s), (SHAPE_SYMBOLS[3].name, g)))
