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
The two-input correlation map is not derived for these states (it needs the offsets'
cross-covariances between the two inputs): :meth:`AxisTheory.c_map` raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import sympy as sp

from .errors import DerivationError, HyperparameterError, NumericalError
from .fold import input_signal, output_variable
from .gaussian.expectation import GaussE, GaussE2
from .gaussian.numeric import compile_expr
from .ops.base import Op
from .symbols import K11, K12, K22, K
from .theory import RunResult, Theory

#: per-row (per-token) and per-neuron (per-channel) offset variances of the block input
O_T = sp.Symbol("O_T", nonnegative=True)
O_C = sp.Symbol("O_C", nonnegative=True)
STATE = (K, O_T, O_C)


@lru_cache(maxsize=256)
def _compile(expr, args):
    return compile_expr(expr, args)


@dataclass(frozen=True)
class AxisRunResult(RunResult):
    """:class:`RunResult` plus the offset trajectories ``O_T[l]``, ``O_C[l]``."""

    O_T: np.ndarray | None = None
    O_C: np.ndarray | None = None


@lru_cache(maxsize=64)
def _fold_axes(arch: Op, closed_forms: bool):
    s = input_signal(K, K, K, closed_forms=closed_forms, off=O_T, noff=O_C)
    out = output_variable(arch.apply(s))
    return out.var_a, out.jac, out.off, out.noff


def derive_axes(arch: Op) -> AxisTheory:
    """Derive (F, χ_J, F_T, F_C) of a multi-axis block (called by :func:`critsym.derive`)."""
    F, chi, FT, FC = _fold_axes(arch, True)
    return AxisTheory(arch=arch, F=F, chi=chi, G=sp.nan, F_T=FT, F_C=FC)


