r"""Registries built from the operator contract (:mod:`critsym.ops.base`).

* :func:`torch_claims` — torch module type → the operator class that claims it on import
  (from each class's own ``torch_types``), looked up along the module type's MRO;
* :func:`graph_claims` — torch function / tensor method (by name) → the operator class that
  claims it in a captured graph (from each class's own ``graph_targets``);
* :func:`torch_probes` — operator classes that recognise torch patterns by evaluation;
* :func:`builtin_block` / :func:`builtin_blocks` — the block constructors (``mlp_block``,
  ``resnet_block`` …) with one example each, for the contract tests;
* :class:`Example` — one repeating block with hyperparameter values, what an operator's
  ``examples()`` returns.

Every consumer (importer, exporter, contract tests) iterates these; none lists operator types.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import Op, operators


@dataclass(frozen=True)
class Band:
    """A measured gap between theory and Monte Carlo: a characterisation, not an agreement.

    The simulation's ``quantity`` (``"K"``, ``"J"`` or ``"O_T"``) at ``layer`` (networks of
    ``layer`` blocks), extrapolated linearly in 1/N over ``widths`` (every axis of the feature
    shape set to N), divided by the theory's value: ``ratio`` ± ``se``, measured on
    ``n_nets`` networks of seeds the tests do not use.  ``note`` says what the theory leaves
    out.  The contract tests check that a fresh measurement agrees with the band, so a change of
    the theory or the simulation in either direction shows.
    """

    quantity: str
    layer: int
    ratio: float
    se: float
    widths: tuple[int, ...]
    n_nets: int
    note: str = ""


@dataclass(frozen=True)
class Example:
    """A repeating block exercising an operator, for the contract tests.

    ``block``: the architecture; ``hp``: numeric values of its hyperparameters; ``shape``: the
    per-example feature shape for the torch build (None: ``(width,)``); ``theory``: the block
    derives (False for operators that change the shape, e.g. pooling); ``monte_carlo``: run the
    theory-vs-simulation check (1/N-extrapolated, |z| <= 4); ``mc_depth``: the number of blocks
    of that check on feature maps (where a known approximation of the theory becomes
    measurable deeper, the check stops before it and ``band`` records the measured gap);
    ``slow``: that check is expensive (runs under ``-m slow``); ``width``: the width of the
    torch build checks.
    """

    block: Op
    hp: dict = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    theory: bool = True
    monte_carlo: bool = True
    slow: bool = False
    width: int = 8
    name: str = ""
    mc_depth: int = 4
    band: Band | None = None

    def label(self) -> str:
        return self.name or repr(self.block)[:60]


#: packages whose module types are resolved by importing them; a type of any other package
#: (e.g. ``transformers``) is resolved only once that package is loaded — a model of its types
#: cannot exist before — so that reading the claims never imports a heavy library
_IMPORTED_FOR_CLAIMS = ("torch", "critsym")


def _resolve(dotted: str):
    mod, _, attr = dotted.rpartition(".")
    if dotted.split(".", 1)[0] not in _IMPORTED_FOR_CLAIMS and mod not in sys.modules:
        return None
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError):  # a type this torch version lacks (e.g. nn.RMSNorm)
        return None


_CLAIMS: dict[tuple, dict[type, type[Op]]] = {}


def torch_claims() -> dict[type, type[Op]]:
    """torch module type → operator class, from every registered class's own
    ``torch_types`` (a class claims only what it declares itself, not what it inherits)."""
    ops = operators()
    for m in READER_MODULES:
        importlib.import_module(m)
    names = [d for c in ops.values() for d in c.__dict__.get("torch_types", ())]
    loaded = tuple(sorted({d.rpartition(".")[0] for d in [*names, *_READERS]
                           if d.rpartition(".")[0] in sys.modules}))
    key = (hash(tuple(id(c) for c in ops.values())), loaded)
    if key not in _CLAIMS:
        table: dict[type, type[Op]] = {}
        for cls in ops.values():
            for dotted in cls.__dict__.get("torch_types", ()):
                t = _resolve(dotted)
                if t is not None:
                    table[t] = cls
        for t, claim in _reader_claims().items():
            table.setdefault(t, claim)  # type: ignore[arg-type]
        _CLAIMS.clear()
        _CLAIMS[key] = table
    return _CLAIMS[key]


_GRAPH: dict[int, dict[object, type[Op]]] = {}


def resolve_target(dotted: str):
    """The object named by a dotted name (``"torch.nn.functional.relu"``,
    ``"torch.ops.aten.relu.default"``); a method name ``"Tensor.relu"`` is kept as the string;
    ``None`` when this torch version lacks it."""
    if dotted.startswith("Tensor."):
        return dotted
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except (AttributeError, RuntimeError):
            return None
        return obj
    return None


def graph_claims() -> dict[object, type[Op]]:
    """torch function object (or ``"Tensor.<method>"``) → operator class, from every
    registered class's own ``graph_targets``."""
    ops = operators()
    key = hash(tuple(id(c) for c in ops.values()))
    if key not in _GRAPH:
        table: dict[object, type[Op]] = {}
        for cls in ops.values():
            for dotted in cls.__dict__.get("graph_targets", ()):
                t = resolve_target(dotted)
                if t is not None:
                    table[t] = cls
        _GRAPH.clear()
        _GRAPH[key] = table
    return _GRAPH[key]


