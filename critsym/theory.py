r"""The :class:`Theory` of one repeating block and its numeric evaluation.

The state of a block input is a named record (:data:`~critsym.symbols.STATE_NAMES`):

* ``K``: the mean square of a preactivation, K^l = E[(h_i^l)^2];
* multi-axis blocks (rows × neurons, e.g. an MLP-Mixer) also carry ``O_T`` and ``O_C``: the
  variances of the per-row component (constant along the neurons, the per-token offset that
  LayerNorm over channels removes) and of the per-neuron component (constant along the rows).

Two inputs of the same law add the cross state (:data:`~critsym.symbols.CROSS_NAMES`): ``K12``,
the covariance of the two preactivations, and for multi-axis blocks ``O_T12`` and ``O_C12``, the
covariances of their offsets.  A single-axis theory also accepts ``K22``, the second input's
variance (default ``K``).  The maps are

    K^{l+1} = F(state),   χ_J^l = χ(state),   J^{l0,l+1} = χ_J^l J^{l0,l},
    O_T^{l+1} = F_T(state),   O_C^{l+1} = F_C(state),
    K_12^{l+1} = G(state, cross),   O_T12^{l+1} = G_T(...),   O_C12^{l+1} = G_C(...),

and c^l = K_12^l / K^l.

Token states (an architecture with :class:`~critsym.ops.attention.Attention`: rows are n
exchangeable tokens, K = q the per-token variance, O_C = p the covariance of two different tokens
at one channel) carry a two-part tangent: j = (1/(n d)) Σ_a ‖∂h_a/∂h^0‖_F² (the APJN J) and
k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a/∂h^0, ∂h_b/∂h^0⟩_F, mapped linearly by every block,

    (j^{l+1}, k^{l+1}) = M(state) (j^l, k^l),   M = [[M_jj, M_jk], [M_kj, M_kk]],

and χ is then the Perron root of M (the asymptotic per-block growth of J); the naive per-block
factor M_jj misses the coupling through k.  The single-axis state (K) is the simplest case of the
same class: every
method has the same name and keyword signature, and refuses a state variable the theory does not
have.

Numeric functions are compiled once per theory from the symbolic maps (never re-derived), with
the Gaussian expectations that do not depend on the state evaluated once per hyperparameter point
(a Mixer's nested integrals), and are vectorised: hyperparameters may be numpy arrays, broadcast
together, so one call evaluates a whole grid.  The compiled functions are dropped when a theory
is pickled and rebuilt on first use.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import sympy as sp

from .errors import DerivationError, HyperparameterError, NumericalError, warn_if_nan
from .fold import fold_maps
from .gaussian.expectation import GaussE, GaussE2
from .gaussian.numeric import compile_expr, evaluate_mp
from .ops.base import Op
from .symbols import (
    CROSS,
    CROSS_NAMES,
    K11,
    K12,
    K22,
    MAX_HYPER,
    O_C,
    O_C12,
    O_T,
    O_T12,
    STATE,
    STATE_NAMES,
    K,
)

K_SYM = K  # the symbol K, for methods whose keyword argument K holds a value
#: every state and cross-state keyword, with its symbol
_SYMBOL = {"K": K, "O_T": O_T, "O_C": O_C, "K12": K12, "O_T12": O_T12, "O_C12": O_C12,
           "K22": K22}
_STATE_SYMBOLS = frozenset(STATE + CROSS + (K11, K22))


#: token states: where a block's maps are NaN at collapsed tokens (ρ = p/(q − O_T) within
#: rounding of 1: the arc-cosine kernels take square roots of 1 − ρ² that round below 0 inside
#: the block), :meth:`Theory.run` evaluates them at ρ = 1 − COLLAPSE_MARGIN instead
COLLAPSE_MARGIN = 1e-9


def _collapse_guard(fa, args):
    """``args`` (state first: K, O_T, O_C) with O_C moved to (K − O_T)(1 − COLLAPSE_MARGIN)
    at the points where a map is NaN although the state is finite (collapsed tokens); the
    other points are untouched, so results off the collapse are exact."""
    K, OT, OC = (np.asarray(a, dtype=float) for a in args[:3])
    with np.errstate(all="ignore"):
        bad = np.zeros(np.broadcast(K, OT, OC).shape, bool)
        for f in fa:
            bad |= np.isnan(np.asarray(f(*args), dtype=float))
    bad &= np.isfinite(K) & np.isfinite(OC)
    if not bad.any():
        return args
    OC = np.where(bad, np.minimum(OC, (K - OT) * (1 - COLLAPSE_MARGIN)), OC)
    return (args[0], args[1], OC, *args[3:])


@dataclass(frozen=True, repr=False)
class RunResult:
    """Layer-by-layer mean-field trajectories; axis 0 is the layer l = 0..depth.

    ``K[l]`` = K^l, ``J[l]`` = J^{0,l} (J[0] = 1), ``chi[l]`` = J[l+1]/J[l] (l = 0..depth-1),
    ``c[l]`` = correlation c^l of two inputs of equal law (None without ``c0``).  Multi-axis
    states also carry ``O_T[l]``, ``O_C[l]`` (NaN where O_C is not iterated) and, with ``c0``,
    the cross offsets ``O_T12[l]``, ``O_C12[l]``; single-axis results hold None there.  Token
    states also carry ``k[l]``, the cross-token overlap of the tangent (None otherwise).
    """

    K: np.ndarray
    J: np.ndarray
    chi: np.ndarray
    c: np.ndarray | None = None
    O_T: np.ndarray | None = None
    O_C: np.ndarray | None = None
    O_T12: np.ndarray | None = None
    O_C12: np.ndarray | None = None
    k: np.ndarray | None = None

    @property
    def depth(self) -> int:
        return self.K.shape[0] - 1

    @property
    def layers(self) -> np.ndarray:
        return np.arange(self.depth + 1)

    def J_from(self, l0: int) -> np.ndarray:
        """J^{l0,l} for l = l0..depth (the product of χ_J^m for m = l0..l-1)."""
        return self.J[l0:] / self.J[l0]

    def __repr__(self) -> str:
        held = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return f"RunResult(depth={self.depth}, shape={self.K.shape[1:]}, fields={held})"


def check_precision(precision: object) -> int:
    """``precision`` (mpmath decimal digits) as a positive int, else a HyperparameterError."""
    if isinstance(precision, bool) or not isinstance(precision, numbers.Integral) \
            or precision < 1:
        raise HyperparameterError(
            f"precision must be a positive integer number of decimal digits (e.g. precision=30), "
            f"got {precision!r}; leave it out for the vectorised float64 evaluation"
        )
    return int(precision)


class NumericFunction:
    """A compiled, vectorised numpy function of ``args`` (positional, in order): the state
    symbols it uses, then the theory's hyperparameters.  Expectations that do not depend on the
    state are evaluated by ``constants`` once per call and passed on."""

    def __init__(self, expr: sp.Expr, args: tuple[sp.Symbol, ...], fn, constants):
        self.expr, self.args = expr, args
        self._fn, self._constants = fn, constants

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    def __call__(self, *vals) -> np.ndarray:
        if len(vals) != len(self.args):
            raise HyperparameterError(
                f"this function takes {len(self.args)} positional values {list(self.arg_names)}, "
                f"got {len(vals)}"
            )
        return self._fn(*vals, *self._constants(vals))

    def __repr__(self) -> str:
        return f"NumericFunction({', '.join(self.arg_names)})"


@dataclass(frozen=True)
class Theory:
    """Mean-field theory of a block (see the module docstring for the state record).

    ``F``, ``chi``, ``G`` always; ``F_T``, ``F_C``, ``G_T``, ``G_C`` (the offset maps and cross
    offset maps) only for a multi-axis state, else None.  A token state adds the tangent map
    ``M_jj``, ``M_jk``, ``M_kj``, ``M_kk`` (in (j, k) coordinates) and ``n_tokens`` (None
    for a position-wise block), and ``chi`` is the Perron root of that map.
    """

    arch: Op
    F: sp.Expr
    chi: sp.Expr
    G: sp.Expr
    F_T: sp.Expr | None = None
    F_C: sp.Expr | None = None
    G_T: sp.Expr | None = None
    G_C: sp.Expr | None = None
    M_jj: sp.Expr | None = None
    M_jk: sp.Expr | None = None
    M_kj: sp.Expr | None = None
    M_kk: sp.Expr | None = None
    n_tokens: int | None = None

    # --------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        """Only the symbolic maps: compiled functions are rebuilt lazily after unpickling."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # --------------------------------------------------------------- the state record
    @property
    def multi_axis(self) -> bool:
        """True for a rows × neurons state (K, O_T, O_C)."""
        return self.F_T is not None

    @property
    def K(self) -> sp.Symbol:
        """The variance symbol K."""
        return K

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state record's fields: ("K",) or ("K", "O_T", "O_C")."""
        return STATE_NAMES if self.multi_axis else STATE_NAMES[:1]

    @property
    def cross_names(self) -> tuple[str, ...]:
        """The cross-state fields of two inputs: ("K12",) or ("K12", "O_T12", "O_C12")."""
        return CROSS_NAMES if self.multi_axis else CROSS_NAMES[:1]

    @property
    def state_symbols(self) -> tuple[sp.Symbol, ...]:
        """The state symbols, K first (what the fixed-point solvers iterate)."""
        return STATE if self.multi_axis else (K,)

    @property
    def cross_symbols(self) -> tuple[sp.Symbol, ...]:
        return CROSS if self.multi_axis else (K12,)

    @property
    def maps(self) -> dict[str, sp.Expr]:
        """Every map this theory holds, by name (F, chi, G and the offset maps where present)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("arch", "n_tokens") and getattr(self, f.name) is not None}

    @property
    def token_state(self) -> bool:
        """True for a token state (a two-part tangent (j, k))."""
        return self.M_kk is not None

    @property
    def token_mixing(self) -> bool:
        """True when the block couples j and k (it mixes tokens: Attention)."""
        return self.token_state and (self.M_jk != 0 or self.M_kj != 0)

    @property
    def tangent_exprs(self) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr] | None:
        """(M_jj, M_jk, M_kj, M_kk) of a token state, else None."""
        if not self.token_state:
            return None
        return self.M_jj, self.M_jk, self.M_kj, self.M_kk

    @cached_property
    def state_maps(self) -> dict[sp.Symbol, sp.Expr]:
        """The map of each state component: {K: F, O_T: F_T, O_C: F_C}."""
        return dict(zip(self.state_symbols, (self.F, self.F_T, self.F_C), strict=False))

    @cached_property
    def cross_maps(self) -> dict[sp.Symbol, sp.Expr]:
        """The map of each cross-state component for two inputs of equal law, as functions of
        (state, cross state): {K12: G, O_T12: G_T, O_C12: G_C} (single axis: G(K, K, K_12))."""
        if not self.multi_axis:
            return {K12: self.G.xreplace({K11: K, K22: K})}
        return {K12: self.G, O_T12: self.G_T, O_C12: self.G_C}

    @cached_property
    def feedback_state(self) -> tuple[sp.Symbol, ...]:
        """The state components that feed back into K, χ_J or O_T (O_C only when it does)."""
        if not self.multi_axis:
            return (K,)
        used = self.F.free_symbols | self.chi.free_symbols | self.F_T.free_symbols
        for e in self.tangent_exprs or ():
            used |= e.free_symbols
        return (K, O_T, O_C) if O_C in used else (K, O_T)

    @cached_property
    def cross_feedback(self) -> tuple[sp.Symbol, ...]:
        """The cross-state components that feed back into K_12 or O_T12 (O_C12 only when it
        does)."""
        if not self.multi_axis:
            return (K12,)
        used = self.G.free_symbols | self.G_T.free_symbols
        return (K12, O_T12, O_C12) if O_C12 in used else (K12, O_T12)

    # --------------------------------------------------------------- symbols
    @cached_property
    def hyperparameters(self) -> tuple[sp.Symbol, ...]:
        """The free hyperparameter symbols, sorted by name."""
        syms = set().union(*(e.free_symbols for e in self.maps.values()))
        syms = (syms | self.arch.hyperparameters()) - _STATE_SYMBOLS
        return tuple(sorted(syms, key=lambda s: s.name))

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.hyperparameters)

    @cached_property
    def general(self) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        """(F, χ_J, G) with the Gaussian expectations unevaluated (a multi-axis theory: its
        closed forms, whose expectations are left nested already)."""
        if self.multi_axis:
            return self.F, self.chi, self.G
        m = fold_maps(self.arch, closed_forms=False, axes=False)
        return m["F"], m["chi"], m["G"]

    @cached_property
    def dF_dK(self) -> sp.Expr:
        """∂F/∂K (at fixed offsets), the stability of a single-axis variance map."""
        return sp.diff(self.F, K)

    @cached_property
    def c_map_expr(self) -> sp.Expr:
        """c^{l+1} = G / F for two inputs of equal law (single axis: in terms of c = K_12/K)."""
        if self.multi_axis:
            return self.G / self.F
        c = sp.Symbol("c", real=True)
        return self.G.subs({K11: K, K22: K, K12: c * K}) / self.F

    # --------------------------------------------------------------- the compile cache
    def _kernels(self, exprs: tuple[sp.Expr, ...], state: tuple[sp.Symbol, ...]):
        """``exprs`` compiled as functions of (state, hyperparameters, P) with every expectation
        that depends on the hyperparameters alone replaced by a placeholder P_i, and the
        compiled P_i(hyperparameters): state-independent integrals are then evaluated once per
        hyperparameter point, not at every layer.  Cached per theory (the one compile cache)."""
        cache = self.__dict__.setdefault("_compiled", {})
        key = (exprs, state)
        if key not in cache:
            hyper = set(self.hyperparameters)
            nodes = set().union(*(e.atoms(GaussE, GaussE2) for e in exprs))
            const = [n for n in nodes if n.free_symbols <= hyper]
            const = sorted((n for n in const if not any(m != n and m.has(n) for m in const)),
                           key=sp.default_sort_key)
            ph = tuple(sp.Dummy(f"P{i}") for i in range(len(const)))
            rep = dict(zip(const, ph, strict=True))
            args = (*state, *self.hyperparameters, *ph)
            fs = tuple(compile_expr(e.xreplace(rep), args) for e in exprs)
            fp = tuple(compile_expr(n, self.hyperparameters) for n in const)
            cache[key] = fs, fp
        return cache[key]

    @staticmethod
    def _constants(fp, vals) -> list[np.ndarray]:
        n = np.broadcast_shapes(*(np.shape(v) for v in vals))
        with np.errstate(all="ignore"):
            return [np.broadcast_to(np.asarray(f(*vals), dtype=float), n) for f in fp]

    def _function(self, expr: sp.Expr, state: tuple[sp.Symbol, ...]) -> NumericFunction:
        (f,), fp = self._kernels((expr,), state)
        nst = len(state)
        return NumericFunction(expr, (*state, *self.hyperparameters), f,
                               lambda vals: self._constants(fp, vals[nst:]))

    def lambdify(self, expr: str | sp.Expr = "F",
                 state: Sequence[sp.Symbol] | None = None) -> NumericFunction:
        """A compiled numpy function of a map (no argument checks: for inner loops).

        ``expr``: a map name (``"F"``, ``"chi"``, ``"G"``, ``"F_T"``, ``"F_C"``, ``"G_T"``,
        ``"G_C"``, ``"dF_dK"``) or a sympy expression of the state and the hyperparameters.
        Its positional arguments (``.args``) are the state symbols, then
        :attr:`hyperparameters`: for F, χ and their derivatives the state (K[, O_T, O_C]); for
        G of a single-axis theory (K_11, K_22, K_12); for the cross maps of a multi-axis theory
        (K, O_T, O_C, K_12, O_T12, O_C12).  ``state`` overrides that list for an expression.

        ``sympy.lambdify`` of a map works as well (the expectations print as calls of
        :func:`critsym.gaussian.expectation.gauss_expectation`); this method reuses the
        theory's compiled functions.
        """
        if isinstance(expr, str):
            names = {**self.maps, "dF_dK": self.dF_dK}
            if expr not in names:
                raise HyperparameterError(
                    f"unknown map {expr!r}; this theory has {sorted(names)}")
            name, expr = expr, names[expr]
            if state is None:
                cross = name.startswith("G")
                state = ((K11, K22, K12) if cross and not self.multi_axis
                         else self.state_symbols + (self.cross_symbols if cross else ()))
        expr = sp.sympify(expr)
        if state is None:
            present = expr.free_symbols & _STATE_SYMBOLS
            state = tuple(s for s in (*self.state_symbols, *self.cross_symbols, K11, K22)
                          if s in present)
        return self._function(expr, tuple(state))

    # --------------------------------------------------------------- argument checks
    def values(self, hp: dict) -> list[np.ndarray]:
        """Validate hyperparameter values against :attr:`hyperparameters`; arrays in order."""
        names = self.hyperparameter_names
        missing = [n for n in names if n not in hp]
        unknown = [n for n in hp if n not in names]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing values for {missing}")
            if unknown:
                parts.append(f"unknown hyperparameters {unknown}")
            states = [n for n in unknown if n in _SYMBOL]
            hint = (f" ({states} are state variables: this theory's state is "
                    f"{list(self.state_names)}, its cross state {list(self.cross_names)})"
                    if states else "")
            raise HyperparameterError(
                f"{'; '.join(parts)}{hint}: this theory's hyperparameters are {list(names)}; "
                f"call e.g. theory.run(depth, K0=1.0, {', '.join(f'{n}=...' for n in names)})"
            )
        vals = []
        for s in self.hyperparameters:
            try:
                v = np.asarray(hp[s.name], dtype=float)
            except (TypeError, ValueError):
                raise HyperparameterError(
                    f"{s.name} must be a number or an array of numbers, got {hp[s.name]!r}"
                ) from None
            if not np.all(np.isfinite(v)):
                raise HyperparameterError(f"{s.name} has non-finite values; pass finite numbers")
            if np.any(np.abs(v) > MAX_HYPER):
                raise HyperparameterError(
                    f"{s.name} has values of magnitude up to {np.abs(v).max():g}: squared (a "
                    f"variance) they overflow float64; use magnitudes <= {MAX_HYPER:g}")
            if (s.is_nonnegative or s.is_positive) and np.any(v < 0):
                raise HyperparameterError(
                    f"{s.name} must be >= 0 (it is a standard deviation), got min {v.min():g}"
                )
            vals.append(v)
        try:
            np.broadcast_shapes(*(v.shape for v in vals))
        except ValueError:
            raise HyperparameterError(
                "hyperparameter arrays have incompatible shapes "
                f"{ {s.name: v.shape for s, v in zip(self.hyperparameters, vals)} }; "
                "they must broadcast together (use np.meshgrid for a grid)"
            ) from None
        return vals

    def _split(self, method: str, args: tuple, positional: tuple[str, ...],
               allowed: tuple[str, ...], given: dict, hp: dict) -> tuple[dict, dict]:
        """(state values by name, hyperparameters) from a call's positional ``args``, its
        state keywords ``given`` (those not None) and the remaining keywords ``hp``."""
        if len(args) > len(positional):
            takes = (f"takes {', '.join(positional)} positionally and the rest of the state by "
                     "keyword" if positional else "takes the state by keyword only")
            raise HyperparameterError(
                f"{method} {takes}, got {len(args)} positional arguments (a positional state "
                f"would be ambiguous between states); call e.g. "
                f"theory.{method}({', '.join(f'{n}=...' for n in allowed)}, "
                f"{', '.join(f'{n}=...' for n in self.hyperparameter_names)})"
            )
        state = dict(zip(positional, args, strict=False))
        stray = [n for n in hp if n in _SYMBOL or n in ("K11", "K_11", "K_12", "K_22")]
        for name, value in [*given.items(), *((n, hp[n]) for n in stray)]:
            if name not in allowed and name in _OFFSETS and _is_zero(value):
                continue  # a zero offset is the single-axis state itself
            if name not in allowed:
                raise HyperparameterError(
                    f"{method} got {name}=, which is not a state variable it takes: this "
                    f"theory's state is {list(self.state_names)} and {method} takes "
                    f"{list(allowed)}"
                )
            if name in state:
                raise HyperparameterError(f"{method} got {name} twice (by position and "
                                          "by keyword)")
            state[name] = value
        return state, {n: v for n, v in hp.items() if n not in stray}

    @staticmethod
    def _check_K(Kv, what="K") -> np.ndarray:
        Kv = _numbers(Kv, what)
        if not np.all(np.isfinite(Kv)) or np.any(Kv < 0):
            raise HyperparameterError(f"{what} must be finite and >= 0 (a variance), got {Kv}")
        return Kv

    def _state(self, st: dict, method: str, suffix: str = "") -> list[np.ndarray]:
        """Checked state arrays in :attr:`state_symbols` order (offsets default to 0)."""
        if st.get("K") is None:
            raise HyperparameterError(
                f"{method} needs the variance K{suffix} (e.g. {method}(K{suffix}=1.0, ...))")
        Kv = self._check_K(st["K"], "K" + suffix)
        if not self.multi_axis:
            return [Kv]
        OT = self._check_K(0.0 if st.get("O_T") is None else st["O_T"], "O_T" + suffix)
        OC = self._check_K(0.0 if st.get("O_C") is None else st["O_C"], "O_C" + suffix)
        if np.any(OT + OC > Kv + 1e-12):
            raise HyperparameterError(
                "the offset variances O_T + O_C cannot exceed K (they are parts of it); "
                f"got K={st['K']}, O_T={st.get('O_T')}, O_C={st.get('O_C')}"
            )
        return [Kv, OT, OC]

    def _cross(self, st: list[np.ndarray], cs: dict) -> list[np.ndarray]:
        """Checked cross-state arrays in :attr:`cross_symbols` order (the cross offsets default
        to c·O_T, c·O_C with c = K12/K); a single-axis theory's list ends with K22."""
        if cs.get("K12") is None:
            raise HyperparameterError("the covariance map needs K12 (e.g. K=1.0, K12=0.5)")
        Kv = st[0]
        x = _numbers(cs["K12"], "K12")
        K22v = Kv if cs.get("K22") is None else self._check_K(cs["K22"], "K22")
        bounds = [np.sqrt(Kv * K22v)]
        vals = [x]
        if self.multi_axis:
            with np.errstate(all="ignore"):
                c = np.where(Kv > 0, x / np.where(Kv > 0, Kv, 1.0), 0.0)
            for o, var in ((cs.get("O_T12"), st[1]), (cs.get("O_C12"), st[2])):
                vals.append(c * var if o is None else _numbers(o, "a cross offset"))
                bounds.append(var)
        names = self.cross_names
        for v, bound, name in zip(vals, bounds, names, strict=True):
            if not np.all(np.isfinite(v)) or np.any(np.abs(v) > bound * (1 + 1e-12) + 1e-300):
                raise HyperparameterError(
                    f"{name} must be finite with |{name}| <= its variance (a covariance of two "
                    f"inputs); got {name}={v}"
                )
        return vals if self.multi_axis else [K22v, x]

    def _evaluate(self, expr: sp.Expr, syms: tuple, st: list, hp: dict, precision) -> object:
        vals = self.values(hp)
        if precision is None:
            out = self._function(expr, syms)(*st, *vals)
            warn_if_nan("the map is undefined (NaN) at this state and these hyperparameters: "
                        "0/0 in it, e.g. a LayerNorm of a signal that vanishes (sigma_w = "
                        "sigma_b = 0)", out)
            return out
        dps = check_precision(precision)
        point = {**dict(zip(syms, st, strict=True)),
                 **dict(zip(self.hyperparameters, vals, strict=True))}
        if any(np.size(v) != 1 for v in point.values()):
            raise HyperparameterError(
                "precision= evaluates one point with mpmath: pass scalar state and "
                "hyperparameter values (leave precision out for arrays)")
        subs = {s: sp.Float(float(np.asarray(v).reshape(())), dps) for s, v in point.items()}
        return evaluate_mp(expr, subs, dps)

    # --------------------------------------------------------------- one-step maps
    # The state is passed by keyword (None: not given).  ``*args`` catches positional states
    # beyond the documented ones, which are refused with a message (not read as something else).
    def variance_map(self, *args, K: object = None, O_T: object = None, O_C: object = None,
                     precision: int | None = None, **hp) -> np.ndarray:
        r"""K^{l+1} = F(K[, O_T, O_C]): ``variance_map(K=1.0, [O_T=..., O_C=...,] **hp)``
        (K may be passed positionally; ``precision``: mpmath digits for a scalar evaluation)."""
        st, hp = self._split("variance_map", args, ("K",), self.state_names,
                             _given(K=K, O_T=O_T, O_C=O_C), hp)
        return self._evaluate(self.F, self.state_symbols, self._state(st, "variance_map"), hp,
                              precision)

    def chi_J(self, *args, K: object = None, O_T: object = None, O_C: object = None,
              precision: int | None = None, **hp) -> np.ndarray:
        r"""χ_J(K[, O_T, O_C]): J^{l0,l+1} = χ_J^l J^{l0,l} (same arguments as
        :meth:`variance_map`)."""
        st, hp = self._split("chi_J", args, ("K",), self.state_names,
                             _given(K=K, O_T=O_T, O_C=O_C), hp)
        return self._evaluate(self.chi, self.state_symbols, self._state(st, "chi_J"), hp,
                              precision)

    def tangent_map(self, *args, K: object = None, O_T: object = None, O_C: object = None,
                    precision: int | None = None, **hp) -> np.ndarray:
        r"""The tangent map M of one block, shape (..., 2, 2), rows and columns ordered (j, k):
        (j^{l+1}, k^{l+1}) = M (j^l, k^l) (same arguments as :meth:`variance_map`).  A theory
        without token mixing returns diag(χ_J, χ_k); without a token state χ_k is undefined
        (NaN: derive the block with ``tokens=True`` for a position-wise block on tokens)."""
        st, hp = self._split("tangent_map", args, ("K",), self.state_names,
                             _given(K=K, O_T=O_T, O_C=O_C), hp)
        s = self._state(st, "tangent_map")
        if self.token_state:
            ents = [self._evaluate(e, self.state_symbols, s, hp, precision)
                    for e in self.tangent_exprs]
        else:
            chi = self._evaluate(self.chi, self.state_symbols, s, hp, precision)
            ents = [chi, 0.0, 0.0, np.nan]
        ents = [np.asarray(e, dtype=float) for e in ents]
        shape = np.broadcast_shapes(*(e.shape for e in ents))
        out = np.stack([np.broadcast_to(e, shape) for e in ents], axis=-1)
        return out.reshape(*shape, 2, 2)

    def dF(self, *args, K: object = None, O_T: object = None, O_C: object = None,
           precision: int | None = None, **hp) -> np.ndarray:
        """dF/dK at K, the stability of a single-axis variance map (a multi-axis theory refuses:
        its stability is the leading eigenvalue reported by :meth:`fixed_point`)."""
        st, hp = self._split("dF", args, ("K",), self.state_names,
                             _given(K=K, O_T=O_T, O_C=O_C), hp)
        if self.multi_axis:
            raise DerivationError(
                "dF/dK of a multi-axis block depends on the offsets and is not its stability; "
                "use theory.fixed_point(...).dF_dK (the leading eigenvalue) or run()")
        return self._evaluate(self.dF_dK, (K_SYM,), self._state(st, "dF"), hp, precision)

    def state_map(self, *args, K: object = None, O_T: object = None, O_C: object = None,
                  precision: int | None = None, **hp) -> dict[str, np.ndarray]:
        """The next state {"K": K^{l+1}[, "O_T": O_T^{l+1}, "O_C": O_C^{l+1}]} (same
        arguments as :meth:`variance_map`)."""
        st, hp = self._split("state_map", args, ("K",), self.state_names,
                             _given(K=K, O_T=O_T, O_C=O_C), hp)
        s = self._state(st, "state_map")
        return {n: self._evaluate(self.state_maps[x], self.state_symbols, s, hp, precision)
                for n, x in zip(self.state_names, self.state_symbols, strict=True)}

    def offset_maps(self, *args, K: object = None, O_T: object = None, O_C: object = None,
                    precision: int | None = None, **hp):
        """(O_T^{l+1}, O_C^{l+1}) of a multi-axis state (same arguments as
        :meth:`variance_map`)."""
        self._need_axes("offset_maps")
        nxt = self.state_map(*args, K=K, O_T=O_T, O_C=O_C, precision=precision, **hp)
        return nxt["O_T"], nxt["O_C"]

    def _need_axes(self, method: str) -> None:
        if not self.multi_axis:
            raise HyperparameterError(
                f"{method} needs a multi-axis state (K, O_T, O_C); this theory's state is (K)")

    def _two_inputs(self, method: str, args: tuple, given: dict, hp: dict):
        allowed = self.state_names + self.cross_names + (() if self.multi_axis else ("K22",))
        st, hp = self._split(method, args, (), allowed, given, hp)
        s = self._state(st, method)
        return s, self._cross(s, st), hp

    def _cross_args(self) -> tuple[sp.Symbol, ...]:
        return (K11, K22, K12) if not self.multi_axis else STATE + CROSS

    def covariance_map(self, *args, K: object = None, K12: object = None, O_T: object = None,
                       O_T12: object = None, O_C: object = None, O_C12: object = None,
                       K22: object = None, precision: int | None = None, **hp) -> np.ndarray:
        r"""K_12^{l+1} = G(state, cross state), all keyword-only:
        ``covariance_map(K=..., K12=..., [O_T=..., O_T12=..., O_C=..., O_C12=...,] **hp)``.

        Multi-axis: two inputs of equal law (K, O_T, O_C); ``O_T12``/``O_C12`` default to
        c·O_T, c·O_C with c = K12/K.  Single axis: ``K22`` (the second input's variance)
        defaults to K.
        """
        given = _given(K=K, K12=K12, O_T=O_T, O_T12=O_T12, O_C=O_C, O_C12=O_C12, K22=K22)
        s, x, hp = self._two_inputs("covariance_map", args, given, hp)
        return self._evaluate(self.G, self._cross_args(), s + x, hp, precision)

    def cross_offset_maps(self, *args, K: object = None, K12: object = None,
                          O_T: object = None, O_T12: object = None, O_C: object = None,
                          O_C12: object = None, precision: int | None = None, **hp):
        """(O_T12^{l+1}, O_C12^{l+1}) of a multi-axis state (arguments as
        :meth:`covariance_map`)."""
        self._need_axes("cross_offset_maps")
        given = _given(K=K, K12=K12, O_T=O_T, O_T12=O_T12, O_C=O_C, O_C12=O_C12)
        s, x, hp = self._two_inputs("cross_offset_maps", args, given, hp)
        return tuple(self._evaluate(e, self._cross_args(), s + x, hp, precision)
                     for e in (self.G_T, self.G_C))

    def c_map(self, *args, c: object = None, K: object = None, O_T: object = None,
              O_C: object = None, O_T12: object = None, O_C12: object = None,
              precision: int | None = None, **hp) -> np.ndarray:
        """c^{l+1} = K_12^{l+1}/K^{l+1} for two inputs of equal law and correlation c:
        ``c_map(c, K, [O_T=..., O_C=..., O_T12=..., O_C12=...,] **hp)`` (c and K may be
        positional; the cross offsets default to c·O_T, c·O_C)."""
        given = _given(c=c, K=K, O_T=O_T, O_C=O_C, O_T12=O_T12, O_C12=O_C12)
        st, hp = self._split("c_map", args, ("c", "K"),
                             ("c",) + self.state_names + self.cross_names[1:], given, hp)
        if st.get("c") is None:
            raise HyperparameterError("c_map needs the correlation c (c_map(c, K=...))")
        cv = _numbers(st.pop("c"), "c")
        if not np.all(np.isfinite(cv)) or np.any(np.abs(cv) > 1 + 1e-12):
            raise HyperparameterError(f"c must be a correlation in [-1, 1], got {cv}")
        s = self._state(st, "c_map")
        x = self._cross(s, {**st, "K12": cv * s[0]})
        G = self._evaluate(self.G, self._cross_args(), s + x, hp, precision)
        return G / self._evaluate(self.F, self.state_symbols, s, hp, precision)

    # --------------------------------------------------------------- kernels for solvers
    def state_constants(self, vals) -> list[np.ndarray]:
        """The state-independent expectations of the state maps at hyperparameter values
        ``vals`` (flat arrays of one length n), each broadcast to length n."""
        return self._constants(self._state_kernels[1], vals)

    @property
    def _state_kernels(self):
        st = self.feedback_state
        return self._kernels(tuple(self.state_maps[x] for x in st) + (self.chi,), st)

    def state_kernel(self, vals, P=None):
        """``(step, chi)`` for hyperparameter values ``vals`` (flat arrays): ``step(s)`` maps a
        state array of shape (len(feedback_state), n) to the next one, ``chi(s)`` gives χ_J.
        ``P``: :meth:`state_constants` at ``vals`` (computed when not given)."""
        fs = self._state_kernels[0]
        if P is None:
            P = self.state_constants(vals)

        def call(f, s):
            with np.errstate(all="ignore"):
                return np.asarray(f(*s, *vals, *P), dtype=float) * np.ones(s.shape[1:])

        def step(s):
            return np.stack([call(f, s) for f in fs[:-1]])

        def chi(s):
            return call(fs[-1], s)

        return step, chi

    def cross_kernel(self, state, vals):
        """``step(x)`` of the cross state :attr:`cross_feedback` (array of shape (d, n)) at
        fixed state arrays ``state`` (K[, O_T, O_C]) and hyperparameter values ``vals`` (flat
        arrays of one length n); the state-independent integrals are evaluated here, once."""
        state = list(state)[:len(self.state_symbols)]
        maps = self.cross_maps
        fs, fp = self._kernels(tuple(maps[x] for x in self.cross_feedback),
                               self.state_symbols + self.cross_symbols)
        P = self._constants(fp, vals)
        n = np.broadcast_shapes(*(np.shape(v) for v in (*state, *vals)))
        rest = [state[-1]] * (len(self.cross_symbols) - len(fs))  # not fed back: any value

        def step(x):
            with np.errstate(all="ignore"):
                return np.stack([np.broadcast_to(np.asarray(f(*state, *x, *rest, *vals, *P),
                                                            dtype=float), n) for f in fs])

        return step

    # --------------------------------------------------------------- trajectories
    def run(self, depth: int, K0: object = 1.0, c0: object = None, *, O_T0: object = None,
            O_C0: object = None, track_O_C: bool = False, allow_nonfinite: bool = False,
            J0: object = 1.0, k0: object = 0.0, **hp) -> RunResult:
        """Iterate the state and J^{0,l} for ``depth`` blocks from K^0 = ``K0`` (multi-axis:
        O_T^0 = ``O_T0``, O_C^0 = ``O_C0``, default 0); with ``c0`` also the cross state of two
        inputs (K_12^0 = c0·K0, O_T12^0 = c0·O_T0, O_C12^0 = c0·O_C0) and c^l = K_12^l/K^l.

        ``J0`` is J at l = 0 (default 1).  A token state iterates the tangent (j, k) from
        (``J0``, ``k0``) with :meth:`tangent_map` (J = j, ``k`` in the result); other theories
        accept only k0 = 0.

        Hyperparameters may be arrays (broadcast together with the initial state): every output
        then has shape (depth+1, *broadcast_shape).  A non-finite value raises
        :class:`NumericalError` unless ``allow_nonfinite``.  O_C (O_C12) is iterated only if it
        feeds back or ``track_O_C`` (else NaN).
        """
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        axes = self.multi_axis
        if not axes and (not _is_zero(O_T0) or not _is_zero(O_C0) or track_O_C):
            raise HyperparameterError(
                "O_T0, O_C0 and track_O_C belong to a multi-axis state (K, O_T, O_C); this "
                "theory's state is (K): give K0 only (zero offsets are accepted)")
        if not axes:
            O_T0 = O_C0 = None
        tok = self.token_state
        if not tok and not _is_zero(k0):
            raise HyperparameterError(
                "k0 (the cross-token overlap of the tangent) belongs to a token state; this "
                "theory has no token mixing: leave k0 out")
        J0 = _numbers(J0, "J0")
        k0 = _numbers(k0, "k0")
        if not (np.all(np.isfinite(J0)) and np.all(np.isfinite(k0))):
            raise HyperparameterError(f"J0 and k0 must be finite, got J0={J0}, k0={k0}")
        vals = self.values(hp)
        st = self._state({"K": K0, "O_T": O_T0, "O_C": O_C0}, "run", "0")
        shape = np.broadcast_shapes(*(x.shape for x in st), *(v.shape for v in vals),
                                    J0.shape, k0.shape)
        cross = None
        if c0 is not None:
            c0 = _numbers(c0, "c0")
            if not np.all(np.isfinite(c0)) or np.any(np.abs(c0) > 1):
                raise HyperparameterError(f"c0 must be finite and lie in [-1, 1], got {c0}")
            shape = np.broadcast_shapes(shape, c0.shape)
        S = [np.broadcast_to(x, shape).astype(float) for x in st]
        if c0 is not None:
            cross = [np.broadcast_to(c0 * x, shape).astype(float) for x in S]
        S_syms = self.state_symbols
        used = self.F.free_symbols | self.chi.free_symbols
        for e in self.tangent_exprs or ():
            used |= e.free_symbols
        if axes:
            used |= self.F_T.free_symbols
            if cross is not None:
                used |= self.G.free_symbols | self.G_T.free_symbols
        # O_C is iterated only when it feeds back (or is asked for): in a Mixer it does not,
        # and its map holds triply nested expectations
        need_C = axes and (track_O_C or O_C in used)
        need_C12 = axes and (track_O_C or O_C12 in (self.G.free_symbols | self.G_T.free_symbols))
        a_maps = (self.F, self.chi) + ((self.F_T,) if axes else ()) \
            + ((self.F_C,) if need_C else ()) + (self.tangent_exprs if tok else ())
        fa, pa = self._kernels(a_maps, S_syms)
        Pa = self._constants(pa, vals)
        if cross is not None:
            cm = self.cross_maps
            x_maps = (cm[K12],) + ((cm[O_T12],) if axes else ()) \
                + ((cm[O_C12],) if need_C12 else ())
            fx, px = self._kernels(x_maps, S_syms + self.cross_symbols)
            Px = self._constants(px, vals)
        # every output is preallocated as (depth+1, *shape) and written in place, layer by layer
        two = cross is not None
        nan = np.full(shape, np.nan)

        def out(n=depth + 1):
            return np.empty((n, *shape))

        Ks, Js, chis = out(), out(), out(depth)
        Ks[0], Js[0] = S[0], J0
        if tok:
            ks = out()
            ks[0] = k0
            mi = 3 + need_C  # index of M_jj among the compiled maps
        if axes:
            OTs, OCs = out(), out()
            OTs[0], OCs[0] = S[1], S[2]
        if two:
            cs = out()
            cs[0] = np.broadcast_to(c0, shape)
            if axes:
                XTs, XCs = out(), out()
                XTs[0], XCs[0] = cross[1], cross[2]

        def state(layer):
            # views (0-d arrays for a scalar point: ``[layer, ...]``), never copies
            return ([Ks[layer, ...], OTs[layer, ...], OCs[layer, ...]] if axes
                    else [Ks[layer, ...]])

        S = state(0)
        with np.errstate(all="ignore"):
            for layer in range(depth):
                args = (*S, *vals, *Pa)
                if tok:
                    args = _collapse_guard(fa, args)
                    m = [fa[mi + i](*args) for i in range(4)]
                    jl, kl = Js[layer], ks[layer]
                    Js[layer + 1] = m[0] * jl + m[1] * kl
                    ks[layer + 1] = m[2] * jl + m[3] * kl
                    np.divide(Js[layer + 1], jl, out=chis[layer, ...])
                else:
                    chis[layer] = fa[1](*args)
                if two:
                    xargs = (*S, *cross, *vals, *Px)
                    cross = [np.broadcast_to(f(*xargs), shape) for f in fx]
                    if axes and not need_C12:
                        cross.append(nan)
                Ks[layer + 1] = fa[0](*args)
                if axes:
                    OTs[layer + 1] = fa[2](*args)
                    OCs[layer + 1] = fa[3](*args) if need_C else np.nan
                    if tok:  # collapsing tokens (ρ → 1): p may round past q − O_T
                        np.minimum(OCs[layer + 1], Ks[layer + 1] - OTs[layer + 1],
                                   out=OCs[layer + 1, ...])
                S = state(layer + 1)
                if not tok:
                    np.multiply(Js[layer], chis[layer], out=Js[layer + 1, ...])
                finite = np.isfinite(S[0]).all() and np.isfinite(Js[layer + 1]).all()
                if two:
                    c = cs[layer + 1, ...]
                    np.divide(cross[0], S[0], out=c)
                    np.clip(c, -1.0, 1.0, out=c)
                    if axes:
                        XTs[layer + 1] = cross[1]
                        XCs[layer + 1] = cross[2]
                        finite = finite and np.isfinite(c).all()
                    else:  # carry the clipped correlation (rounding at |c| = 1)
                        cross = [c * S[0]]
                if not allow_nonfinite and not finite:
                    raise NumericalError(
                        f"the recursion produced non-finite values at layer {layer + 1} "
                        "(K or J overflowed: the network is deep in the chaotic phase or K "
                        "grows without bound); use a smaller depth, or allow_nonfinite=True"
                    )
        if two:
            warn_if_nan("c^l is undefined (NaN) where K^l = 0: both inputs were mapped to zero "
                        "(e.g. sigma_w = sigma_b = 0)", cs)

        return RunResult(
            K=Ks, J=Js, chi=chis, c=cs if two else None,
            O_T=OTs if axes else None, O_C=OCs if axes else None,
            O_T12=XTs if two and axes else None, O_C12=XCs if two and axes else None,
            k=ks if tok else None,
        )

    # --------------------------------------------------------------- criticality
    def fixed_point(self, K0: object = 1.0, **kw):
        """The fixed point reached from ``K0`` (multi-axis: and ``O_T0``, ``O_C0``): K*, F'(K*)
        (the leading eigenvalue for a vector state), χ_J*, status and growth law (vectorised):
        see :func:`critsym.criticality.fixed_point`."""
        from .criticality.fixed_point import fixed_point

        return fixed_point(self, K0=K0, **kw)

    def correlation(self, K0: object = 1.0, **hp):
        """c*, χ_c and ξ_c of the correlation map: see :func:`critsym.criticality.correlation`."""
        from .criticality.correlation import correlation

        return correlation(self, K0=K0, **hp)

    # --------------------------------------------------------------- export
    def latex(self) -> str:
        """A LaTeX ``align`` fragment with the variance map, χ_J, the APJN product and the
        correlation map (general form, then the closed form where one was found); for a
        multi-axis state also the offset maps and the cross maps."""
        if self.multi_axis:
            return _multi_axis_latex(self)
        from .latex import theory_latex

        return theory_latex(self)

    def __repr__(self) -> str:
        """Short: each map in full when it is small, else its size (print ``th.F`` etc. or
        ``th.latex()`` for the formulas)."""
        arch = _short(repr(self.arch), 160)
        if self.multi_axis:
            return (f"Theory({arch}: state {self.state_names}, F = {_short_expr(self.F)}, "
                    f"chi_J = {_short_expr(self.chi)}, O_T' = {_short_expr(self.F_T)}, "
                    f"O_C' = {_short_expr(self.F_C)})")
        return f"Theory({arch}: F = {_short_expr(self.F)}, chi_J = {_short_expr(self.chi)})"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _short_expr(expr: sp.Expr, limit: int = 80) -> str:
    """``expr`` as text when it is at most ``limit`` characters, else ``<expression: n ops>``."""
    text = str(expr)
    return text if len(text) <= limit else f"<expression: {sp.count_ops(expr)} ops>"


