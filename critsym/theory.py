r"""The :class:`Theory` of one repeating block and its numeric evaluation.

Numeric functions are compiled once per theory from the symbolic maps (never re-derived) and are
vectorised: hyperparameters may be numpy arrays, broadcast together, so one call evaluates a
whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sympy as sp

from .errors import HyperparameterError, NumericalError, warn_if_nan
from .gaussian.numeric import compile_expr, evaluate_mp
from .ops.base import Op
from .symbols import K11, K12, K22, K


@dataclass(frozen=True)
class RunResult:
    """Layer-by-layer mean-field trajectories; axis 0 is the layer l = 0..depth.

    ``K[l]`` = K^l, ``J[l]`` = J^{0,l} (J[0] = 1), ``chi[l]`` = χ_J^l (l = 0..depth-1),
    ``c[l]`` = correlation c^l of two inputs of equal variance (None without ``c0``).
    """

    K: np.ndarray
    J: np.ndarray
    chi: np.ndarray
    c: np.ndarray | None = None

    @property
    def depth(self) -> int:
        return self.K.shape[0] - 1

    @property
    def layers(self) -> np.ndarray:
        return np.arange(self.depth + 1)

    def J_from(self, l0: int) -> np.ndarray:
        """J^{l0,l} for l = l0..depth (the product of χ_J^m for m = l0..l-1)."""
        return self.J[l0:] / self.J[l0]


@dataclass(frozen=True)
class Theory:
    """Mean-field theory of a block: symbolic maps in ``K`` and the hyperparameter symbols."""

    arch: Op
    F: sp.Expr
    chi: sp.Expr
    G: sp.Expr
    K: sp.Symbol = field(default=K, repr=False)

    # --------------------------------------------------------------- symbols
    @cached_property
    def hyperparameters(self) -> tuple[sp.Symbol, ...]:
        """The free hyperparameter symbols, sorted by name."""
        syms = (self.F.free_symbols | self.chi.free_symbols | self.G.free_symbols
                | self.arch.hyperparameters()) - {K, K11, K12, K22}
        return tuple(sorted(syms, key=lambda s: s.name))

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.hyperparameters)

    @cached_property
    def general(self) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        """(F, χ_J, G) with the Gaussian expectations unevaluated."""
        from .derive import derive_general

        return derive_general(self.arch)

    @cached_property
    def dF_dK(self) -> sp.Expr:
        """dF/dK, the stability of the variance map."""
        return sp.diff(self.F, K)

    @cached_property
    def c_map_expr(self) -> sp.Expr:
        """c^{l+1} = G(K, K, cK) / F(K) for two inputs of equal variance K."""
        c = sp.Symbol("c", real=True)
        return self.G.subs({K11: K, K22: K, K12: c * K}) / self.F

    # --------------------------------------------------------------- compiled
    @cached_property
    def _args(self) -> tuple[sp.Symbol, ...]:
        return self.hyperparameters

    @cached_property
    def _F(self):
        return compile_expr(self.F, (K, *self._args))

    @cached_property
    def _chi(self):
        return compile_expr(self.chi, (K, *self._args))

    @cached_property
    def _G(self):
        return compile_expr(self.G, (K11, K22, K12, *self._args))

    @cached_property
    def _dF(self):
        return compile_expr(self.dF_dK, (K, *self._args))

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
            raise HyperparameterError(
                f"{'; '.join(parts)}: this theory's hyperparameters are {list(names)}; "
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

    @staticmethod
    def _check_K(Kv, what="K") -> np.ndarray:
        try:
            Kv = np.asarray(Kv, dtype=float)
        except (TypeError, ValueError):
            raise HyperparameterError(f"{what} must be a number >= 0 (a variance), got {Kv!r}"
                                      ) from None
        if not np.all(np.isfinite(Kv)) or np.any(Kv < 0):
            raise HyperparameterError(f"{what} must be finite and >= 0 (a variance), got {Kv}")
        return Kv

    def _eval(self, fn, expr, Kv, hp, precision):
        if precision is not None:
            return self._eval_mp(expr, {K: Kv}, hp, precision)
        vals = self.values(hp)
        out = fn(self._check_K(Kv), *vals)
        warn_if_nan("the map is undefined (NaN) at this K and these hyperparameters: 0/0 in it, "
                    "e.g. a LayerNorm of a signal that vanishes (sigma_w = sigma_b = 0)", out)
        return out

    def _eval_mp(self, expr, state: dict, hp: dict, dps: int):
        self.values(hp)
        subs = {s: sp.Float(float(hp[s.name]), dps) for s in self.hyperparameters}
        subs.update({k: sp.Float(float(v), dps) for k, v in state.items()})
        return evaluate_mp(expr, subs, dps)

    def variance_map(self, K_: object, *, precision: int | None = None, **hp) -> np.ndarray:
        r"""F(K) = K^{l+1} given K^l (``precision``: mpmath digits for a scalar evaluation)."""
        return self._eval(self._F, self.F, K_, hp, precision)

    def chi_J(self, K_: object, *, precision: int | None = None, **hp) -> np.ndarray:
        r"""χ_J(K): J^{l0,l+1} = χ_J^l J^{l0,l}."""
        return self._eval(self._chi, self.chi, K_, hp, precision)

    def dF(self, K_: object, **hp) -> np.ndarray:
        """dF/dK at K."""
        return self._dF(self._check_K(K_), *self.values(hp))

    def covariance_map(self, K11_, K22_, K12_, *, precision: int | None = None, **hp):
        r"""G(K_11, K_22, K_12) = K_12^{l+1}."""
        if precision is not None:
            return self._eval_mp(self.G, {K11: K11_, K22: K22_, K12: K12_}, hp, precision)
        return self._G(self._check_K(K11_), self._check_K(K22_), K12_, *self.values(hp))

    def c_map(self, c, K_, **hp) -> np.ndarray:
        """c^{l+1} for two inputs of equal variance K^l and correlation c^l."""
        Kv = self._check_K(K_)
        vals = self.values(hp)
        return self._G(Kv, Kv, np.asarray(c) * Kv, *vals) / self._F(Kv, *vals)

    # --------------------------------------------------------------- trajectories
    def run(self, depth: int, K0: object = 1.0, c0: object = None, *,
            allow_nonfinite: bool = False, **hp) -> RunResult:
        """Iterate the recursions for ``depth`` blocks from K^0 = ``K0`` (and c^0 = ``c0``).

        Hyperparameters may be arrays (broadcast together with ``K0``): every output then has
        shape (depth+1, *broadcast_shape).  A non-finite value raises :class:`NumericalError`
        unless ``allow_nonfinite``.
        """
        if not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        vals = self.values(hp)
        Kl = self._check_K(K0, "K0")
        cl = None
        if c0 is not None:
            try:
                cl = np.asarray(c0, dtype=float)
            except (TypeError, ValueError):
                raise HyperparameterError(f"c0 must be a number in [-1, 1], got {c0!r}") from None
            if not np.all(np.isfinite(cl)) or np.any(np.abs(cl) > 1):
                raise HyperparameterError(f"c0 must be finite and lie in [-1, 1], got {c0}")
        shape = np.broadcast_shapes(Kl.shape, *(v.shape for v in vals),
                                    *(() if cl is None else (cl.shape,)))
        Kl = np.broadcast_to(Kl, shape).astype(float)
        if cl is not None:
            cl = np.broadcast_to(cl, shape).astype(float)
        Ks, chis, Js, cs = [Kl], [], [np.ones(shape)], [cl]
        err = np.errstate(over="ignore", invalid="ignore")
        err.__enter__()
        for layer in range(depth):
            chi = np.broadcast_to(self._chi(Kl, *vals), shape)
            Kn = np.broadcast_to(self._F(Kl, *vals), shape)
            if cl is not None:
                with np.errstate(all="ignore"):
                    cn = self._G(Kl, Kl, cl * Kl, *vals) / Kn
                cl = np.broadcast_to(np.clip(cn, -1.0, 1.0), shape)
                cs.append(cl)
            chis.append(chi)
            Js.append(Js[-1] * chi)
            Kl = Kn
            Ks.append(Kl)
            finite = np.all(np.isfinite(Kl)) and np.all(np.isfinite(Js[-1]))
            if not allow_nonfinite and not finite:
                err.__exit__(None, None, None)
                raise NumericalError(
                    f"the recursion produced non-finite values at layer {layer + 1} "
                    "(K or J overflowed: the network is deep in the chaotic phase or K grows "
                    "without bound); use a smaller depth, or allow_nonfinite=True"
                )
        err.__exit__(None, None, None)
        if cl is not None:
            warn_if_nan("c^l is undefined (NaN) where K^l = 0: both inputs were mapped to zero "
                        "(e.g. sigma_w = sigma_b = 0)", *cs)
        return RunResult(
            K=np.stack(Ks), J=np.stack(Js),
            chi=np.stack(chis) if chis else np.zeros((0, *shape)),
            c=np.stack(cs) if cl is not None else None,
        )

    # --------------------------------------------------------------- criticality
    def fixed_point(self, K0: object = 1.0, **hp):
        """The fixed point K* reached from ``K0``, F'(K*), χ_J*, status and growth law
        (vectorised): see :func:`critsym.criticality.fixed_point`."""
        from .criticality.fixed_point import fixed_point

        return fixed_point(self, K0=K0, **hp)

    def correlation(self, K0: object = 1.0, **hp):
        """c*, χ_c and ξ_c of the correlation map: see :func:`critsym.criticality.correlation`."""
        from .criticality.correlation import correlation

        return correlation(self, K0=K0, **hp)

    # --------------------------------------------------------------- export
    def latex(self) -> str:
        """A LaTeX ``align`` fragment with the variance map, χ_J, the APJN product and the
        correlation map (general form, then the closed form where one was found)."""
        from .latex import theory_latex

        return theory_latex(self)

    def __repr__(self) -> str:
        return f"Theory({self.arch!r}: F = {self.F}, chi_J = {self.chi})"