#: modules holding :func:`import_reader` registrations, loaded on the first claims lookup
READER_MODULES = ("critsym.interop.hf", "critsym.interop.tv")
_READERS: dict[str, Callable] = {}


@dataclass(frozen=True)
class ReaderClaim:
    """A claim made by an import reader function rather than by one operator class (a module
    type that maps to a composition of operators, e.g. a transformer layer → residual sums of
    its parts): ``read_torch(module, reader, path)`` as an operator class's."""

    read_torch: Callable
    name: str = "reader"

    @property
    def __name__(self) -> str:  # messages name a claimant by its __name__, as for classes
        return self.name


def import_reader(*dotted: str):
    """Register ``fn(module, reader, path) -> Op | None`` as the import of the module types
    ``dotted`` (names as in ``Op.torch_types``)."""

    def deco(fn):
        for d in dotted:
            _READERS[d] = fn
        return fn

    return deco


def _reader_claims() -> dict[type, ReaderClaim]:
    for m in READER_MODULES:
        importlib.import_module(m)
    out = {}
    for d, fn in _READERS.items():
        t = _resolve(d)
        if t is not None:
            out[t] = ReaderClaim(fn, fn.__name__)
    return out


def claimant(module) -> type[Op] | ReaderClaim | None:
    """The operator class claiming ``type(module)`` (or its nearest base class), or the
    :class:`ReaderClaim` of an :func:`import_reader`."""
    table = torch_claims()
    for t in type(module).__mro__:
        if t in table:
            return table[t]
    return None


def probe_leaf(module):
    """``(x, module(x))`` for a probe tensor x of shape (2, 3, 5) when ``module`` is a
    parameter-free leaf that accepts it and returns a tensor; ``None`` otherwise (any failure
    means "not this pattern").  Import patterns recognised by evaluation (identity, transpose)
    test the pair."""
    import torch

    if list(module.parameters(recurse=False)) or list(module.children()):
        return None
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    try:
        with torch.no_grad():
            y = module(x)
    except Exception:  # noqa: BLE001 - any failure means "not this pattern"
        return None
    return (x, y) if isinstance(y, torch.Tensor) else None


def torch_probes() -> list[type[Op]]:
    """Operator classes that define their own ``probe_torch`` (registration order)."""
    return [cls for cls in operators().values() if "probe_torch" in cls.__dict__]


_BLOCKS: dict[str, tuple[Callable[..., Op], Example]] = {}


def builtin_block(hp: dict, shape: tuple[int, ...] | None = None, *, monte_carlo: bool = True,
                  slow: bool = False, width: int = 8, mc_depth: int = 4,
                  band: Band | None = None, **kw):
    """Register a block constructor with one example (called without arguments, or with
    ``kw``) for the contract tests."""

    def deco(fn):
        _BLOCKS[fn.__name__] = (fn, dict(hp=hp, shape=shape, monte_carlo=monte_carlo,
                                         slow=slow, width=width, mc_depth=mc_depth, band=band,
                                         kw=kw))
        return fn

    return deco


def block_constructor(name: str) -> Callable[..., Op]:
    """The registered block constructor ``name`` (e.g. ``"mlp_block"``): operators' examples
    read block constructors here rather than importing the modules that define them, which
    import the operators (no import cycle)."""
    return _BLOCKS[name][0]


def builtin_blocks() -> dict[str, Example]:
    """The registered block constructors' examples, by constructor name."""
    out = {}
    for name, (fn, spec) in _BLOCKS.items():
        out[name] = Example(fn(**spec["kw"]), spec["hp"], spec["shape"],
                            monte_carlo=spec["monte_carlo"], slow=spec["slow"],
                            width=spec["width"], name=name, mc_depth=spec["mc_depth"],
                            band=spec["band"])
    return out


def contains(arch: Op, predicate: Callable[[Op], bool]) -> bool:
    """True when ``predicate`` holds for ``arch`` or any operator inside it."""
    return predicate(arch) or any(contains(c, predicate) for c in arch.children())


def approximate(reader, path: str, what: str) -> None:
    """Record in ``reader.approximations`` (``ImportResult.approximations``) that the import of
    submodule ``path`` approximates ``what``; readers without that record are left alone."""
    notes = getattr(reader, "approximations", None)
    if notes is None:
        return
    label = reader.label(path)
    notes[label] = f"{notes[label]}; {what}" if label in notes else what
