"""The architecture language: immutable operators, composition, and (de)serialization.

Every operator is a frozen dataclass holding its hyperparameters and implementing

* ``apply(signal)``: its variance and Jacobian rule, as a step of the derivation fold
  (:mod:`critsym.fold`);
* ``to_torch(width, values, ...)``: its forward map as a real ``torch.nn.Module``
  (:mod:`critsym.torch`).

Operators compose with ``>>`` into :class:`Sequential`; architectures are data: printable,
comparable, hashable, and round-trip through plain dicts / JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import sympy as sp

from ..errors import ArchitectureError
from ..symbols import RESERVED, hyper_symbol

_REGISTRY: dict[str, type[Op]] = {}


class Op:
    """Base class of all layer operators."""

    #: dataclass fields holding hyperparameters (sympy expressions)
    hyper_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    # composition -------------------------------------------------------------
    def __rshift__(self, other: Op) -> Sequential:
        if not isinstance(other, Op):
            raise ArchitectureError(
                f"cannot compose {self!r} with {other!r}: it is not a critsym operator"
            )
        return Sequential(self, other)

    def __rrshift__(self, other):
        raise ArchitectureError(
            f"cannot compose {other!r} with {self!r}: it is not a critsym operator"
        )

    # fold ---------------------------------------------------------------------
    def apply(self, s):  # pragma: no cover - abstract
        raise NotImplementedError

    def children(self) -> tuple[Op, ...]:
        return ()

    # torch --------------------------------------------------------------------
    def to_torch(self, ctx, shape: tuple[int, ...]):
        """Build this operator's forward map for ``ctx.n_nets`` independent networks.

        ``ctx`` is a :class:`critsym.torch.modules.BuildContext` (numeric hyperparameters,
        generators, dtype, device); ``shape`` is the per-example feature shape of the input.
        Returns ``(module, out_shape)``; the module maps ``(n_nets, *batch, *shape)`` to
        ``(n_nets, *batch, *out_shape)``.  Initialization must be the one the operator's
        variance rule assumes.
        """
        from ..errors import SimulationError

        raise SimulationError(
            f"operator {type(self).__name__} has no torch forward map; implement "
            f"{type(self).__name__}.to_torch(ctx, shape) to simulate it"
        )

    def hyperparameters(self) -> set[sp.Symbol]:
        """The free hyperparameter symbols of this operator and its children."""
        out: set[sp.Symbol] = set()
        for name in self.hyper_fields:
            out |= getattr(self, name).free_symbols
        for c in self.children():
            out |= c.hyperparameters()
        return out

    def subs(self, values: dict) -> Op:
        """The same architecture with some hyperparameters replaced (by numbers or expressions)."""
        from dataclasses import replace

        sym = {(hyper_symbol(k) if isinstance(k, str) else k): v for k, v in values.items()}
        changes: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name in self.hyper_fields:
                changes[f.name] = sp.sympify(v).subs(sym)
            elif isinstance(v, Op):
                changes[f.name] = v.subs(values)
            elif isinstance(v, tuple) and v and all(isinstance(o, Op) for o in v):
                changes[f.name] = tuple(o.subs(values) for o in v)
        return replace(self, **changes)  # type: ignore[type-var]

    # serialization ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": type(self).__name__}
        for f in fields(self):  # type: ignore[arg-type]
            d[f.name] = _encode(getattr(self, f.name))
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


def _encode(v: Any) -> Any:
    if isinstance(v, Op):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_encode(x) for x in v]
    if isinstance(v, sp.Basic):
        if v.is_Integer:
            return int(v)
        if v.is_number and v.is_real:
            return float(v)
        return str(v)
    return v


def _decode_hyper(v: Any) -> sp.Expr:
    if isinstance(v, str):
        expr = sp.sympify(v, locals={s: sp.Symbol(s) for s in ["E", "I", "S", "N", "O", "Q"]})
        names = {s.name for s in expr.free_symbols}
        bad = names & RESERVED
        if bad:
            raise ArchitectureError(f"hyperparameter expression {v!r} uses reserved names {bad}")
        return expr.subs({sp.Symbol(n): hyper_symbol(n) for n in names})
    return sp.sympify(v)


def from_dict(d: dict[str, Any]) -> Op:
    """Rebuild an architecture from :meth:`Op.to_dict` output."""
    if not isinstance(d, dict) or "op" not in d:
        raise ArchitectureError(f"not an operator description (a dict with key 'op'): {d!r}")
    name = d["op"]
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ArchitectureError(f"unknown operator {name!r}; known: {sorted(_REGISTRY)}")
    kw: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name in cls.hyper_fields:
            kw[f.name] = _decode_hyper(v)
        elif isinstance(v, dict) and "op" in v:
            kw[f.name] = from_dict(v)
        elif isinstance(v, list) and all(isinstance(x, dict) and "op" in x for x in v):
            kw[f.name] = tuple(from_dict(x) for x in v)
        elif isinstance(v, list):
            kw[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        else:
            kw[f.name] = v
    if cls is Sequential:
        return Sequential(*kw["ops"])
    return cls(**kw)


def from_json(text: str) -> Op:
    """Rebuild an architecture from :meth:`Op.to_json` output."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArchitectureError(f"invalid architecture JSON: {e}") from None
    return from_dict(d)


@dataclass(frozen=True, init=False, repr=False)
class Sequential(Op):
    """Composition op_1 >> op_2 >> ... (applied left to right)."""

    ops: tuple[Op, ...]

    def __init__(self, *ops: Op):
        flat: list[Op] = []
        for o in ops:
            if isinstance(o, Sequential):
                flat.extend(o.ops)
            elif isinstance(o, Op):
                flat.append(o)
            else:
                raise ArchitectureError(
                    f"Sequential takes critsym operators, got {o!r} ({type(o).__name__}); "
                    "build layers with Linear(), Act(...), LayerNorm(), Residual(...)"
                )
        if not flat:
            raise ArchitectureError("Sequential() needs at least one operator")
        object.__setattr__(self, "ops", tuple(flat))

    def __rshift__(self, other: Op) -> Sequential:
        if not isinstance(other, Op):
            raise ArchitectureError(
                f"cannot compose {self!r} with {other!r}: it is not a critsym operator"
            )
        return Sequential(*self.ops, other)

    def __repr__(self) -> str:
        return " >> ".join(repr(o) for o in self.ops)

    def children(self) -> tuple[Op, ...]:
        return self.ops

    def apply(self, s):
        for o in self.ops:
            s = o.apply(s)
        return s

    def subs(self, values: dict) -> Op:
        return Sequential(*(o.subs(values) for o in self.ops))

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """The operators' forward maps chained left to right."""
        from ..torch.modules import Chain

        mods = []
        for o in self.ops:
            m, shape = o.to_torch(ctx, shape)
            mods.append(m)
        return Chain(*mods), shape


def as_op(obj: Any, what: str = "architecture") -> Op:
    """Check that ``obj`` is an operator (raise a clear :class:`ArchitectureError` otherwise)."""
    if isinstance(obj, Op):
        return obj
    if isinstance(obj, dict):
        return from_dict(obj)
    raise ArchitectureError(
        f"{what} must be a critsym operator (e.g. Act('tanh') >> Linear()), got {obj!r}"
    )
