r"""Graph capture: a torch model's ``forward`` as a chain of critsym operators.

The model is traced with ``torch.fx`` symbolic tracing (:class:`Tracer`).  Modules an operator
claims by type (``Op.torch_types``) stay whole (a ``call_module`` node the operator reads with
``read_torch``); every other module is traced through, so residual sums, transposes and
reshapes written inside ``forward`` appear as graph nodes.  A submodule fx cannot trace (Python
control flow on a traced value, …) becomes one node, and is captured on its own with
``torch.export`` from the inputs it received in this very call (the example input run through
the traced graph); :attr:`Captured.methods` says which tool captured which module.

The walk (:func:`walk`) reads the graph node by node into *chains*: a chain is the sequence of
:class:`Element` s applied to the model's input.  Each call is read by

* the operator claiming the module type (``call_module``) or the function / tensor method
  (``Op.graph_targets`` → ``Op.read_graph``, :func:`critsym.ops.contract.graph_claims`);
* the structural rules of this module: ``a + b`` of two chains from one input is
  ``Residual(branch, μ)`` when one side is the common prefix (scaled by a number μ, else μ = 1)
  and ``Parallel`` otherwise; ``x * c`` by a number (or a learned tensor with one value) is a
  scale absorbed by the sum; reshapes that keep the batch and the last axis, ``contiguous``,
  dtype casts and dropout are the identity;
* anything else becomes an element that is not analysable, with the reason (the part is then
  reported as skipped, or refused when it sits inside the analysed body).
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..errors import SimulationError, UnsupportedModuleError
from ..ops.base import Op, Sequential
from ..ops.contract import claimant, graph_claims, resolve_target

#: a traced tensor in the arguments of a :class:`GraphCall`
TRACED = object()


@dataclass(frozen=True)
class GraphCall:
    """One function or method call of a captured graph, as an operator's ``read_graph`` sees
    it: ``name`` (the claimed name, e.g. ``"torch.nn.functional.gelu"``), ``args`` / ``kwargs``
    (the traced tensor is :data:`TRACED`, parameters are tensors, the rest plain values) and
    the traced tensor's ``in_shape`` / the result's ``out_shape`` (None: unknown, no example
    input)."""

    name: str
    args: tuple
    kwargs: dict
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None

    def argument(self, pos: int, word: str, default: Any = None) -> Any:
        """The argument at position ``pos`` or keyword ``word`` (``default`` if absent; None
        for the traced tensor)."""
        v = self.kwargs[word] if word in self.kwargs else (
            self.args[pos] if pos < len(self.args) else default)
        return None if v is TRACED else v

    def parameter(self, pos: int, word: str) -> torch.Tensor | None:
        v = self.argument(pos, word)
        return v if isinstance(v, torch.Tensor) else None

    @property
    def rank(self) -> int | None:
        return None if self.in_shape is None else len(self.in_shape)


@dataclass(frozen=True, eq=False)
class Element:
    """One step of a chain: ``op`` (None: not analysable, ``reason`` says why), the module
    whose forward holds it (``path``, '' for the model), the graph nodes it spans (``inp`` the
    node whose value enters, ``out`` the one that leaves), the weight records it made
    (indices into ``Reader.layers``), ``module``: the submodule whose call returns ``out``
    (hook point for :func:`critsym.apjn`; None when no module returns it) and ``scale`` for a
    multiplication by a number (``kind == "scale"``)."""

    op: Op | None
    path: str
    inp: str
    out: str
    layers: tuple[int, ...] = ()
    reason: str = ""
    module: str | None = None
    kind: str = "op"
    scale: float = 1.0

    @property
    def ok(self) -> bool:
        return self.op is not None

    def __repr__(self) -> str:
        what = repr(self.op) if self.ok else f"<not analysable: {self.reason[:50]}>"
        return f"{self.path or '<model>'}: {what}"


@dataclass(frozen=True)
class Chain:
    """Elements applied, in order, to the input placeholder ``base``."""

    base: str
    items: tuple[Element, ...] = ()

    @property
    def end(self) -> str:
        return self.items[-1].out if self.items else self.base

    def then(self, e: Element) -> Chain:
        return Chain(self.base, (*self.items, e))


@dataclass(frozen=True)
class _Param:
    tensor: torch.Tensor


@dataclass(frozen=True)
class _Value:
    value: Any


@dataclass
class Captured:
    """A captured graph: ``gm`` (a GraphModule), ``values`` (node name → value on the
    example input; empty without one), ``methods`` (module path → "fx" or "torch.export"),
    ``failed`` (module path → why fx could not trace it)."""

    gm: fx.GraphModule
    values: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    root: nn.Module | None = None
    #: the graph inlines every module (torch.export): modules read whole are regions of it
    inlined: bool = False
    #: the keys / indices leading to the analysed output in a tuple / dict output (empty: a
    #: tensor output)
    output_path: tuple[str, ...] = ()


def whole(m: nn.Module) -> bool:
    """A module read whole, never traced through: claimed by an operator's type (containers
    excepted), a critsym stacked map, or a torch.nn module with weights of its own that no
    operator claims (e.g. ``nn.MultiheadAttention`` before an operator claims it: reported,
    not traced into torch's internals)."""
    from ..torch.modules import OpModule

    if isinstance(m, OpModule):
        return True
    if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    if claimant(m) is not None:
        return True
    return opaque_torch(m)


def opaque_torch(m: nn.Module) -> bool:
    """An unclaimed ``torch.nn`` module with parameters of its own."""
    return (type(m).__module__.startswith("torch.nn") and claimant(m) is None
            and any(True for _ in m.parameters(recurse=False)))


class Tracer(fx.Tracer):
    """``torch.fx`` tracer whose leaves are the modules operators claim by type (read whole by
    ``read_torch``) and parameterised leaf modules; every other module is traced through.  A
    module whose ``forward`` fx cannot trace becomes a leaf node (recorded in ``failed``)."""

    def __init__(self):
        super().__init__()
        self.failed: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.failed or whole(m):
            return True
        if any(True for _ in m.children()):
            return False
        return any(True for _ in m.parameters(recurse=False))

    def call_module(self, m, forward, args, kwargs):
        qual = self.path_of_module(m)
        if self.is_leaf_module(m, qual):
            return super().call_module(m, forward, args, kwargs)
        stack = self.module_stack.copy()
        calls = dict(self.num_calls)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:  # noqa: BLE001 - fx cannot trace this module: capture it whole
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.num_calls = calls
            self.failed[qual] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            return super().call_module(m, forward, args, kwargs)


def _record_values(gm: fx.GraphModule, args: tuple) -> dict[str, Any]:
    """Every node's value on ``args`` (the model's buffers are restored afterwards, so
    BatchNorm running statistics do not move)."""
    values: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n.name] = out.detach() if isinstance(out, torch.Tensor) else out
            return out

    saved = {k: b.detach().clone() for k, b in gm.named_buffers()}
    try:
        with torch.no_grad():
            Recorder(gm).run(*args)
    finally:
        with torch.no_grad():
            for k, b in gm.named_buffers():
                if k in saved:
                    b.copy_(saved[k])
    return values