def _multi_axis_latex(th: Theory) -> str:
    """LaTeX ``align`` fragment: the maps of K, χ_J, O_T, O_C and of the cross state."""
    rows = [
        ("K^{l+1}", th.F), (r"\chi_J^{l}", th.chi),
        ("O_T^{l+1}", th.F_T), ("O_C^{l+1}", th.F_C),
        ("K_{12}^{l+1}", th.G), ("O_{T,12}^{l+1}", th.G_T),
        ("O_{C,12}^{l+1}", th.G_C),
    ]
    sub = {K: sp.Symbol("K^{l}"), O_T: sp.Symbol("O_T^{l}"), O_C: sp.Symbol("O_C^{l}"),
           K12: sp.Symbol("K_{12}^{l}"), O_T12: sp.Symbol("O_{T,12}^{l}"),
           O_C12: sp.Symbol("O_{C,12}^{l}")}
    consts: dict[sp.Expr, sp.Symbol] = {}
    hyper = set(th.hyperparameters)

    def name(e):
        """Large state-independent subexpressions become named constants C_i."""
        if e.is_Atom or isinstance(e, sp.Lambda):
            return e
        if e.free_symbols <= hyper and sp.count_ops(e) > 8:
            if e not in consts:
                consts[e] = sp.Symbol(f"C_{{{len(consts) + 1}}}")
            return consts[e]
        return e.func(*(name(a) for a in e.args))

    if th.token_state:
        rows[1] = (r"\chi_J^{l}", th.M_jj)  # the per-block factor; the Perron root follows
        rows += [("j^{l+1}", th.M_jj * sp.Symbol("j^{l}") + th.M_jk * sp.Symbol("k^{l}")),
                 ("k^{l+1}", th.M_kj * sp.Symbol("j^{l}") + th.M_kk * sp.Symbol("k^{l}"))]
    lines = [f"{lhs} &= {sp.latex(name(e).subs(sub))}" for lhs, e in rows]
    lines += [f"{sp.latex(c)} &= {sp.latex(e)}" for e, c in consts.items()]
    if th.token_state:
        lines.insert(2, r"\mathcal{J}^{l_0,l} &= j^{l},\quad (j^{l_0}, k^{l_0}) = (1, 0),\quad "
                        r"\chi_J = \rho\left(\partial (j^{l+1}, k^{l+1}) / "
                        r"\partial (j^{l}, k^{l})\right)")
    else:
        lines.insert(2, r"\mathcal{J}^{l_0,l} &= \prod_{l'=l_0}^{l-1} \chi_J^{l'}, \qquad "
                        r"\mathcal{J}^{l_0,l_0} = 1")
    return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}\n"


def _numbers(value: object, what: str) -> np.ndarray:
    """``value`` as a float array, else a HyperparameterError naming ``what``."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise HyperparameterError(
            f"{what} must be a number or an array of numbers, got {value!r}") from None


_OFFSETS = frozenset({"O_T", "O_C", "O_T12", "O_C12"})


def _is_zero(value: object) -> bool:
    """True for None or a number / array of numbers that are all exactly 0."""
    if value is None:
        return True
    try:
        return bool(np.all(np.asarray(value, dtype=float) == 0))
    except (TypeError, ValueError):
        return False


def _given(**state) -> dict:
    """The state keywords of a call that were given (not None)."""
    return {k: v for k, v in state.items() if v is not None}


__all__ = ["NumericFunction", "RunResult", "Theory", "check_precision"]
