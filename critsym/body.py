r"""The analysed part of a torch model for :mod:`critsym.init` and :mod:`critsym.report`: the
longest run of blocks of one structure in the body :func:`critsym.from_torch` reads.

The importer (:mod:`critsym.interop`) reads the model as stem → body → head, the body a
sequence of blocks (:class:`~critsym.interop.BodyBlock`), each with its own σ estimates.  This
module reads no structure of its own; it only groups the importer's blocks:

* **roles**: every hyperparameter field ``sigma_*`` of a block's operators becomes the symbol
  of its role (:func:`role_block`): a Linear's σ_w, σ_b; an attention's σ_v, σ_o, σ_qk =
  σ_q·σ_k, σ_b_v, σ_b_o.  Each weight layer the importer recorded carries its role
  (``ImportResult.records``: path, role, fan-in, the weight as read), so every layer is
  redrawn at its own hyperparameter, with its own fan-in (a GPT-2 ``Conv1D`` stores its
  weight as (in, out): the record holds it as (out, in));
* **the repeated part**: blocks agree when their role forms and their layers' shapes agree
  (their current σ's may differ: a critical initialization overwrites them); the longest run
  of two or more agreeing blocks is the analysed part, the other blocks are skipped with the
  reason, and so are the importer's stem and head;
* **estimates**: per role, pooled over the part's layers (σ̂² = Σ f·ΣW² / Σ n, with the χ²
  check of per-layer agreement, :mod:`critsym.importer`);
* **the input**: the submodule whose output enters the part (the previous block's output, the
  module that returns the body input, or the model input), and the state there measured on
  the example input, K⁰ = mean(h⁰²) (and the token offsets of a token body).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SimulationError, UnsupportedModuleError
from .importer import Estimate, ImportResult, LayerAgreement, Reader
from .ops.base import Op
from .ops.contract import contains


class NoRepeatedBlockError(UnsupportedModuleError):
    """The imported body has no run of two or more blocks of one structure."""


@dataclass(frozen=True, repr=False)
class AnalysedPart:
    """The part of a model the theory describes (see the module doc).

    ``result``: the import (:class:`~critsym.importer.ImportResult`); ``blocks``: the run of
    agreeing body blocks; ``block``: their role form (symbols σ_w, σ_b, σ_v, σ_o, σ_qk …);
    ``ops``: each block's numeric operator; ``inputs``: the submodule whose output enters the
    part (``None``: the model input); ``outputs``: per block, the submodule returning its
    output; ``layers``: the part's weight layers (paths); ``records``: their importer records
    (role, fan-in, weight); ``estimates``: {role: pooled :class:`Estimate`} with
    ``agreement``; ``skipped``: (path, reason) of everything left out; ``state``: the state
    entering the part measured on the example input ({"K0": …, "O_T0": …, "O_C0": …}; empty
    without one); ``layer_sigmas``: {path: (σ̂, σ̂_b)}."""

    result: ImportResult
    blocks: tuple
    block: Op
    ops: tuple[Op, ...]
    inputs: str | None
    outputs: tuple[str | None, ...]
    layers: tuple[str, ...]
    records: tuple = field(default=(), repr=False)
    estimates: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    state: dict = field(default_factory=dict)
    layer_sigmas: dict = field(default_factory=dict)
    #: the blocks differ (no run of two agreeing blocks; ``block`` is the first one's form)
    differing: bool = False

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def K0(self) -> float | None:
        """mean(h⁰²) of the part's input on the example input (None without one)."""
        return self.state.get("K0")

    @property
    def has_bias(self) -> bool:
        return bool(self.records) and all(r.n_b > 0 for r in self.records
                                          if r.role == "sigma_w")

    @property
    def token_state(self) -> bool:
        return any(b.tokens for b in self.blocks)

    @property
    def axes(self) -> bool:
        return any(b.axes for b in self.blocks)

    @property
    def sigma_w(self) -> Estimate:
        return self.estimates.get("sigma_w", Estimate(float("nan"), float("nan"), 0))

    @property
    def sigma_b(self) -> Estimate:
        return self.estimates.get("sigma_b", Estimate(0.0, 0.0, 0))

    @property
    def pooled(self) -> bool:
        """True when every role's per-layer estimates agree (one σ per role describes the
        part)."""
        return all(a.agree for a in self.agreement.values())

    @property
    def values(self) -> dict[str, float]:
        """The pooled estimates of the role form's hyperparameters."""
        names = [s.name for s in self.block.hyperparameters()]
        return {k: self.estimates[k].value for k in sorted(names) if k in self.estimates}

    def disagreeing(self) -> list[str]:
        """The roles whose per-layer estimates differ beyond their sampling error."""
        return [k for k, a in self.agreement.items() if not a.agree]

    def contains(self, op_type: type) -> bool:
        return contains(self.block, lambda o: isinstance(o, op_type))

    def theory(self):
        """The role form's :class:`~critsym.theory.Theory` in the body's state kind."""
        from .interop import derive_block

        return derive_block(self.block, self.axes, self.token_state)

    @property
    def description(self) -> str:
        """One line: which blocks, how many, of which form."""
        first, last = self.blocks[0].path, self.blocks[-1].path
        where = first if len(self.blocks) == 1 else f"blocks {first} … {last}"
        if self.differing:
            return f"{where}: {self.n_blocks} differing blocks"
        return f"{where}: {self.n_blocks} x {self.block!r}"

    def __repr__(self) -> str:
        skip = f"; skipped {', '.join(p for p, _ in self.skipped)}" if self.skipped else ""
        return f"AnalysedPart({self.description}{skip})"


