r"""The analysed part of a torch model: stem → repeating body → head.

:func:`analysed_part` reads a model with the importer's operator registries
(:class:`critsym.importer.Reader`) and finds the part the mean-field theory describes: the
longest run of consecutive children that repeats one block.  The children are those of a
top-level ``nn.Sequential``, or of a module whose ``forward`` applies its children in order
(checked on the example input); an ``nn.Sequential`` child is expanded one level where that
gives more blocks (``stem, Sequential(*blocks), head``).  A flat ``Linear, act, Linear, act,
…`` stack is a sequence of blocks ``act >> Linear`` between consecutive ``Linear`` outputs
(the map of Gaussian preactivations).  Children before the run (the stem) and after it (the
head) are skipped, and the result says so.  For any other model, an importer that lists
the body's blocks (``from_torch(...).blocks``, from a captured graph) gives the blocks, and
the longest run of identical ones is the body; without one, the model is one block.

The block is the symbolic form of the repeated unit (all weight scales σ_w, σ_b); each block
also keeps its own numeric operator (the σ's read from its own layers).  Pooled estimates
over the body's layers (σ̂² = Σ f·ΣW² / Σ n, see :mod:`critsym.importer`) carry the χ² check
of per-layer agreement.  ``K0`` is the per-feature second moment of the body's input,
K⁰ = mean(h⁰²), when an example input is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .errors import SimulationError, UnsupportedModuleError
from .importer import Estimate, LayerAgreement, Reader
from .ops import Sequential
from .ops.base import Op
from .ops.contract import contains
from .symbols import sigma_b as _sb


class NoRepeatedBlockError(UnsupportedModuleError):
    """The imported body has no run of two or more identical blocks."""


@dataclass(frozen=True, repr=False)
class AnalysedPart:
    """The part of a model the theory describes.

    ``block``: the repeated unit with symbolic σ_w, σ_b; ``ops``: each block's own numeric
    operator; ``children``: the model's child names in the body, per block; ``inputs``: the
    submodule path whose output is the body's input (``None``: the model's input);
    ``outputs``: per block, the submodule path whose output is that block's output;
    ``layers``: the body's weight layers (paths); ``sigma_w``, ``sigma_b``: pooled estimates
    over them with ``agreement`` (χ² of per-layer agreement); ``skipped``: (path, reason) of
    the children left out; ``K0``: mean(h⁰²) of the body input (``None`` without an example
    input); ``layer_sigmas``: {path: (σ̂_w, σ̂_b)}.
    """

    block: Op
    ops: tuple[Op, ...]
    children: tuple[tuple[str, ...], ...]
    inputs: str | None
    outputs: tuple[str, ...]
    layers: tuple[str, ...]
    sigma_w: Estimate
    sigma_b: Estimate
    agreement: dict = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    K0: float | None = None
    layer_sigmas: dict = field(default_factory=dict)
    has_bias: bool = True
    #: the blocks differ (a whole-network body read block by block; ``block`` is the first)
    differing: bool = False

    @property
    def n_blocks(self) -> int:
        return len(self.ops)

    @property
    def pooled(self) -> bool:
        """True when every pooled σ agrees with its per-layer estimates."""
        return all(a.agree for a in self.agreement.values())

    @property
    def values(self) -> dict[str, float]:
        """The pooled estimates of the block's hyperparameters."""
        names = {s.name for s in self.block.hyperparameters()}
        v = {"sigma_w": self.sigma_w.value, "sigma_b": self.sigma_b.value}
        return {k: x for k, x in v.items() if k in names}

    def disagreeing(self) -> list[str]:
        """The hyperparameters whose per-layer estimates differ beyond their sampling error."""
        return [k for k, a in self.agreement.items() if not a.agree]

    def contains(self, op_type: type) -> bool:
        return contains(self.block, lambda o: isinstance(o, op_type))

    @property
    def description(self) -> str:
        """One line: which children, how many blocks of which block."""
        kids = [c for b in self.children for c in b]
        where = "the whole model" if kids == [""] else (
            f"children {kids[0]}..{kids[-1]}" if len(kids) > 1 else f"child {kids[0]}")
        if self.differing:
            return f"{where}: {self.n_blocks} differing blocks"
        return f"{where}: {self.n_blocks} x {self.block!r}"

    def __repr__(self) -> str:
        skip = f"; skipped {', '.join(p for p, _ in self.skipped)}" if self.skipped else ""
        return f"AnalysedPart({self.description}{skip})"