def capture(module: nn.Module, args: tuple | None, path: str = "") -> Captured:
    """Trace ``module`` with torch.fx (torch.export of the whole module when fx fails at its
    own ``forward`` and ``args`` are given); with ``args`` also record every node's value."""
    tracer = Tracer()
    try:
        graph = tracer.trace(module)
        gm = fx.GraphModule(module, graph)
        methods = {path: "torch.fx"}
        methods.update({_join(path, q): "torch.export (fx: " + why + ")"
                        for q, why in tracer.failed.items()})
    except Exception as e:  # noqa: BLE001 - fx cannot trace the module's own forward
        fx_error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        if args is None:
            raise UnsupportedModuleError(
                f"torch.fx cannot trace {_label(path)!r} ({type(module).__name__}: "
                f"{fx_error}); pass example_input=... so critsym can capture it with "
                "torch.export") from None
        gm = _export(module, args, path, fx_error)
        return Captured(gm, _record_values(gm, args), {path: "torch.export"}, {}, module,
                        inlined=True)
    values = {}
    if args is not None:
        try:
            values = _record_values(gm, args)
        except Exception as e:  # noqa: BLE001 - report as a shape problem
            raise SimulationError(
                f"{_label(path)!r} does not accept the example input "
                f"{[tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]}: "
                f"{type(e).__name__}: {e}") from None
    return Captured(gm, values, methods, dict(tracer.failed), module)