# ----------------------------------------------------------------------------- roles
def _bias_roles(records) -> set[str]:
    """The bias roles some layer holds a bias tensor for (a bias initialized to zero is
    still a bias :func:`critsym.init.critical_` may set)."""
    return {r.bias_role for r in records if r.bias_role and r.n_b > 0}


def role_block(arch: Op, bias_roles: set[str] | None = None) -> Op:
    """``arch`` with every nonzero ``sigma_*`` hyperparameter field replaced by the symbol of
    its role (the field's name; an attention's ``sigma_qk`` is σ_q·σ_k), and zero bias scales
    of the roles in ``bias_roles`` too; other fields (residual μ, τ …) keep their numbers."""
    from .ops.base import from_dict, operators

    ops = operators()
    bias_roles = bias_roles or set()
    d = arch.to_dict()
    for od in _op_dicts(d):
        fields = ops[od["op"]].hyper_fields
        for k, v in list(od.items()):
            if k in fields and k.startswith("sigma") and isinstance(v, (int, float)) and (
                    v != 0 or k in bias_roles):
                od[k] = k
    return from_dict(d)


def _op_dicts(d: dict):
    """Every operator description in the nested ``to_dict`` form ``d``, ``d`` first."""
    yield d
    for v in list(d.values()):
        for item in (v if isinstance(v, list) else [v]):
            if isinstance(item, dict) and "op" in item:
                yield from _op_dicts(item)


def numeric_form(op: Op) -> tuple[Op, dict[str, float]]:
    """``op`` with every non-integer number in a hyperparameter field replaced by its own
    symbol (``sigma_w_0``, ``sigma_b_1`` …), and the values: blocks of one structure then share
    one derivation, whatever their weight scales."""
    import itertools

    from .ops.base import from_dict, operators

    counter, values = itertools.count(), {}
    ops = operators()
    d = op.to_dict()
    for od in _op_dicts(d):
        fields = ops[od["op"]].hyper_fields
        for k, v in list(od.items()):
            if k in fields and isinstance(v, float) and v != int(v):
                name = f"{k}_{next(counter)}"
                values[name], od[k] = v, name
    return from_dict(d), values


def _records_by_path(result: ImportResult) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in result.records:
        out.setdefault(r.path, []).append(r)
    return out


def _block_records(block, by_path) -> list:
    seen, out = set(), []
    for p in block.layers:
        if p not in seen:
            seen.add(p)
            out += by_path.get(p, [])[:1]
    return out


