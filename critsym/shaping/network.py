r"""Network-level Q/C maps of a whole critsym architecture with a shaped activation.

A shaped activation becomes an architecture operator (:class:`ShapedAct`); every ``Act`` of a
block is replaced by it (:func:`with_activation`) and the block is derived by the core's fold, so
the network maps of any composition (biases, LayerNorm, residual sums with weight μ) follow
without a hand-written "subnetwork maximizing function".

For ``depth`` blocks from input variance K^0 (= q of the inputs, 1 by default) with variance
trajectory K^l and block correlation maps g_l(c) = G(K^l, K^l, c K^l) / F(K^l):

* network C map      C_f(c) = g_{L-1} ∘ … ∘ g_0 (c);
* C_f'(1)            = Π_l g_l'(1) = Π_l χ_J^l K^l / K^{l+1} = J^{0,L} K^0 / K^L
  (a block's C-map slope at c = 1 is its APJN factor times the variance ratio);
* C_f''(1)           by the chain rule f_{l+1}'' = g_l''(1) f_l'² + g_l'(1) f_l'' (each g_l(1) = 1);
  g_l''(1) is extrapolated (Richardson, three steps) from g_l(1 - h), h = 0.08, 0.04, 0.02;
  ~1e-7 accurate for smooth activations;
* C_f(0)             the network C map at 0.

For dks's plain chain (``Act >> Linear(1, 0)``, Q(1) = 1, so K^l = 1) these reduce to dks's
C_f'(1) = C'(1)^L, C_f''(1) = L C''(1) (when C'(1) = 1) and C_f(0) = C^{∘L}(0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import sympy as sp

from ..activations import x
from ..derive import derive
from ..errors import ArchitectureError, HyperparameterError
from ..ops.activation import Act
from ..ops.base import Op, as_op
from ..ops.linear import Linear
from ..symbols import as_hyper, hyper_symbol

#: hyperparameter symbols of a symbolic shaped activation (one derivation serves every solve step)
SHAPE_SYMBOLS = tuple(sp.Symbol(n, real=True) for n in
                      ("shape_alpha", "shape_beta", "shape_delta", "shape_gamma"))


@dataclass(frozen=True, init=False)
class ShapedAct(Act):
    r"""x ↦ γ (φ(α x + β) + δ) for a base activation φ (an :class:`~critsym.Act`); the four
    parameters are numbers or sympy expressions (hyperparameters of the architecture).

    An operator like any other: it folds as the activation φ̂, round-trips through JSON, builds
    (a torch lambdify of φ̂), exports to an ``ActModule`` and imports back from it."""

    base_act: Act
    input_scale: sp.Expr
    input_shift: sp.Expr
    output_shift: sp.Expr
    output_scale: sp.Expr
    hyper_fields = ("input_scale", "input_shift", "output_shift", "output_scale")
    latex_name = r"\hat\phi"

    @classmethod
    def serial_fields(cls) -> tuple[str, ...]:
        return ("base_act", *cls.hyper_fields)

    @classmethod
    def examples(cls):
        from ..ops.contract import Example

        return (Example(ShapedAct("tanh", 1.2, 0.1, -0.05, 1.3) >> Linear(), dict(
            sigma_w=1.1, sigma_b=0.2), name="ShapedAct(tanh) >> Linear"),)

    def __init__(self, base_act: Act | str, input_scale: object = 1.0, input_shift: object = 0.0,
                 output_shift: object = 0.0, output_scale: object = 1.0):
        if not isinstance(base_act, (Act, str)):
            raise ArchitectureError(f"ShapedAct takes a base activation (a name or an Act), "
                                    f"got {base_act!r}")
        base_act = base_act if isinstance(base_act, Act) else Act(base_act)
        object.__setattr__(self, "name", "shaped")
        object.__setattr__(self, "params", ())
        object.__setattr__(self, "expr", None)
        object.__setattr__(self, "base_act", base_act)
        for k, v in (("input_scale", input_scale), ("input_shift", input_shift),
                     ("output_shift", output_shift), ("output_scale", output_scale)):
            v = sp.Float(float(v)) if isinstance(v, (float, np.floating)) else v
            object.__setattr__(self, k, as_hyper(v, what=k))

    def __repr__(self) -> str:
        def f(v):
            return f"{float(v):.6g}" if v.is_number else str(v)

        return (f"ShapedAct({self.base_act!r}, input_scale={f(self.input_scale)}, "
                f"input_shift={f(self.input_shift)}, output_shift={f(self.output_shift)}, "
                f"output_scale={f(self.output_scale)})")

    def phi(self, arg: sp.Expr = x) -> sp.Expr:
        return self.output_scale * (self.base_act.phi(self.input_scale * arg + self.input_shift)
                                    + self.output_shift)

    def hyperparameters(self) -> set[sp.Symbol]:
        out = set(self.base_act.hyperparameters())
        for v in (self.input_scale, self.input_shift, self.output_shift, self.output_scale):
            out |= v.free_symbols
        return out

    def subs(self, values: dict) -> Op:
        sym = {(hyper_symbol(k) if isinstance(k, str) else k): v for k, v in values.items()}
        return ShapedAct(self.base_act.subs(values),
                         *(sp.sympify(v).subs(sym) for v in (
                             self.input_scale, self.input_shift, self.output_shift,
                             self.output_scale)))


@lru_cache(maxsize=64)
def _theory(arch: Op):
    """derive(arch), kept so that its compiled numeric functions are reused across solves."""
    return derive(arch)


def with_activation(arch: Op, act: Act) -> Op:
    """``arch`` with every :class:`~critsym.Act` replaced by ``act``."""
    arch = as_op(arch)
    if isinstance(arch, Act):
        return act
    return arch.map_children(lambda o: with_activation(o, act))


def count_activations(arch: Op) -> int:
    if isinstance(arch, Act):
        return 1
    return sum(count_activations(c) for c in arch.children())


def plain_block(act: Act | str = "relu") -> Op:
    """dks's plain chain block: φ̂ then a Linear layer with σ_w = 1, σ_b = 0."""
    return (act if isinstance(act, Act) else Act(act)) >> Linear(1, 0)