def _with_bias(op: Op) -> Op:
    """``op`` with σ_b symbolic in every layer whose σ̂_b read 0 (a bias initialized to zero is
    still a bias critical_ may set)."""
    if "sigma_b" in type(op).hyper_fields and getattr(op, "sigma_b", None) == 0:
        try:
            return replace(op, sigma_b=_sb)
        except TypeError:  # an operator whose constructor takes other arguments
            return op
    return op.map_children(_with_bias)


def _period(sym: list[str]) -> tuple[int, int, int]:
    """(start, period, repeats) of the longest run of a repeated unit in ``sym`` (ties: the
    shorter period, then the earlier start); (0, len, 1) when nothing repeats."""
    best = (0, len(sym), 1)
    best_cover = 0
    n = len(sym)
    for p in range(1, n // 2 + 1):
        for s in range(0, n - 2 * p + 1):
            k = 1
            while s + (k + 1) * p <= n and sym[s + k * p:s + (k + 1) * p] == sym[s:s + p]:
                k += 1
            if k >= 2 and k * p > best_cover:
                best, best_cover = (s, p, k), k * p
    return best


def _pooled(layers) -> tuple[Estimate, Estimate, dict]:
    r = Reader({})
    r.layers = list(layers)
    return r.pooled()


def _mean_sq(t: torch.Tensor | None) -> float | None:
    if t is None:
        return None
    t = t.detach().to(torch.float64)
    return float((t * t).mean())


def _leaves(op: Op) -> list[Op]:
    return list(op.ops) if isinstance(op, Sequential) else [op]


def _has_weights(op: Op) -> bool:
    return contains(op, lambda o: "sigma_w" in type(o).hyper_fields)


def _derives(op: Op) -> bool:
    from .derive import derive
    from .errors import DerivationError

    try:
        derive(op.symbolic())
    except DerivationError:
        return False
    return True


def _seq(ops: list[Op]) -> Op:
    return ops[0] if len(ops) == 1 else Sequential(*ops)


def _rotated(units):
    """Blocks that end in their last weight layer: a unit ``Linear >> act`` (which cannot
    repeat as a map of Gaussian preactivations) read as ``act >> Linear`` between the outputs
    of consecutive weight layers.  ``units``: per unit (leaf ops, weight-layer paths).
    Returns (ops, input path, output paths) or ``None`` when no rotation applies."""
    leaves, paths = units[0]
    j = max((i for i, o in enumerate(leaves) if "sigma_w" in type(o).hyper_fields), default=-1)
    if j < 0 or any(_has_weights(o) for o in leaves[j + 1:]) or len(units) < 2:
        return None
    ops = tuple(_seq(units[i - 1][0][j + 1:] + units[i][0][:j + 1]) for i in range(1, len(units)))
    if not _derives(ops[0]):
        return None
    return ops, units[0][1][-1], tuple(u[1][-1] for u in units[1:])


def _output_mean_sq(model: nn.Module, path: str, x: torch.Tensor) -> float | None:
    """mean(y²) of submodule ``path``'s output on ``model(x)`` (its first call)."""
    mod = dict(model.named_modules())[path]
    seen: list[torch.Tensor] = []
    h = mod.register_forward_hook(
        lambda m, a, y: seen.append(y.detach()) if isinstance(y, torch.Tensor) else None)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return _mean_sq(seen[0]) if seen else None


def _capture_inputs(model: nn.Module, x: torch.Tensor | None) -> dict[int, torch.Tensor]:
    """id(module) → the first tensor argument of its first call on ``model(x)`` (buffers
    restored afterwards, so BatchNorm statistics are left as they were)."""
    inputs: dict[int, torch.Tensor] = {}
    if x is None:
        return inputs
    if not isinstance(x, torch.Tensor):
        raise SimulationError("example_input must be a torch.Tensor the model accepts")

    def record(m, args):
        if args and isinstance(args[0], torch.Tensor):
            inputs.setdefault(id(m), args[0].detach())

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()]
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:  # noqa: BLE001 - reported as a shape problem
        raise SimulationError(f"the model does not accept example_input of shape "
                              f"{tuple(x.shape)}: {e}") from None
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in saved:
                    b.copy_(saved[k])
    return inputs