def _export(module: nn.Module, args: tuple, path: str, fx_error: str) -> fx.GraphModule:
    try:
        ep = torch.export.export(module, tuple(args), strict=False)
        return ep.module()
    except Exception as e:  # noqa: BLE001 - neither tool captures it
        raise UnsupportedModuleError(
            f"neither torch.fx ({fx_error}) nor torch.export ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}) can capture submodule {_label(path)!r} "
            f"({type(module).__name__}); register an operator claiming its type "
            "(Op.torch_types / read_torch), or write its forward without data-dependent "
            "control flow") from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path and name else (path or name)


def _label(path: str) -> str:
    return path or "<model>"


# ---------------------------------------------------------------------------- the walk
_ADD = {operator.add, operator.iadd, torch.add, "Tensor.add", "Tensor.add_", "Tensor.__add__",
        torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}
_MUL = {operator.mul, operator.imul, torch.mul, "Tensor.mul", "Tensor.mul_",
        torch.ops.aten.mul.Tensor}
_DIV = {operator.truediv, torch.div, "Tensor.div", "Tensor.div_", torch.ops.aten.div.Tensor}
_IDENTITY = {"Tensor.contiguous", "Tensor.clone", torch.clone, "Tensor.float", "Tensor.double",
             "Tensor.to", "Tensor.type_as", torch.nn.functional.dropout, torch.dropout,
             torch.ops.aten.clone.default, torch.ops.aten.dropout.default,
             torch.ops.aten.alias.default, torch.ops.aten.contiguous.default,
             torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype}
_RESHAPE = {"Tensor.view", "Tensor.reshape", torch.reshape, torch.flatten, "Tensor.flatten",
            "Tensor.unsqueeze", "Tensor.squeeze", torch.unsqueeze, torch.squeeze,
            "Tensor.unflatten", torch.ops.aten.view.default, torch.ops.aten.reshape.default,
            torch.ops.aten.flatten.using_ints, torch.ops.aten.unsqueeze.default,
            torch.ops.aten.squeeze.dim, torch.ops.aten.unflatten.int}
_SHAPE = {"Tensor.size", "Tensor.dim", torch.ops.aten.sym_size.int}


def _target_key(n: fx.Node):
    return f"Tensor.{n.target}" if n.op == "call_method" else n.target


def _target_name(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, torch._ops.OpOverload):
        return f"torch.ops.{key}"
    mod = getattr(key, "__module__", None) or "torch"
    return f"{mod}.{getattr(key, '__name__', repr(key))}"


def _graph_name(key, cls) -> str:
    """The name under which ``cls`` claims ``key`` (its own spelling in ``graph_targets``)."""
    for dotted in cls.__dict__.get("graph_targets", ()):
        if resolve_target(dotted) is key or resolve_target(dotted) == key:
            return dotted
    return _target_name(key)