@dataclass(frozen=True)
class AxisTheory(Theory):
    """Mean-field theory of a block on a rows × neurons state (see the module docstring)."""

    F_T: sp.Expr = field(default=sp.S.Zero)
    F_C: sp.Expr = field(default=sp.S.Zero)

    #: the state the criticality solvers iterate (K first); no two-input correlation map
    state_symbols = STATE
    has_c_map = False

    @cached_property
    def feedback_state(self) -> tuple[sp.Symbol, ...]:
        """The state components that feed back into K, χ_J or O_T (O_C only when it does)."""
        used = self.F.free_symbols | self.chi.free_symbols | self.F_T.free_symbols
        return (K, O_T, O_C) if O_C in used else (K, O_T)

    @cached_property
    def _state_kernels(self):
        """Maps of the feedback state and χ_J, compiled with every expectation that does not
        depend on the state replaced by a placeholder (evaluated once per hyperparameter point:
        a Mixer's nested Δ_T integral is then not recomputed at each iteration)."""
        st = self.feedback_state
        maps = {K: self.F, O_T: self.F_T, O_C: self.F_C}
        exprs = [maps[x] for x in st] + [self.chi]
        nodes = set().union(*(e.atoms(GaussE, GaussE2) for e in exprs))
        const = [n for n in nodes if not (n.free_symbols & set(STATE))]
        const = [n for n in const if not any(m != n and m.has(n) for m in const)]
        ph = tuple(sp.Dummy(f"P{i}") for i in range(len(const)))
        rep = dict(zip(const, ph, strict=True))
        args = (*st, *self.hyperparameters, *ph)
        fs = tuple(_compile(e.xreplace(rep), args) for e in exprs)
        fp = tuple(_compile(n, tuple(self.hyperparameters)) for n in const)
        return fs, fp

    def state_constants(self, vals) -> list[np.ndarray]:
        """The state-independent expectations at hyperparameter values ``vals`` (flat arrays of
        one length n), each broadcast to length n."""
        n = np.broadcast_shapes(*(np.shape(v) for v in vals))
        with np.errstate(all="ignore"):
            return [np.broadcast_to(np.asarray(f(*vals), dtype=float), n)
                    for f in self._state_kernels[1]]

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
        syms = (self.F.free_symbols | self.chi.free_symbols | self.F_T.free_symbols
                | self.F_C.free_symbols | self.arch.hyperparameters()) - {K, K11, K12, K22,
                                                                          O_T, O_C}
        return tuple(sorted(syms, key=lambda s: s.name))

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

    def correlation(self, *a, **k):
        self.covariance_map()

    def covariance_map(self, *a, **k):
        raise DerivationError(
            "the two-input covariance map is not derived for multi-axis (Mixer) blocks (it "
            "needs the cross-covariance of the per-token offsets between the two inputs); "
            "use run() or fixed_point() for K, O_T and the APJN"
        )

    c_map = covariance_map

    @cached_property
    def c_map_expr(self):
        raise DerivationError("no correlation map for multi-axis blocks (see covariance_map)")

    def run(self, depth: int, K0=1.0, c0=None, *, O_T0=0.0, O_C0=0.0, track_O_C: bool = False,
            allow_nonfinite: bool = False, **hp) -> AxisRunResult:
        """Iterate (K, O_T, O_C) and J^{0,l} for ``depth`` blocks (hyperparameters broadcast).

        O_C is iterated only if K, χ or O_T depend on it or ``track_O_C`` (else ``O_C[l>0]`` is
        NaN)."""
        if c0 is not None:
            self.c_map()
        if not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        vals = self.values(hp)
        st = self._state(K0, O_T0, O_C0)
        shape = np.broadcast_shapes(*(x.shape for x in st), *(v.shape for v in vals))
        Kl, OT, OC = (np.broadcast_to(x, shape).astype(float) for x in st)
        fF, fchi, fT = (self._c(e) for e in (self.F, self.chi, self.F_T))
        # O_C is iterated only when it feeds back (or is asked for): in a Mixer it does not,
        # and its map holds triply nested expectations
        need_C = track_O_C or O_C in (self.F.free_symbols | self.chi.free_symbols
                                      | self.F_T.free_symbols)
        fC = self._c(self.F_C) if need_C else None
        Ks, OTs, OCs, chis, Js = [Kl], [OT], [OC], [], [np.ones(shape)]
        for layer in range(depth):
            args = (Kl, OT, OC, *vals)
            chi = np.broadcast_to(fchi(*args), shape)
            Kl, OT = (np.broadcast_to(f(*args), shape) for f in (fF, fT))
            OC = np.broadcast_to(fC(*args), shape) if fC is not None else OC * np.nan
            chis.append(chi)
            Js.append(Js[-1] * chi)
            Ks.append(Kl)
            OTs.append(OT)
            OCs.append(OC)
            finite = np.all(np.isfinite(Kl)) and np.all(np.isfinite(Js[-1]))
            if not allow_nonfinite and not finite:
                raise NumericalError(
                    f"the recursion produced non-finite values at layer {layer + 1}; use a "
                    "smaller depth, or allow_nonfinite=True"
                )
        return AxisRunResult(
            K=np.stack(Ks), J=np.stack(Js),
            chi=np.stack(chis) if chis else np.zeros((0, *shape)),
            O_T=np.stack(OTs), O_C=np.stack(OCs),
        )

    def latex(self) -> str:
        """LaTeX ``align`` fragment: the maps of K, χ_J, O_T and O_C."""
        rows = [
            ("K^{l+1}", self.F), (r"\chi_J^{l}", self.chi),
            ("O_T^{l+1}", self.F_T), ("O_C^{l+1}", self.F_C),
        ]
        sub = {K: sp.Symbol("K^{l}"), O_T: sp.Symbol("O_T^{l}"), O_C: sp.Symbol("O_C^{l}")}
        lines = [f"{lhs} &= {sp.latex(e.subs(sub))}" for lhs, e in rows]
        lines.insert(2, r"\mathcal{J}^{l_0,l} &= \prod_{l'=l_0}^{l-1} \chi_J^{l'}, \qquad "
                        r"\mathcal{J}^{l_0,l_0} = 1")
        lines.append(r"K_{12}^{l+1} &: \text{not derived for multi-axis states}")
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}\n"

    def __repr__(self) -> str:
        return (f"AxisTheory({self.arch!r}: F = {self.F}, chi_J = {self.chi}, "
                f"O_T' = {self.F_T}, O_C' = {self.F_C})")
