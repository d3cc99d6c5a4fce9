"""The architecture language: immutable operators, composition, and (de)serialization.

The operator contract.  Every operator is a frozen dataclass holding its hyperparameters; its
module holds, side by side, everything the rest of critsym needs to know about it:

* ``apply(signal)``: its variance and Jacobian rule, a step of the derivation fold
  (:mod:`critsym.fold`);
* ``to_torch(ctx, shape)``: its forward map for ``ctx.n_nets`` stacked networks
  (:mod:`critsym.torch.build`; simulation, validation and kernel shaping all build through it);
* ``export(ctx, fan)``: a plain ``torch.nn`` module (:func:`critsym.to_torch_model`);
* ``torch_types`` and ``read_torch(module, reader, path)``: the torch module types it claims
  on import and how it reads its hyperparameters from their weights; ``graph_targets`` and
  ``read_graph(call, reader, path)``: the torch functions and tensor methods it claims in a
  captured graph (``torch.fx`` / ``torch.export``, :mod:`critsym.interop.capture`), and
  ``probe_torch`` for opaque leaf modules recognised by evaluation (:func:`critsym.from_torch`);
* ``symbolic()``: the operator with estimated weight scales replaced by the symbols σ_w, σ_b;
* ``latex_name``; ``examples()``: instances the contract tests (tests/contract) run.

Defining the class registers it (``Op.__init_subclass__``): JSON, import, export and the
contract tests read the registry, so a new operator is one new module.  Operators compose with
``>>`` into :class:`Sequential`; architectures are data: printable, comparable, hashable, and
round-trip through plain dicts / JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import sympy as sp

from ..errors import ArchitectureError, SimulationError, UnsupportedModuleError
from ..symbols import RESERVED, hyper_symbol

_REGISTRY: dict[str, type[Op]] = {}


def operators() -> dict[str, type[Op]]:
    """Every registered operator class, by name (a copy of the registry)."""
    return dict(_REGISTRY)


class Op:
    """Base class of all layer operators (see the module docstring for the contract)."""

    #: dataclass fields holding hyperparameters (sympy expressions)
    hyper_fields: ClassVar[tuple[str, ...]] = ()
    #: the operator's name in LaTeX
    latex_name: ClassVar[str] = ""
    #: torch module types this operator claims on import, as dotted names
    #: (``"torch.nn.Linear"``); :meth:`read_torch` turns such a module into the operator
    torch_types: ClassVar[tuple[str, ...]] = ()
    #: torch functions and tensor methods this operator claims in a captured graph, as names:
    #: ``"torch.nn.functional.relu"``, ``"torch.relu"``, ``"Tensor.relu"`` (a method),
    #: ``"torch.ops.aten.relu.default"`` (a torch.export node); :meth:`read_graph` turns such a
    #: call into the operator
    graph_targets: ClassVar[tuple[str, ...]] = ()
    #: exported as a channels-first torch module (a convolution): norms next to it export as
    #: channels-first norms
    channels_first: ClassVar[bool] = False
    #: the field holding a variable number of children passed positionally to the
    #: constructor (``Sequential(*ops)``, ``Parallel(*branches)``)
    positional_children: ClassVar[str | None] = None

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
        raise SimulationError(
            f"operator {type(self).__name__} has no torch forward map; implement "
            f"{type(self).__name__}.to_torch(ctx, shape) to simulate it"
        )

    def export(self, ctx, fan: int):
        """A plain ``torch.nn`` module computing this operator, and its output feature count.

        ``ctx`` is a :class:`critsym.torch.modules.ExportContext` (numeric hyperparameters, one
        generator, dtype, ``width``); ``fan`` is the number of input features (channels).
        """
        raise SimulationError(
            f"operator {type(self).__name__} has no plain torch module; implement "
            f"{type(self).__name__}.export(ctx, fan) to export it"
        )

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op | None:
        """The operator for a torch ``module`` of one of :attr:`torch_types` (``None``: the
        module is skipped, e.g. an identity).  ``reader`` (:class:`critsym.importer.Reader`)
        records weight estimates (``reader.weights``) and maps children (``reader.map``);
        ``path`` names the module in error messages."""
        raise UnsupportedModuleError(
            f"{cls.__name__} claims {type(module).__name__} but does not read it")

    @classmethod
    def read_graph(cls, call, reader, path: str) -> Op | None:
        """The operator for one call of a function of :attr:`graph_targets` in a captured graph
        (``None``: the call is the identity).  ``call`` (:class:`critsym.interop.capture.GraphCall`)
        holds the call's name, its arguments (the traced tensor input as ``call.x``, parameters
        as tensors, other arguments as values) and the input / output shapes where known;
        ``reader`` records weight estimates; ``path`` names the module whose ``forward`` makes
        the call.  Raise :class:`UnsupportedModuleError` for settings without a theory."""
        raise UnsupportedModuleError(
            f"{cls.__name__} claims {call.name} but does not read it")

    @classmethod
    def probe_torch(cls, module, reader, path: str) -> Op | None:
        """A torch pattern this operator recognises by evaluating ``module`` (e.g. a
        residual sum, a transpose); ``None`` when it does not match.  Runs only for modules no
        operator claims by type."""
        return None

    def latex(self) -> str:
        """The architecture in LaTeX, from the operators' ``latex_name``."""
        return self.latex_name or rf"\mathrm{{{type(self).__name__}}}"

    def symbolic(self) -> Op:
        """The same operator with weight scales read from a model (numbers) replaced by the
        symbols σ_w, σ_b; children are mapped recursively."""
        return self.map_children(lambda o: o.symbolic())

    def map_children(self, f) -> Op:
        """The same operator with ``f`` applied to every child operator."""

        changes: dict[str, Any] = {}
        for fl in fields(self):  # type: ignore[arg-type]
            v = getattr(self, fl.name)
            if isinstance(v, Op):
                changes[fl.name] = f(v)
            elif isinstance(v, tuple) and v and all(isinstance(o, Op) for o in v):
                changes[fl.name] = tuple(f(o) for o in v)
        if not changes:
            return self
        new = object.__new__(type(self))
        for fl in fields(self):  # type: ignore[arg-type]
            object.__setattr__(new, fl.name, changes.get(fl.name, getattr(self, fl.name)))
        return new

    @classmethod
    def examples(cls) -> tuple:
        """:class:`critsym.ops.contract.Example` instances the contract tests run (one
        repeating block that contains this operator, with hyperparameter values)."""
        return ()

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
        if self.positional_children:
            return type(self)(*changes[self.positional_children])
        return replace(self, **changes)  # type: ignore[type-var]

    # serialization ------------------------------------------------------------
    @classmethod
    def serial_fields(cls) -> tuple[str, ...]:
        """The dataclass fields written by :meth:`to_dict` and passed back to the constructor
        by :func:`from_dict` (default: all)."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": type(self).__name__}
        for name in self.serial_fields():
            d[name] = _encode(getattr(self, name))
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
    for fname in cls.serial_fields():
        if fname not in d:
            continue
        v = d[fname]
        if fname in cls.hyper_fields:
            kw[fname] = _decode_hyper(v)
        elif isinstance(v, dict) and "op" in v:
            kw[fname] = from_dict(v)
        elif isinstance(v, list) and v and all(isinstance(x, dict) and "op" in x for x in v):
            kw[fname] = tuple(from_dict(x) for x in v)
        elif isinstance(v, list):
            kw[fname] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        else:
            kw[fname] = v
    unknown = set(d) - {"op"} - set(cls.serial_fields())
    if unknown:
        raise ArchitectureError(f"operator {name!r} has no fields {sorted(unknown)}; it has "
                                f"{list(cls.serial_fields())}")
    try:
        if cls.positional_children:
            return cls(*kw.get(cls.positional_children, ()))
        return cls(**kw)
    except TypeError as e:
        raise ArchitectureError(f"cannot rebuild operator {name!r} from {d!r}: {e}") from None


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
    positional_children = "ops"

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

    def map_children(self, f) -> Op:
        return Sequential(*(f(o) for o in self.ops))

    def latex(self) -> str:
        return r" \to ".join(o.latex() for o in self.ops)

    torch_types = ("torch.nn.Sequential",)

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op | None:
        return reader.seq([reader.map(c, reader.join(path, n))
                           for n, c in module.named_children()])

    def export(self, ctx, fan: int):
        """nn.Sequential of the operators' plain modules."""
        from torch import nn

        mods = []
        for o in self.ops:
            m, fan = o.export(ctx, fan)
            mods.append(m)
        return nn.Sequential(*mods), fan

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