class Walker:
    """Reads a :class:`Captured` graph into chains of :class:`Element` (see the module doc)."""

    def __init__(self, cap: Captured, reader, path: str = ""):
        self.cap, self.reader, self.path = cap, reader, path
        self.gm = cap.gm
        self.env: dict[str, Any] = {}
        self.nodes = list(self.gm.graph.nodes)
        self.last_in: dict[str, str] = {}  # module path -> last node computed inside it
        calls: dict[str, set] = {}
        for n in self.nodes:
            for key, p in self._keyed_stack(n):
                self.last_in[p] = n.name
                calls.setdefault(p, set()).add(key)
        #: modules called more than once (their output is no hook point)
        self.repeated = {p for p, keys in calls.items() if len(keys) > 1}
        self.first_input: str | None = None
        #: the keys / indices leading to the analysed output in a tuple / dict output
        self.output_path: list[str] = []
        self.regions: dict[str, Chain] = {}
        #: call key of a module read whole (torch.export) -> the last node inside it (its output)
        self.region_ends: dict[str, str] = {}

    # ---------------------------------------------------------------- helpers
    def _stack(self, n: fx.Node) -> list[str]:
        st = n.meta.get("nn_module_stack") or {}
        out = []
        for v in st.values():
            p = v[0] if isinstance(v, tuple) else str(v)
            out.append(_join(self.path, p))
        if n.op == "call_module":
            out.append(_join(self.path, str(n.target)))
        return out

    def _keyed_stack(self, n: fx.Node) -> list[tuple[str, str]]:
        st = n.meta.get("nn_module_stack") or {}
        out = [(str(k), _join(self.path, v[0] if isinstance(v, tuple) else str(v)))
               for k, v in st.items()]
        if n.op == "call_module":
            p = _join(self.path, str(n.target))
            if not any(q == p for _, q in out):
                out.append((f"{n.target}#{n.name}", p))
        return out

    def region(self, n: fx.Node) -> tuple[str, str] | None:
        """(call key, path) of the outermost module read whole that node ``n`` belongs to, in
        a graph that inlines modules (torch.export); None outside such modules."""
        if n.op == "call_module" or self.cap.root is None or not self.cap.inlined:
            return None
        st = n.meta.get("nn_module_stack") or {}
        for k, v in st.items():
            rel = v[0] if isinstance(v, tuple) else str(v)
            if not rel:
                continue
            try:
                m = self.cap.root.get_submodule(rel)
            except AttributeError:
                continue
            if whole(m):
                return str(k), rel
        return None

    def in_region(self, n: fx.Node, key: str, rel: str):
        """Read a whole module's inlined nodes as one call of it: every node of the region
        stands for the module's output, which is the region's last node (the value the next
        part receives, e.g. its number of tokens)."""
        if key in self.regions:
            return self.regions[key]
        ins = [self.env[a.name] for a in n.all_input_nodes
               if isinstance(self.env.get(a.name), Chain)]
        if not ins:
            return None
        chain = ins[0]
        path = _join(self.path, rel)
        end = self.region_ends.get(key, n.name)
        mod = self.cap.root.get_submodule(rel)
        x = self.cap.values.get(chain.end)
        self.reader.note_inputs(mod, (x,) if isinstance(x, torch.Tensor) else None)
        start = len(self.reader.layers)
        try:
            op = self.reader.map(mod, path)
        except UnsupportedModuleError as e:
            out = chain.then(Element(None, path, chain.end, end, reason=str(e)))
        else:
            layers = tuple(range(start, len(self.reader.layers)))
            mod_out = None if path in self.repeated else path
            out = chain if op is None else chain.then(
                Element(op, path, chain.end, end, layers, module=mod_out))
        self.regions[key] = out
        return out

    def owner(self, n: fx.Node) -> str:
        st = self._stack(n)
        return st[-1] if st else self.path

    def value(self, n) -> Any:
        return self.cap.values.get(n.name) if isinstance(n, fx.Node) else None

    def shape(self, n) -> tuple[int, ...] | None:
        v = self.value(n)
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    def resolve(self, a):
        """An argument as a plain value (:data:`TRACED` for a traced tensor)."""
        if isinstance(a, fx.Node):
            v = self.env.get(a.name)
            if isinstance(v, Chain):
                return TRACED
            if isinstance(v, _Param):
                return v.tensor
            if isinstance(v, _Value):
                return v.value
            return self.value(a)
        if isinstance(a, (list, tuple)):
            return type(a)(self.resolve(x) for x in a)
        if isinstance(a, dict):
            return {k: self.resolve(x) for k, x in a.items()}
        return a

    def chains(self, n: fx.Node) -> list[tuple[int, Chain]]:
        """(argument position, chain) of the traced tensors among ``n``'s arguments, those
        inside a list or tuple argument included (``torch.cat([class_token, x])``)."""
        out = []
        flat = list(n.args) + list(n.kwargs.values())
        for i, a in enumerate(flat):
            # a list argument (torch.cat's tensors) counts as its elements
            for b in (a if isinstance(a, (list, tuple)) else (a,)):
                if isinstance(b, fx.Node) and isinstance(self.env.get(b.name), Chain):
                    out.append((i, self.env[b.name]))
        return out

    def module_of(self, n: fx.Node, path: str) -> str | None:
        """``path`` when node ``n`` is the last computed inside that module (its output) and
        the module is called once."""
        return path if path and self.last_in.get(path) == n.name and \
            path not in self.repeated else None

    def element(self, n, chain: Chain, op, reason="", layers=(), path=None, **kw) -> Chain:
        path = self.owner(n) if path is None else path
        mod = kw.pop("module", None)
        if mod is None and op is not None:
            mod = self.module_of(n, path)
            parts = path.split(".") if path else []
            while mod is None and len(parts) > 1:  # e.g. a shared ReLU ending a block
                parts.pop()
                mod = self.module_of(n, ".".join(parts))
        return chain.then(Element(op, path, chain.end, n.name, tuple(layers), reason, mod, **kw))

    def bad(self, n, chain: Chain, reason: str) -> Chain:
        return self.element(n, chain, None, reason)

    # ---------------------------------------------------------------- walk
    def run(self) -> Chain:
        live = self._live()
        for n in self.nodes:
            reg = self.region(n) if n.op in ("call_function", "call_method") and \
                n.name in live else None
            if reg is not None:
                self.region_ends[reg[0]] = n.name
        out_chain = None
        for n in self.nodes:
            if n.name not in live:
                continue
            reg = self.region(n) if n.op in ("call_function", "call_method") else None
            if reg is not None:
                got = self.in_region(n, *reg)
                if got is not None:
                    self.env[n.name] = got
                continue
            if n.op == "placeholder":
                v = self.value(n)
                if self.first_input is None:
                    self.first_input = n.name
                    self.env[n.name] = Chain(n.name)
                elif isinstance(v, torch.Tensor) or (v is None and not self.cap.values):
                    self.env[n.name] = Chain(n.name)
                else:
                    self.env[n.name] = _Value(v)
            elif n.op == "get_attr":
                t = _fetch(self.gm, str(n.target))
                self.env[n.name] = _Param(t) if isinstance(t, torch.Tensor) else _Value(t)
            elif n.op == "call_module":
                self.env[n.name] = self.call_module(n)
            elif n.op in ("call_function", "call_method"):
                self.env[n.name] = self.call(n)
            elif n.op == "output":
                res = n.args[0]
                while isinstance(res, (tuple, list, dict)) and res:
                    if isinstance(res, dict):
                        name = next(iter(res))
                        res = res[name]
                    else:
                        name = "0"
                        res = res[0]
                    self.output_path.append(str(name))
                got = self.env.get(res.name) if isinstance(res, fx.Node) else None
                if not isinstance(got, Chain):
                    raise UnsupportedModuleError(
                        f"{_label(self.path)!r}: its output is not a tensor computed from its "
                        "input; critsym reads models whose first output is the features")
                out_chain = got
        if out_chain is None or out_chain.base != self.first_input:
            raise UnsupportedModuleError(
                f"{_label(self.path)!r}: its output does not depend on its first input")
        return out_chain

    def _live(self) -> set[str]:
        out = [n for n in self.nodes if n.op == "output"]
        seen: set[str] = set()
        todo = list(out)
        while todo:
            n = todo.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            todo.extend(n.all_input_nodes)
        return seen

    def _is_tensor_result(self, n: fx.Node) -> bool:
        if self.cap.values:
            v = self.cap.values.get(n.name)
            return isinstance(v, torch.Tensor) or (
                isinstance(v, (tuple, list)) and bool(v) and isinstance(v[0], torch.Tensor))
        return _target_key(n) not in _SHAPE

    def call_module(self, n: fx.Node):
        ins = self.chains(n)
        if not ins:
            return _Value(self.value(n))
        if not self._is_tensor_result(n):
            return _Value(self.value(n))
        chain = ins[0][1]
        path = _join(self.path, str(n.target))
        if any(c is not chain and c.end != chain.end for _, c in ins[1:]):
            return self.bad(n, chain, f"submodule {path!r} takes several different traced "
                                      "tensors; critsym reads maps of one input")
        mod = self.gm.get_submodule(str(n.target))
        self.reader.note_inputs(mod, self._call_args(n))
        start = len(self.reader.layers)
        try:
            if str(n.target) in self.cap.failed or (
                    not whole(mod) and any(True for _ in mod.children())):
                try:
                    op = self.reader.capture_module(
                        mod, path, self._call_args(n), why=self.cap.failed.get(str(n.target)))
                except UnsupportedModuleError:
                    if any(True for _ in mod.children()):
                        raise
                    op = self.reader.map(mod, path)  # an opaque leaf: the probes
            else:
                op = self.reader.map(mod, path)
        except UnsupportedModuleError as e:
            return self.element(n, chain, None, str(e), path=path)
        layers = range(start, len(self.reader.layers))
        if op is None:
            return chain
        return self.element(n, chain, op, layers=layers, path=path,
                            module=None if path in self.repeated else path)

    def _call_args(self, n: fx.Node) -> tuple | None:
        if not self.cap.values:
            return None
        args = tuple(self.value(a) if isinstance(a, fx.Node) else a for a in n.args)
        return args if all(isinstance(a, torch.Tensor) for a in args[:1]) else None

    def call(self, n: fx.Node):
        key = _target_key(n)
        ins = self.chains(n)
        if not ins:  # shapes, constants, parameters combined
            v = self.value(n)
            if v is None:
                try:
                    v = n.target(*self.resolve(n.args), **self.resolve(n.kwargs)) \
                        if n.op == "call_function" else None
                except Exception:  # noqa: BLE001 - an unknown value
                    v = None
            if isinstance(v, torch.Tensor) and not any(
                    isinstance(self.env.get(a.name), _Value) for a in n.all_input_nodes):
                return _Param(v)
            return _Value(v)
        if key in _SHAPE or (key is getattr and n.args[1] not in ("T", "mT")):
            return _Value(self.value(n))
        if not self._is_tensor_result(n):
            return _Value(self.value(n))
        chain = ins[0][1]
        if key in _ADD:
            return self.add(n, ins)
        if len(ins) > 1 and not all(c.end == chain.end for _, c in ins):
            return self.bad(n, chain, f"{_target_name(key)} of two different signals in the "
                                      f"forward of {_label(self.owner(n))!r} (e.g. gating); "
                                      "critsym reads sums of signals only")
        if key in _MUL or key in _DIV:
            return self.scale(n, chain, key)
        if key is operator.neg or key == "Tensor.neg" or key is torch.neg:
            return self.element(n, chain, None, kind="scale", scale=-1.0)
        if key in _IDENTITY:
            return chain
        if key in _RESHAPE:
            return self.reshape(n, chain, key)
        if key is operator.getitem:
            src = n.args[0]
            if isinstance(src, fx.Node) and src.op == "call_module" and n.args[1] == 0:
                return chain
            return self.bad(n, chain, f"indexing in the forward of {_label(self.owner(n))!r} "
                                      f"(e.g. a class token); critsym reads maps of all "
                                      "features")
        if key is getattr:  # x.T / x.mT
            key = "Tensor.mT"
        if key is torch.cat or "cat" in _target_name(key).split(".")[-2:]:
            return self.bad(n, chain, f"a concatenation in the forward of "
                                      f"{_label(self.owner(n))!r} (e.g. a class token joined "
                                      "to the tokens); critsym reads maps of one signal")
        cls = graph_claims().get(key)
        if cls is None:
            return self.bad(n, chain, f"{_target_name(key)} in the forward of "
                                      f"{_label(self.owner(n))!r} has no critsym operator")
        call = GraphCall(_graph_name(key, cls), tuple(self.resolve(a) for a in n.args),
                         {k: self.resolve(v) for k, v in n.kwargs.items()},
                         self.shape(n.args[0]) if n.args else None, self.shape(n))
        start = len(self.reader.layers)
        try:
            op = cls.read_graph(call, self.reader, self.owner(n))
        except UnsupportedModuleError as e:
            return self.bad(n, chain, str(e))
        if op is None:
            return chain
        return self.element(n, chain, op, layers=range(start, len(self.reader.layers)))

    def scale(self, n, chain: Chain, key):
        other = [self.resolve(a) for a in n.args if not (
            isinstance(a, fx.Node) and isinstance(self.env.get(a.name), Chain))]
        c = other[0] if other else None
        if isinstance(c, torch.Tensor) and c.numel() > 0 and bool((c == c.flatten()[0]).all()):
            c = float(c.flatten()[0])
        if not isinstance(c, numbers.Real):
            return self.bad(n, chain, f"a product with a learned or computed tensor in the "
                                      f"forward of {_label(self.owner(n))!r}; critsym reads "
                                      "scalings by a number")
        c = float(c)
        if key in _DIV:
            if n.args[0] is not None and isinstance(self.env.get(getattr(n.args[0], "name", ""),
                                                                 None), Chain):
                c = 1.0 / c
            else:
                return self.bad(n, chain, "a number divided by a signal")
        return self.element(n, chain, None, kind="scale", scale=c)

    def reshape(self, n, chain: Chain, key):
        a, b = self.shape(n.args[0]), self.shape(n)
        if a is None or b is None:
            return self.bad(n, chain, f"{_target_name(key)} in the forward of "
                                      f"{_label(self.owner(n))!r} with unknown shapes; pass "
                                      "example_input=... so critsym sees what it regroups")
        if a == b or (len(a) > 1 and len(b) > 1 and a[0] == b[0] and a[-1] == b[-1]
                      and math.prod(a) == math.prod(b)):
            return chain
        return self.bad(n, chain, f"{_target_name(key)} in the forward of "
                                  f"{_label(self.owner(n))!r} regroups the features {a} -> {b}; "
                                  "critsym analyses maps that keep the batch axis and the last "
                                  "(feature) axis")

    def add(self, n, ins):
        from ..ops.activation import Act
        from ..ops.residual import Parallel, Residual

        (_, a), *rest = ins
        if len(rest) != 1:
            v = [self.resolve(x) for x in n.args]
            return self.bad(n, a, f"a signal plus {'a learned tensor' if any(isinstance(x, torch.Tensor) for x in v) else 'a constant'} "  # noqa: E501
                                  f"in the forward of {_label(self.owner(n))!r} (e.g. a "
                                  "position embedding); critsym reads sums of signals")
        b = rest[0][1]
        alpha = n.kwargs.get("alpha", 1)
        if a.base != b.base:
            return self.bad(n, a, "a sum of signals from different inputs")
        i = 0
        while i < min(len(a.items), len(b.items)) and a.items[i] is b.items[i]:
            i += 1
        prefix = Chain(a.base, a.items[:i])
        ra, rb = list(a.items[i:]), list(b.items[i:])
        sa, sb = 1.0, float(alpha)
        if ra and ra[-1].kind == "scale":
            sa *= ra.pop().scale
        if rb and rb[-1].kind == "scale":
            sb *= rb.pop().scale
        parts = ra + rb
        path = self.owner(n)
        layers = tuple(x for e in parts for x in e.layers)
        for e in parts:
            if not e.ok:
                return self.element(n, prefix, None, e.reason if e.kind != "scale" else
                                    f"a scaling by {e.scale:g} inside a sum in the forward of "
                                    f"{_label(path)!r}", layers=layers, path=path)

        def seq(items):
            if not items:
                return None
            return items[0].op if len(items) == 1 else Sequential(*(e.op for e in items))

        if not ra or not rb:
            skip_scale, br, br_scale = (sa, rb, sb) if not ra else (sb, ra, sa)
            if br_scale != 1.0:
                return self.element(n, prefix, None,
                                    f"a residual branch scaled by {br_scale:g} in the forward "
                                    f"of {_label(path)!r}; critsym reads μ·x + f(x)",
                                    layers=layers, path=path)
            branch = seq(br) or Act("identity")
            op = Residual(branch, _round(skip_scale))
        else:
            if sa != 1.0 or sb != 1.0:
                return self.element(n, prefix, None, f"a weighted sum of two branches in the "
                                                     f"forward of {_label(path)!r}",
                                    layers=layers, path=path)
            op = Parallel(seq(ra), seq(rb))
        return self.element(n, prefix, op, layers=layers, path=path)


