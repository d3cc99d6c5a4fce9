r"""Theory of blocks with a multi-axis (rows × neurons) state, e.g. an MLP-Mixer block.

The state of one block is (K, O_T, O_C): the mean square K of an activation, and the variances of
its per-row component O_T (constant along the neuron axis: the per-token offset of a Mixer,
removed by LayerNorm over channels) and of its per-neuron component O_C (constant along the rows).
The fold (:mod:`critsym.fold`, :mod:`critsym.ops.axes`) gives

    K^{l+1} = F(K, O_T, O_C),   χ_J^l = χ(K, O_T, O_C),
    O_T^{l+1} = F_T(K, O_T, O_C),   O_C^{l+1} = F_C(K, O_T, O_C),

and J^{l0,l} = Π χ_J^m as for an MLP.  Fixed points, critical lines, phase diagrams and the
summary of :mod:`critsym.criticality` accept an :class:`AxisTheory`: they dispatch on
``theory.state_symbols`` to the vector solver :mod:`critsym.criticality.state_fixed_point`.

Two inputs of the same law (K, O_T, O_C) carry the cross state (K_12, O_T12, O_C12): the
covariance of the activations at the same (row, neuron) and of their per-row and per-neuron
components.  The same fold gives its map

    K_12^{l+1} = G(K, O_T, O_C, K_12, O_T12, O_C12),
    O_T12^{l+1} = G_T(...),   O_C12^{l+1} = G_C(...),

and c^l = K_12^l / K^l (what :func:`critsym.simulate_shaped` measures with ``c0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import sympy as sp

from .errors import DerivationError, HyperparameterError, NumericalError
from .fold import Offsets, input_signal, output_variable
from .gaussian.expectation import GaussE, GaussE2
from .gaussian.numeric import compile_expr
from .ops.base import Op
from .symbols import K11, K12, K22, K
from .theory import RunResult, Theory

#: per-row (per-token) and per-neuron (per-channel) offset variances of the block input
O_T = sp.Symbol("O_T", nonnegative=True)
O_C = sp.Symbol("O_C", nonnegative=True)
STATE = (K, O_T, O_C)
#: their covariances between two inputs (the cross state of the correlation map)
O_T12 = sp.Symbol("O_T12", real=True)
O_C12 = sp.Symbol("O_C12", real=True)
CROSS = (K12, O_T12, O_C12)


@lru_cache(maxsize=256)
def _compile(expr, args):
    return compile_expr(expr, args)


@dataclass(frozen=True)
class AxisRunResult(RunResult):
    """:class:`RunResult` plus the offset trajectories ``O_T[l]``, ``O_C[l]``."""

    O_T: np.ndarray | None = None
    O_C: np.ndarray | None = None
    #: with ``c0``: the cross-input offset covariances
    O_T12: np.ndarray | None = None
    O_C12: np.ndarray | None = None


@lru_cache(maxsize=64)
def _fold_axes(arch: Op, closed_forms: bool):
    s = input_signal(K, K, K12, closed_forms=closed_forms, off=Offsets(O_T, O_T, O_T12),
                     noff=Offsets(O_C, O_C, O_C12))
    out = output_variable(arch.apply(s))
    return out.var_a, out.jac, out.off.a, out.noff.a, out.cov, out.off.ab, out.noff.ab


def derive_axes(arch: Op) -> AxisTheory:
    """Derive (F, χ_J, F_T, F_C) and the cross maps (G, G_T, G_C) of a multi-axis block (called
    by :func:`critsym.derive`)."""
    F, chi, FT, FC, G, GT, GC = _fold_axes(arch, True)
    return AxisTheory(arch=arch, F=F, chi=chi, G=G, F_T=FT, F_C=FC, G_T=GT, G_C=GC)


@dataclass(frozen=True)
class AxisTheory(Theory):
    """Mean-field theory of a block on a rows × neurons state (see the module docstring)."""

    F_T: sp.Expr = field(default=sp.S.Zero)
    F_C: sp.Expr = field(default=sp.S.Zero)
    G_T: sp.Expr = field(default=sp.S.Zero)
    G_C: sp.Expr = field(default=sp.S.Zero)

    #: the state the criticality solvers iterate (K first) and the cross state of two inputs
    state_symbols = STATE
    cross_symbols = CROSS
    has_c_map = True

    @cached_property
    def feedback_state(self) -> tuple[sp.Symbol, ...]:
        """The state components that feed back into K, χ_J or O_T (O_C only when it does)."""
        used = self.F.free_symbols | self.chi.free_symbols | self.F_T.free_symbols
        return (K, O_T, O_C) if O_C in used else (K, O_T)

    @property
    def _state_kernels(self):
        st = self.feedback_state
        maps = {K: self.F, O_T: self.F_T, O_C: self.F_C}
        return self._kernels(tuple(maps[x] for x in st) + (self.chi,), st)

    def _kernels(self, exprs, state):
        """:meth:`_with_constants`, compiled once per (maps, state) for this theory."""
        key = (exprs, state)
        cache = self.__dict__.setdefault("_kernel_cache", {})
        if key not in cache:
            cache[key] = self._with_constants(exprs, state)
        return cache[key]

    def _with_constants(self, exprs, state):
        """``exprs`` compiled as functions of (state, hyperparameters, P) with every expectation
        that does not depend on the state (or cross state) replaced by a placeholder P_i, and
        the compiled P_i(hyperparameters): the state-independent integrals (a Mixer's nested
        Δ_T) are then evaluated once per hyperparameter point, not at every layer."""
        nodes = set().union(*(e.atoms(GaussE, GaussE2) for e in exprs))
        const = [n for n in nodes if not (n.free_symbols & set(STATE + CROSS))]
        const = sorted((n for n in const if not any(m != n and m.has(n) for m in const)),
                       key=sp.default_sort_key)
        ph = tuple(sp.Dummy(f"P{i}") for i in range(len(const)))
        rep = dict(zip(const, ph, strict=True))
        args = (*state, *self.hyperparameters, *ph)
        fs = tuple(_compile(e.xreplace(rep), args) for e in exprs)
        fp = tuple(_compile(n, tuple(self.hyperparameters)) for n in const)
        return fs, fp

    @staticmethod
    def _constants(fp, vals) -> list[np.ndarray]:
        n = np.broadcast_shapes(*(np.shape(v) for v in vals))
        with np.errstate(all="ignore"):
            return [np.broadcast_to(np.asarray(f(*vals), dtype=float), n) for f in fp]

    def state_constants(self, vals) -> list[np.ndarray]:
        """The state-independent expectations at hyperparameter values ``vals`` (flat arrays of
        one length n), each broadcast to length n."""
        return self._constants(self._state_kernels[1], vals)

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

    @cached_property
    def hyperparameters(self) -> tuple[sp.Symbol, ...]:
        syms = set().union(*(e.free_symbols for e in self.maps), self.arch.hyperparameters())
        syms -= {K, K11, K12, K22, O_T, O_C, O_T12, O_C12}
        return tuple(sorted(syms, key=lambda s: s.name))

    @property
    def maps(self) -> tuple[sp.Expr, ...]:
        """(F, χ_J, F_T, F_C, G, G_T, G_C)."""
        return self.F, self.chi, self.F_T, self.F_C, self.G, self.G_T, self.G_C

    @cached_property
    def general(self):
        return self.F, self.chi, self.G

    def _c(self, expr):
        return _compile(expr, (*STATE, *self.hyperparameters))

    def _state(self, K_, O_T_, O_C_):
        Kv = self._check_K(K_)
        OT, OC = self._check_K(O_T_, "O_T"), self._check_K(O_C_, "O_C")
        if np.any(OT + OC > Kv + 1e-12):
            raise HyperparameterError(
                "the offset variances O_T + O_C cannot exceed K (they are parts of it); "
                f"got K={K_}, O_T={O_T_}, O_C={O_C_}"
            )
        return Kv, OT, OC

    def variance_map(self, K_, O_T=0.0, O_C=0.0, *, precision=None, **hp):
        r"""K^{l+1} = F(K, O_T, O_C)."""
        return self._c(self.F)(*self._state(K_, O_T, O_C), *self.values(hp))

    def chi_J(self, K_, O_T=0.0, O_C=0.0, *, precision=None, **hp):
        r"""χ_J(K, O_T, O_C)."""
        return self._c(self.chi)(*self._state(K_, O_T, O_C), *self.values(hp))

    def offset_maps(self, K_, O_T=0.0, O_C=0.0, **hp):
        """(O_T^{l+1}, O_C^{l+1}) given the state."""
        st, v = self._state(K_, O_T, O_C), self.values(hp)
        return self._c(self.F_T)(*st, *v), self._c(self.F_C)(*st, *v)

    def dF(self, K_, **hp):  # pragma: no cover - not meaningful without the offsets
        raise DerivationError("dF/dK of a multi-axis block depends on the offsets; use run()")

    # --------------------------------------------------------------- two inputs
    @cached_property
    def cross_feedback(self) -> tuple[sp.Symbol, ...]:
        """The cross-state components that feed back into K_12 or O_T12 (O_C12 only when it
        does)."""
        used = self.G.free_symbols | self.G_T.free_symbols
        return (K12, O_T12, O_C12) if O_C12 in used else (K12, O_T12)

    def cross_kernel(self, state, vals):
        """``step(x)`` of the cross state ``cross_feedback`` (array of shape (d, n)) at fixed
        state arrays ``state`` = (K, O_T, O_C) and hyperparameter values ``vals`` (flat arrays
        of one length n); the state-independent integrals are evaluated here, once."""
        maps = dict(zip(CROSS, (self.G, self.G_T, self.G_C), strict=True))
        fs, fp = self._kernels(tuple(maps[x] for x in self.cross_feedback), STATE + CROSS)
        P = self._constants(fp, vals)
        n = np.broadcast_shapes(*(np.shape(v) for v in (*state, *vals)))
        rest = [state[2]] * (3 - len(fs))  # O_C12 where it does not feed back: any value

        def step(x):
            with np.errstate(all="ignore"):
                return np.stack([np.broadcast_to(np.asarray(f(*state, *x, *rest, *vals, *P),
                                                            dtype=float), n) for f in fs])

        return step

    def _cross(self, expr):
        return _compile(expr, (*STATE, *CROSS, *self.hyperparameters))

    def _cross_state(self, st, K12_, O_T12_, O_C12_):
        Kv, OT, OC = st
        x = [np.asarray(v, dtype=float) for v in (K12_, O_T12_, O_C12_)]
        for v, bound, name in zip(x, (Kv, OT, OC), ("K12", "O_T12", "O_C12"), strict=True):
            if not np.all(np.isfinite(v)) or np.any(np.abs(v) > bound * (1 + 1e-12) + 1e-300):
                raise HyperparameterError(
                    f"{name} must be finite with |{name}| <= its variance (a covariance of two "
                    f"inputs of equal law); got {name}={v}"
                )
        return x

    def covariance_map(self, K_, K12_, O_T=0.0, O_T12=None, O_C=0.0, O_C12=None, *,
                       precision=None, **hp):
        r"""K_12^{l+1} = G(K, O_T, O_C, K_12, O_T12, O_C12) for two inputs of equal law
        (K, O_T, O_C).  ``O_T12``/``O_C12`` default to c·O_T, c·O_C with c = K_12/K."""
        st, x = self._two_inputs(K_, K12_, O_T, O_T12, O_C, O_C12)
        return self._cross(self.G)(*st, *x, *self.values(hp))

    def cross_offset_maps(self, K_, K12_, O_T=0.0, O_T12=None, O_C=0.0, O_C12=None, **hp):
        """(O_T12^{l+1}, O_C12^{l+1}) given the state and the cross state."""
        st, x = self._two_inputs(K_, K12_, O_T, O_T12, O_C, O_C12)
        v = self.values(hp)
        return self._cross(self.G_T)(*st, *x, *v), self._cross(self.G_C)(*st, *x, *v)

    def _two_inputs(self, K_, K12_, O_T_, O_T12_, O_C_, O_C12_):
        st = self._state(K_, O_T_, O_C_)
        c = np.asarray(K12_, dtype=float) / st[0]
        O_T12_ = c * st[1] if O_T12_ is None else O_T12_
        O_C12_ = c * st[2] if O_C12_ is None else O_C12_
        return st, self._cross_state(st, K12_, O_T12_, O_C12_)

    def c_map(self, c, K_, O_T=0.0, O_C=0.0, *, O_T12=None, O_C12=None, **hp) -> np.ndarray:
        """c^{l+1} = K_12^{l+1}/K^{l+1} for two inputs of equal law (K, O_T, O_C) and correlation
        c (cross offsets default to c·O_T, c·O_C)."""
        K12_ = np.asarray(c, dtype=float) * np.asarray(K_, dtype=float)
        return (self.covariance_map(K_, K12_, O_T, O_T12, O_C, O_C12, **hp)
                / self.variance_map(K_, O_T, O_C, **hp))

    @cached_property
    def c_map_expr(self):
        return self.G / self.F

    def run(self, depth: int, K0=1.0, c0=None, *, O_T0=0.0, O_C0=0.0, track_O_C: bool = False,
            allow_nonfinite: bool = False, **hp) -> AxisRunResult:
        """Iterate (K, O_T, O_C) and J^{0,l} for ``depth`` blocks (hyperparameters broadcast);
        with ``c0`` also the cross state of two inputs (K_12^0 = c0·K0, O_T12^0 = c0·O_T0,
        O_C12^0 = c0·O_C0) and c^l = K_12^l/K^l.

        O_C (O_C12) is iterated only if it feeds back or ``track_O_C`` (else NaN)."""
        if not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        vals = self.values(hp)
        st = self._state(K0, O_T0, O_C0)
        shape = np.broadcast_shapes(*(x.shape for x in st), *(v.shape for v in vals))
        Kl, OT, OC = (np.broadcast_to(x, shape).astype(float) for x in st)
        cross = None
        if c0 is not None:
            c0 = np.asarray(c0, dtype=float)
            if not np.all(np.isfinite(c0)) or np.any(np.abs(c0) > 1):
                raise HyperparameterError(f"c0 must lie in [-1, 1], got {c0}")
            shape = np.broadcast_shapes(shape, c0.shape)
            Kl, OT, OC = (np.broadcast_to(x, shape).astype(float) for x in (Kl, OT, OC))
            cross = [np.broadcast_to(c0 * x, shape).astype(float) for x in (Kl, OT, OC)]
        # O_C is iterated only when it feeds back (or is asked for): in a Mixer it does not,
        # and its map holds triply nested expectations
        need_C = track_O_C or O_C in set().union(
            *(e.free_symbols for e in (self.F, self.chi, self.F_T)
              + ((self.G, self.G_T) if cross is not None else ())))
        need_C12 = track_O_C or O_C12 in (self.G.free_symbols | self.G_T.free_symbols)
        a_maps = (self.F, self.chi, self.F_T) + ((self.F_C,) if need_C else ())
        fa, pa = self._kernels(a_maps, STATE)
        Pa = self._constants(pa, vals)
        fF, fchi, fT = fa[:3]
        fC = fa[3] if need_C else None
        if cross is not None:
            x_maps = (self.G, self.G_T) + ((self.G_C,) if need_C12 else ())
            fx, px = self._kernels(x_maps, STATE + CROSS)
            Px = self._constants(px, vals)
            gG, gT = fx[:2]
            gC = fx[2] if need_C12 else None
        Ks, OTs, OCs, chis, Js = [Kl], [OT], [OC], [], [np.ones(shape)]
        cs = [None if cross is None else cross[0] / Kl]
        X = [cross]
        for layer in range(depth):
            args = (Kl, OT, OC, *vals, *Pa)
            chi = np.broadcast_to(fchi(*args), shape)
            if cross is not None:
                xargs = (Kl, OT, OC, *cross, *vals, *Px)
                with np.errstate(all="ignore"):
                    cross = [np.broadcast_to(gG(*xargs), shape), np.broadcast_to(gT(*xargs), shape),
                             np.broadcast_to(gC(*xargs), shape) if gC is not None
                             else cross[2] * np.nan]
            Kl, OT = (np.broadcast_to(f(*args), shape) for f in (fF, fT))
            OC = np.broadcast_to(fC(*args), shape) if fC is not None else OC * np.nan
            chis.append(chi)
            Js.append(Js[-1] * chi)
            Ks.append(Kl)
            OTs.append(OT)
            OCs.append(OC)
            X.append(cross)
            if cross is not None:
                with np.errstate(all="ignore"):
                    cs.append(np.clip(cross[0] / Kl, -1.0, 1.0))
            finite = np.all(np.isfinite(Kl)) and np.all(np.isfinite(Js[-1]))
            if cross is not None:
                finite = finite and np.all(np.isfinite(cs[-1]))
            if not allow_nonfinite and not finite:
                raise NumericalError(
                    f"the recursion produced non-finite values at layer {layer + 1}; use a "
                    "smaller depth, or allow_nonfinite=True"
                )
        two = cross is not None
        return AxisRunResult(
            K=np.stack(Ks), J=np.stack(Js),
            chi=np.stack(chis) if chis else np.zeros((0, *shape)),
            c=np.stack(cs) if two else None,
            O_T=np.stack(OTs), O_C=np.stack(OCs),
            O_T12=np.stack([x[1] for x in X]) if two else None,
            O_C12=np.stack([x[2] for x in X]) if two else None,
        )

    def latex(self) -> str:
        """LaTeX ``align`` fragment: the maps of K, χ_J, O_T, O_C and of the cross state."""
        rows = [
            ("K^{l+1}", self.F), (r"\chi_J^{l}", self.chi),
            ("O_T^{l+1}", self.F_T), ("O_C^{l+1}", self.F_C),
            ("K_{12}^{l+1}", self.G), ("O_{T,12}^{l+1}", self.G_T),
            ("O_{C,12}^{l+1}", self.G_C),
        ]
        sub = {K: sp.Symbol("K^{l}"), O_T: sp.Symbol("O_T^{l}"), O_C: sp.Symbol("O_C^{l}"),
               K12: sp.Symbol("K_{12}^{l}"), O_T12: sp.Symbol("O_{T,12}^{l}"),
               O_C12: sp.Symbol("O_{C,12}^{l}")}
        consts: dict[sp.Expr, sp.Symbol] = {}
        hyper = set(self.hyperparameters)

        def name(e):
            """Large state-independent subexpressions become named constants C_i."""
            if e.is_Atom or isinstance(e, sp.Lambda):
                return e
            if e.free_symbols <= hyper and sp.count_ops(e) > 8:
                if e not in consts:
                    consts[e] = sp.Symbol(f"C_{{{len(consts) + 1}}}")
                return consts[e]
            return e.func(*(name(a) for a in e.args))

        lines = [f"{lhs} &= {sp.latex(name(e).subs(sub))}" for lhs, e in rows]
        lines += [f"{sp.latex(c)} &= {sp.latex(e)}" for e, c in consts.items()]
        lines.insert(2, r"\mathcal{J}^{l_0,l} &= \prod_{l'=l_0}^{l-1} \chi_J^{l'}, \qquad "
                        r"\mathcal{J}^{l_0,l_0} = 1")
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}\n"

    def __repr__(self) -> str:
        return (f"AxisTheory({self.arch!r}: F = {self.F}, chi_J = {self.chi}, "
                f"O_T' = {self.F_T}, O_C' = {self.F_C}, K12' = {self.G})")