def _children_in_order(model: nn.Module, x: torch.Tensor | None) -> bool:
    """``model(x)`` equals its children applied in order (a container written in forward)."""
    children = list(model.children())
    if x is None or not children or list(model.parameters(recurse=False)):
        return False
    try:
        with torch.no_grad():
            y, h = model(x), x
            for c in children:
                h = c(h)
    except Exception:  # noqa: BLE001 - not a plain chain of its children
        return False
    return (isinstance(y, torch.Tensor) and isinstance(h, torch.Tensor) and h.shape == y.shape
            and bool(torch.allclose(h, y, rtol=1e-6, atol=1e-9)))


def _map_items(items, inputs):
    """Map (path, module) items: ([(path, op, weight layers)], [(path, why skipped)])."""
    reader = Reader(inputs)
    mapped, skipped = [], []
    for path, mod in items:
        n0 = len(reader.layers)
        op = reader.map(mod, path)
        if op is None:
            skipped.append((path, "identity (evaluation mode)"))
        else:
            mapped.append((path, op, reader.layers[n0:]))
    return mapped, skipped


def _sequence(model: nn.Module, inputs, x):
    """The model as a chain of children (an ``nn.Sequential``, or a module whose forward
    applies its children in order, checked on ``x``), with every ``nn.Sequential`` child
    expanded one level where that gives more repeated blocks (stem, Sequential(blocks), head):
    (items, mapped, skipped, (start, period, repeats)); ``None`` for a single block."""
    if isinstance(model, nn.Sequential):
        if len(model) < 2 and not any(isinstance(c, nn.Sequential) for c in model.children()):
            return None
    elif not _children_in_order(model, x):
        return None
    top = list(model.named_children())
    expanded = [(f"{n}.{cn}", cc) for n, c in top
                for cn, cc in (c.named_children() if isinstance(c, nn.Sequential) and len(c) > 1
                               else [("", c)])]
    expanded = [(p.rstrip("."), m) for p, m in expanded]
    best = None
    for items in (top, expanded) if expanded != top else (top,):
        mapped, skipped = _map_items(items, inputs)
        if not mapped:
            continue
        per = _period([repr(_with_bias(op.symbolic())) for _, op, _ in mapped])
        if best is None or per[2] > best[3][2]:
            best = (items, mapped, skipped, per)
    if best is None:
        raise UnsupportedModuleError("the model contains no operators critsym can map "
                                     "(only identities)")
    if len(best[1]) < 2 and best[3][2] < 2:
        return None
    return best


def _network_blocks(model: nn.Module, x: torch.Tensor | None):
    """The longest run of identical blocks of a whole-network import (an importer whose
    result lists the body's blocks, ``result.blocks``, each with its numeric ``arch``, its
    ``output`` module and its weight ``layers``): (ops, children, body input path, outputs,
    layer records, skipped), or ``None`` when the import has no such list or fewer than two
    blocks."""
    import warnings

    from .importer import from_torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = from_torch(model, x)
    except UnsupportedModuleError:
        if x is not None:  # the importer's reason is the most precise one
            raise
        return None
    blocks = list(getattr(res, "blocks", ()) or ())
    if len(blocks) < 2:
        return None
    skipped = [(getattr(sk, "path", str(sk)), getattr(sk, "reason", ""))
               for sk in getattr(res, "skipped", ())]
    s, p, k = _period([repr(_with_bias(b.arch.symbolic())) for b in blocks])
    found = "; ".join(f"{b.path}: {b.block!r}" for b in blocks)
    why = "; ".join(f"{pth}: {r}" for pth, r in skipped) or "nothing"
    if k < 2:
        raise NoRepeatedBlockError(
            f"the analysed body has no run of identical blocks (blocks {found}; skipped "
            f"{why}); a critical initialization needs a repeated block: import the repeated "
            "part by itself (e.g. model.layers)")
    if any(b.output is None for b in blocks[s:s + k * p]):
        raise UnsupportedModuleError(
            f"no submodule returns the outputs of the repeated blocks ({found}), e.g. residual "
            "sums written in forward, so they cannot be measured or re-initialized block by "
            "block: wrap each block in its own nn.Module")
    skipped += [(b.path, "before the repeated blocks") for b in blocks[:s]]
    skipped += [(b.path, "after the repeated blocks") for b in blocks[s + k * p:]]
    units = [blocks[s + i * p:s + (i + 1) * p] for i in range(k)]
    stem_skipped = any(getattr(sk, "part", "") == "stem" for sk in getattr(res, "skipped", ()))
    if s > 0:
        body_input = blocks[s - 1].output
    elif not stem_skipped:
        body_input = None
    else:  # the body input is no module's output: measure from the first block's output
        body_input, units = units[0][-1].output, units[1:]
        skipped.append((blocks[s].path, "reference: J is measured from its output"))
        if len(units) < 2:
            return None
    ops = tuple(_seq([b.arch for b in u]) for u in units)
    modules = dict(model.named_modules())
    reader = Reader({})
    for u in units:
        for b in u:
            for path in b.layers:
                m = modules.get(path)
                w = getattr(m, "weight", None)
                if isinstance(w, torch.Tensor) and w.dim() >= 2:
                    reader.weights(path, type(m).__name__, w, getattr(m, "bias", None))
    return (ops, tuple(tuple(b.path for b in u) for u in units), body_input,
            tuple(u[-1].output for u in units), list(reader.layers), skipped)