def _key(block, records, bias_roles) -> tuple:
    """What must agree between blocks of one part: the role form and the layers' shapes."""
    shapes = tuple((r.role, r.fan_in, r.n_w // max(r.fan_in, 1)) for r in records)
    return role_block(block.arch, bias_roles), shapes


def estimates(records) -> tuple[dict[str, Estimate], dict[str, LayerAgreement]]:
    """Per role, the pooled estimate over ``records`` and the χ² check of per-layer agreement;
    ``sigma_qk`` = σ̂_q·σ̂_k (SE by the delta method)."""
    reader = Reader()
    est, agree = {}, {}
    roles = dict.fromkeys(r.role for r in records)
    for role in roles:
        layers = [r for r in records if r.role == role]
        sw, sb, ag = reader.pooled(layers)
        est[role] = sw
        if "sigma_w" in ag:
            agree[role] = ag["sigma_w"]
        brole = layers[0].bias_role
        if brole:
            est[brole] = sb
            if "sigma_b" in ag:
                agree[brole] = ag["sigma_b"]
    if "sigma_q" in est and "sigma_k" in est:
        q, k = est["sigma_q"], est["sigma_k"]
        v = q.value * k.value
        se = v * math.hypot(q.se / q.value if q.value else 0.0, k.se / k.value if k.value
                            else 0.0)
        est["sigma_qk"] = Estimate(v, se, min(q.n, k.n))
    return est, agree


def _field_values(ops, names) -> dict[str, Estimate]:
    """Root mean square of the numeric fields of each role over ``ops`` (roles no weight
    record holds, e.g. a deterministic attention's logit scale)."""
    vals: dict[str, list] = {}

    def walk(d):
        for k, v in d.items():
            if k in names and isinstance(v, (int, float)):
                vals.setdefault(k, []).append(float(v))
            elif isinstance(v, dict):
                walk(v)
            elif isinstance(v, list):
                for item in v:
                    if isinstance(item, dict):
                        walk(item)

    for op in ops:
        walk(op.to_dict())
    return {k: Estimate(math.sqrt(sum(x * x for x in v) / len(v)), float("nan"), len(v))
            for k, v in vals.items()}


# ----------------------------------------------------------------------------- the input
def _module_path(block_path: str) -> str:
    return block_path.split("..")[0]


def _io_on_example(model: nn.Module, x: torch.Tensor, first: str | None
                   ) -> tuple[torch.Tensor | None, str | None, dict]:
    """Run ``model(x)`` once: the tensor submodule ``first`` receives (first positional
    argument or ``hidden_states``), the last module called before it that returned that very
    tensor, and every module's first output.  Buffers are restored (BatchNorm statistics do not
    move)."""
    got: dict = {}
    order: list[tuple[str, torch.Tensor]] = []
    outs: dict[str, torch.Tensor] = {}
    hooks = []
    named = dict(model.named_modules())

    def pre(m, args, kwargs):
        t = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get(
            "hidden_states")
        if isinstance(t, torch.Tensor) and "in" not in got:
            got["in"], got["n"] = t.detach(), len(order)

    def post_for(name):
        def post(m, args, out):
            if isinstance(out, torch.Tensor):
                order.append((name, out))
                outs.setdefault(name, out.detach())
        return post

    if first is not None and first in named:
        hooks.append(named[first].register_forward_pre_hook(pre, with_kwargs=True))
    for name, m in named.items():
        if name:
            hooks.append(m.register_forward_hook(post_for(name)))
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
    t = got.get("in")
    src = None
    if t is not None:
        for name, o in reversed(order[:got["n"]]):
            if o is t or (o.shape == t.shape and torch.equal(o.detach(), t)):
                src = name
                break
    return t, src, outs


# ----------------------------------------------------------------------------- the part
def analysed_part(model: nn.Module, example_input: torch.Tensor | None = None,
                  result: ImportResult | None = None) -> AnalysedPart:
    """The longest run of agreeing body blocks of ``model`` (see the module doc), from
    ``result`` or ``critsym.from_torch(model, example_input)``.

    Raises :class:`NoRepeatedBlockError` naming the blocks (and what was skipped) when no two
    consecutive blocks agree, and the importer's :class:`UnsupportedModuleError` when nothing
    can be analysed."""
    import warnings

    from .importer import from_torch

    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise SimulationError("example_input must be a torch.Tensor the model accepts")
    if result is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # per-layer σ's that differ are reported here
            result = from_torch(model, example_input)
    blocks = list(result.blocks)
    by_path = _records_by_path(result)
    recs = [_block_records(b, by_path) for b in blocks]
    bias_roles = _bias_roles(result.records)
    keys = [_key(b, r, bias_roles) for b, r in zip(blocks, recs, strict=True)]
    start, stop = 0, 1
    i = 0
    while i < len(blocks):
        j = i + 1
        while j < len(blocks) and keys[j] == keys[i]:
            j += 1
        if j - i > stop - start:
            start, stop = i, j
        i = j
    imported = tuple((s.path, f"{s.part}: {s.reason}") for s in result.skipped)
    if stop - start < 2:
        found = "; ".join(f"{b.path}: {b.block!r}" for b in blocks)
        why = "; ".join(f"{p}: {r}" for p, r in imported) or "nothing"
        raise NoRepeatedBlockError(
            f"the analysed body has no run of two blocks of one structure (blocks {found}; "
            f"skipped {why}); a critical initialization needs a repeated block: import the "
            "repeated part by itself (e.g. model.layers)")
    run = blocks[start:stop]
    if any(b.output is None for b in run):
        raise UnsupportedModuleError(
            f"no submodule returns the outputs of the repeated blocks "
            f"({', '.join(b.path for b in run)}), e.g. residual sums written in forward, so "
            "they cannot be measured block by block: wrap each block in its own nn.Module")
    skipped = list(imported)
    skipped += [(b.path, "stem: before the repeating body") for b in blocks[:start]]
    skipped += [(b.path, "head: after the repeating body") for b in blocks[stop:]]
    records = [r for rs in recs[start:stop] for r in rs]
    est, agreement = estimates(records)
    block = keys[start][0]
    names = {s.name for s in block.hyperparameters()}
    missing = names - set(est)
    if missing:
        est.update({k: v for k, v in _field_values([b.arch for b in run], missing).items()})
    stem_skipped = any(s.part == "stem" for s in result.skipped)
    inputs, h0 = _part_input(model, example_input, blocks, start, stem_skipped)
    state = {}
    if h0 is not None:
        from .interop.network import body_input

        bn = any(contains(b.arch, lambda o: type(o).__name__ == "BatchNorm") for b in run)
        cf = any(contains(b.arch, lambda o: type(o).channels_first) for b in run)
        try:
            state = body_input(h0, any(b.axes or b.tokens for b in run),
                               "batch" if bn else "tokens", cf).state()
        except UnsupportedModuleError:
            state = {"K0": float((h0.detach().double() ** 2).mean())}
    per = {r.path: (math.sqrt(r.w_sq / r.n_w), math.sqrt(r.b_sq / r.n_b) if r.n_b else 0.0)
           for r in records}
    return AnalysedPart(result=result, blocks=tuple(run), block=block,
                        ops=tuple(b.arch for b in run), inputs=inputs,
                        outputs=tuple(b.output for b in run),
                        layers=tuple(dict.fromkeys(r.path for r in records)),
                        records=tuple(records), estimates=est, agreement=agreement,
                        skipped=tuple(skipped), state=state, layer_sigmas=per)


def _part_input(model, x, blocks, start: int, stem_skipped: bool):
    """(submodule whose output enters block ``start`` or None for the model input, that
    tensor on ``x`` or None without ``x``)."""
    if start > 0 and blocks[start - 1].output is not None:
        inputs = blocks[start - 1].output
        if x is None:
            return inputs, None
        _, _, outs = _io_on_example(model, x, None)
        return inputs, outs.get(inputs)
    if not stem_skipped and start == 0:
        return None, x
    if x is None:
        raise UnsupportedModuleError(
            "the body starts after a stem critsym does not analyse; pass example_input=... so "
            "that the module returning the body input can be found")
    h, src, _ = _io_on_example(model, x, _module_path(blocks[start].path))
    if src is None:
        raise UnsupportedModuleError(
            f"no submodule returns the input of the body's first block "
            f"{blocks[start].path!r} (it is computed in forward): the APJN cannot be measured "
            "from it; wrap the stem in its own nn.Module")
    return src, h


__all__ = ["AnalysedPart", "Estimate", "LayerAgreement", "NoRepeatedBlockError",
           "analysed_part", "estimates", "numeric_form", "role_block"]