_RICH_H = np.array([0.08, 0.04, 0.02])


@dataclass(frozen=True)
class NetworkMaps:
    """The network maps of ``depth`` repetitions of the block ``arch`` (numeric hyperparameters)
    from input variance ``K0``."""

    arch: Op
    depth: int
    K0: float = 1.0
    #: values of the architecture's remaining hyperparameters, as (name, value) pairs
    hp: tuple = ()

    def __post_init__(self):
        free = {str(s) for s in self.arch.hyperparameters()} - {k for k, _ in self.hp}
        if free:
            raise HyperparameterError(
                f"the architecture has free hyperparameters {sorted(map(str, free))}; give them "
                "numbers, e.g. arch.subs({'sigma_w': 1.0, 'sigma_b': 0.1}) or "
                "transform(..., hyperparameters={...})"
            )
        if not isinstance(self.depth, (int, np.integer)) or self.depth < 1:
            raise HyperparameterError(f"depth must be an integer >= 1, got {self.depth!r}")
        if not (np.isfinite(self.K0) and self.K0 > 0):
            raise HyperparameterError(f"K0 must be a positive variance, got {self.K0!r}")

    @property
    def theory(self):
        return _theory(self.arch)

    @property
    def _hp(self) -> dict:
        return dict(self.hp)

    @cached_property
    def _run(self):
        return self.theory.run(self.depth, K0=self.K0, **self._hp)

    @property
    def K(self) -> np.ndarray:
        """K^l, l = 0..depth."""
        return self._run.K

    @property
    def apjn(self) -> np.ndarray:
        """J^{0,l}, l = 0..depth."""
        return self._run.J

    @cached_property
    def slopes(self) -> np.ndarray:
        """g_l'(1) = χ_J^l K^l / K^{l+1}."""
        r = self._run
        return r.chi * r.K[:-1] / r.K[1:]

    @cached_property
    def curvatures(self) -> np.ndarray:
        """g_l''(1), Richardson-extrapolated from g_l(1 - h)."""
        Kl = self.K[:-1, None]
        h = _RICH_H[None, :]
        g = self.theory.c_map(1.0 - h, Kl, **self._hp)
        r = 2.0 * (g - 1.0 + self.slopes[:, None] * h) / h**2
        r1 = 2 * r[:, 1:] - r[:, :-1]          # removes O(h)
        return (4 * r1[:, 1] - r1[:, 0]) / 3    # removes O(h²)

    def c_map(self, c0) -> np.ndarray:
        """C_f(c0): the correlation after ``depth`` blocks."""
        c = np.asarray(c0, dtype=float)
        for Kl in self.K[:-1]:
            c = np.clip(self.theory.c_map(c, Kl, **self._hp), -1.0, 1.0)
        return c

    def c_trajectory(self, c0) -> np.ndarray:
        """c^l, l = 0..depth."""
        out = [np.asarray(c0, dtype=float)]
        for Kl in self.K[:-1]:
            out.append(np.clip(self.theory.c_map(out[-1], Kl, **self._hp), -1.0, 1.0))
        return np.stack(out)

    def invariant(self, key: str) -> float:
        """One of :meth:`invariants`, computing only what it needs."""
        if key == "C_f'(1)":
            return float(np.prod(self.slopes))
        if key == "C_f(0)":
            return float(self.c_map(0.0))
        return self.invariants()[key]

    def invariants(self) -> dict[str, float]:
        """C_f'(1), C_f''(1), C_f(0), and J^{0,L}, K^L."""
        f1, f2 = 1.0, 0.0
        for s, g2 in zip(self.slopes, self.curvatures, strict=False):
            f1, f2 = s * f1, g2 * f1 * f1 + s * f2
        return {"C_f'(1)": float(f1), "C_f''(1)": float(f2), "C_f(0)": float(self.c_map(0.0)),
                "J": float(self.apjn[-1]), "K_L": float(self.K[-1])}


def network_maps(arch: Op, depth: int, K0: float = 1.0, act: Act | None = None) -> NetworkMaps:
    """:class:`NetworkMaps` of ``arch`` (with every Act replaced by ``act`` if given)."""
    arch = as_op(arch)
    if act is not None:
        if count_activations(arch) == 0:
            raise ArchitectureError(f"the architecture {arch!r} has no Act to shape")
        arch = with_activation(arch, act)
    return NetworkMaps(arch, int(depth), float(K0))


def compare(shaped, archs: dict, depth: int | None = None, c0=0.0, K0: float = 1.0) -> dict:
    """Side-by-side network maps of one shaped activation in several architectures.

    ``archs``: name -> block (None: dks's plain chain).  Returns name -> {``block``, ``K``
    (K^l), ``J`` (J^{0,L}), ``apjn`` (J^{0,l}), ``c`` (C_f(c0)), ``C_f'(1)``, ``C_f(0)``}.
    """
    depth = int(depth or shaped.depth)
    out = {}
    for name, arch in archs.items():
        block = plain_block(shaped.act) if arch is None else with_activation(arch, shaped.act)
        nm = NetworkMaps(block, depth, float(K0))
        out[name] = {"block": block, "K": nm.K, "apjn": nm.apjn, "J": float(nm.apjn[-1]),
                     "c": nm.c_map(c0), "C_f'(1)": float(np.prod(nm.slopes)),
                     "C_f(0)": float(nm.c_map(0.0))}
    return out