def analysed_part(model: nn.Module, example_input: torch.Tensor | None = None) -> AnalysedPart:
    """The stem / repeating body / head split of ``model`` (see the module doc).

    Raises :class:`UnsupportedModuleError` naming the first submodule no operator maps, or
    when the repeated unit cannot be read as a block (a map of Gaussian preactivations)."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(
            f"expected a torch.nn.Module, got {type(model).__name__}")
    inputs = _capture_inputs(model, example_input)
    reader = Reader(inputs)
    skipped: list[tuple[str, str]] = []
    seq = _sequence(model, inputs, example_input)
    if seq is not None:
        items, mapped, skipped, (s, p, k) = seq
        units = [mapped[s + i * p:s + (i + 1) * p] for i in range(k)]
        names = [n for n, _, _ in mapped]
        skipped += [(n, "stem: before the repeating body") for n in names[:s]]
        skipped += [(n, "head: after the repeating body") for n in names[s + k * p:]]
        order = [n for n, _ in items]
        skipped.sort(key=lambda e: order.index(e[0]))
        first = order.index(names[s])
        body_input = None if first == 0 else order[first - 1]
        ops = tuple(_seq([op for _, op, _ in u]) for u in units)
        children = tuple(tuple(n for n, _, _ in u) for u in units)
        outputs = tuple(u[-1][0] for u in units)
        body_layers = [la for u in units for _, _, ls in u for la in ls]
        unit_leaves = [([lf for _, op, _ in u for lf in _leaves(op)],
                        [la.path for _, _, ls in u for la in ls]) for u in units]
    elif (net := _network_blocks(model, example_input)) is not None:
        ops, children, body_input, outputs, body_layers, skipped = net
        unit_leaves = [(_leaves(op), []) for op in ops]
    else:
        op = reader.map(model, "")
        if op is None:
            raise UnsupportedModuleError("the model contains no operators critsym can map "
                                         "(only identities)")
        ops, children, outputs = (op,), (("",),), ("",)
        body_input = None
        body_layers = list(reader.layers)
        unit_leaves = [(_leaves(op), [la.path for la in body_layers])]
    if not _derives(ops[0]):
        rot = _rotated(unit_leaves)
        if rot is None:
            raise UnsupportedModuleError(
                f"the repeated unit {ops[0].symbolic()!r} of the model is not a map of "
                "Gaussian preactivations (it must end in a Linear layer, a residual sum or a "
                "LayerNorm of Gaussian parts) and cannot be read as one; import the block "
                "by itself or write it as act >> Linear")
        ops, body_input, outputs = rot
        skipped.append((f"after {outputs[-1]}", "tail: the ops after the last weight layer "
                        "(blocks run from one weight layer's output to the next)"))
    if example_input is None:
        K0 = None
    elif body_input is None:
        K0 = _mean_sq(example_input)
    else:
        K0 = _output_mean_sq(model, body_input, example_input)
    block = ops[0].symbolic()
    has_bias = bool(body_layers) and all(la.n_b > 0 for la in body_layers)
    if has_bias:
        block = _with_bias(block)
    sw, sb, agreement = _pooled(body_layers)
    per = {la.path: (math.sqrt(la.w_sq / la.n_w),
                     math.sqrt(la.b_sq / la.n_b) if la.n_b else 0.0) for la in body_layers}
    return AnalysedPart(block=block, ops=tuple(ops), children=children, inputs=body_input,
                        outputs=tuple(outputs), layers=tuple(la.path for la in body_layers),
                        sigma_w=sw, sigma_b=sb, agreement=agreement, skipped=tuple(skipped),
                        K0=K0, layer_sigmas=per, has_bias=has_bias)


__all__ = ["AnalysedPart", "Estimate", "LayerAgreement", "NoRepeatedBlockError", "analysed_part"]