def _round(mu: float) -> float:
    r = round(mu, 9)
    return float(int(r)) if r == int(r) else r


def _fetch(gm: nn.Module, target: str):
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def walk(module: nn.Module, reader, args: tuple | None, path: str = "") -> tuple[Chain,
                                                                                 Captured]:
    """Capture ``module`` (:func:`capture`) and read its graph into a chain of elements (a
    module an operator claims by type is one element, read by that operator)."""
    from ..torch.modules import OpModule

    if isinstance(module, OpModule) or (claimant(module) is not None
                                        and not isinstance(module, nn.Sequential)):
        cap = Captured(fx.GraphModule(module, fx.Graph()), {}, {path: "claimed by type"})
        reader.methods.update(cap.methods)
        reader.note_inputs(module, args)  # readers of a module claimed whole see its input
        start = len(reader.layers)
        try:
            op = reader.map(module, path)
        except UnsupportedModuleError as e:
            return Chain("input", (Element(None, path, "input", "output", reason=str(e)),)), cap
        items = () if op is None else (Element(op, path, "input", "output",
                                               tuple(range(start, len(reader.layers))),
                                               module=path or None),)
        return Chain("input", items), cap
    cap = capture(module, args, path)
    reader.methods.update(cap.methods)
    walker = Walker(cap, reader, path)
    chain = walker.run()
    cap.output_path = _spec_path(getattr(cap.gm, "_out_spec", None)) if cap.inlined else \
        tuple(walker.output_path)
    return chain, cap


def _spec_path(spec) -> tuple[str, ...]:
    """The keys / indices of the first leaf of a torch.export output tree (its flat outputs
    are the graph's; empty for a tensor output)."""
    out: list[str] = []
    while spec is not None and getattr(spec, "type", None) is not None and \
            getattr(spec, "children_specs", None):
        ctx = spec.context
        keys = ctx[0] if isinstance(ctx, list) and ctx else None
        out.append(str(keys) if keys is not None and not isinstance(keys, int) else "0")
        spec = spec.children_specs[0]
    return tuple(out)


__all__ = ["Captured", "Chain", "Element", "GraphCall", "TRACED", "Tracer", "Walker", "capture",
           "walk"]
