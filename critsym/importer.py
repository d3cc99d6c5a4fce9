r"""Torch models ↔ critsym architectures.

:func:`from_torch` maps a ``torch.nn`` model to a critsym architecture and estimates σ_w, σ_b
from its actual weights; :func:`to_torch_model` builds a plain torch model (standard
``nn.Linear``, ``nn.Conv2d``, ``nn.LayerNorm`` … modules) from an architecture, so that
build → torch → import → theory round-trips.

Estimators (weights assumed i.i.d. at initialization).  For a layer with n weights of fan-in f,
    σ̂_w² = f · mean(W²),   SE(σ̂_w) = σ̂_w / √(2n)      (Var σ̂_w² = 2σ_w⁴/n for Gaussian W),
    σ̂_b² = mean(b²),       SE(σ̂_b) = σ̂_b / √(2 n_b)   (0 when the layer has no bias).
Pooled over the layers of a block, and over the body (the same σ_w, σ_b everywhere):
    σ̂_w² = Σ_layers f·ΣW² / Σ n, and likewise for σ_b — only when the per-layer estimates agree
within their standard errors (a χ² test, :class:`LayerAgreement`); otherwise the result says so
and no single-σ block is returned.  (For non-Gaussian initializations, e.g.
torch's default uniform Kaiming, σ̂ is still the right second moment and the SE is
σ̂·√(Var(W²)/(n E[W²]²))/2, computed from the sample kurtosis.)

Capture.  The model's ``forward`` is read as a graph (``torch.fx`` symbolic tracing;
``torch.export`` for a submodule fx cannot trace, from the inputs that very call received):
:mod:`critsym.interop.capture`.  Modules are mapped by the operator claiming their type
(``Op.torch_types`` / ``Op.read_torch``), functions and tensor methods by the operator claiming
them (``Op.graph_targets`` / ``Op.read_graph``), residual sums μ·x + f(x), transposes of the
last two axes and reshapes that keep the features by the graph rules; opaque parameter-free
leaves (e.g. an einops ``Rearrange``) by ``Op.probe_torch``.  Built in (channels-first torch
conv nets map to critsym's channels-last ops, which compute the same per-position maps):

* ``nn.Sequential`` → ``Sequential``; ``nn.Identity``, ``nn.Dropout`` → skipped;
* ``nn.Linear`` / ``F.linear`` → ``Linear``; ``nn.Conv1d/2d/3d`` (odd square kernel, equal
  strides, dilation 1, groups 1, 'same' padding) → ``Conv`` with its padding mode and stride;
* ``nn.LayerNorm``, ``F.layer_norm``, ``nn.GroupNorm(1, C)`` (γ = 1, β = 0) → ``LayerNorm``;
* the activation table's modules and functions (ReLU, LeakyReLU, Tanh, GELU, SiLU, Sigmoid,
  Softplus(β=1), ELU(α=1), SELU) → ``Act``;
* ``nn.AvgPool{1,2,3}d`` → ``AvgPool``; ``nn.AdaptiveAvgPool{1,2,3}d(1)`` → ``GlobalAvgPool``;
* ``nn.BatchNorm1d/2d/3d`` in training mode (γ = 1, β = 0) → ``BatchNorm()``.

Whole networks (:mod:`critsym.interop.network`): the chain is cut into blocks, the longest run
of blocks that derive is the analysed body, the rest stem and head (``result.skipped`` says
why).  A residual sum followed by an activation (torchvision / Hugging Face ResNet blocks) is
one block, whose theory carries the stream's law (:mod:`critsym.interop.stream`).  A part
that cannot be mapped is reported there, naming the submodule; a model with nothing
analysable raises :class:`UnsupportedModuleError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import SimulationError, UnsupportedModuleError
from .interop.network import BodyBlock, BodyInput, Estimate, NetworkRun, Skipped
from .ops import Sequential
from .ops.base import Op, as_op
from .ops.contract import claimant, contains, probe_leaf, torch_probes
from .torch.modules import (  # noqa: F401 - plain modules, importable from here as before
    ActModule,
    ChannelsFirstLayerNorm,
    ExportContext,
    OpModule,
    ResidualModule,
    SwapLastAxes,
)

#: modules that compute the identity in evaluation mode (skipped on import)
SKIPPED = (nn.Identity, nn.Dropout)
#: p-value below which per-layer σ estimates are taken to differ (not pooled)
POOL_P_MIN = 1e-4


class PoolingWarning(UserWarning):
    """Per-layer weight scales of an imported model differ beyond their sampling error."""


@dataclass
class _Layer:
    path: str
    kind: str
    fan_in: int
    w_sq: float  # Σ W² · fan_in
    n_w: int
    w4: float  # Σ (f W²)²
    b_sq: float
    n_b: int
    b4: float
    #: the hyperparameter the layer's weights scale (``sigma_w``; an attention projection's
    #: ``sigma_q``, ``sigma_k``, ``sigma_v``, ``sigma_o``) and its bias's (``""``: none)
    role: str = "sigma_w"
    bias_role: str = "sigma_b"
    #: the weight as read (rows = outputs; a view of the model's parameter where the reader
    #: passed one) and the bias: what :func:`critsym.init.critical_` redraws
    weight: torch.Tensor | None = field(default=None, repr=False, compare=False)
    bias: torch.Tensor | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LayerAgreement:
    """Whether per-layer estimates of one σ agree within their sampling errors.

    χ² = Σ_i ((σ̂_i − σ̂)/SE_i)² over the k layers with a positive SE (σ̂ the pooled estimate),
    ``p`` = P(χ²_{k−1} ≥ χ²); the estimates are pooled when ``p >= POOL_P_MIN``.
    """

    chi2: float
    dof: int
    p: float

    @property
    def agree(self) -> bool:
        return self.p >= POOL_P_MIN

    def __repr__(self) -> str:
        return f"χ²={self.chi2:.3g} (dof {self.dof}, p={self.p:.2g})"


@dataclass(frozen=True)
class ImportResult:
    """An imported model: its analysed body as a sequence of blocks, and what was skipped.

    Whole network: ``blocks`` (:class:`~critsym.interop.network.BodyBlock`: each block's
    architecture, symbolic block, hyperparameter values, width, output module and
    :attr:`~critsym.interop.network.BodyBlock.theory`), ``skipped`` (stem / head parts with
    their reasons), ``body_input`` (the state entering the body), ``capture`` (module path →
    the tool that captured it), ``approximations`` (submodule → what its import approximates,
    e.g. softmax attention read in an approximate regime); :meth:`network_run` /
    :meth:`J_theory` run the theory through the blocks at the model's current initialization.

    Repeating block (when there is one): ``arch``: the whole model with per-layer numeric
    σ's when every part maps to an operator, else the analysed body;
    ``block``: its repeating unit with symbolic σ_w, σ_b (None when the body is not a stack of
    identical blocks, or when the layers' σ's differ beyond their sampling errors);
    ``n_blocks``; ``sigma_w``, ``sigma_b``: :class:`Estimate` pooled over the body's layers;
    ``layers``: per-layer estimates {path: (σ̂_w, σ̂_b)}; ``agreement``: {"sigma_w":
    LayerAgreement, …} of the pooling check; ``values``: the numeric hyperparameters for
    ``block``.
    """

    arch: Op
    block: Op | None
    n_blocks: int
    sigma_w: Estimate
    sigma_b: Estimate
    layers: dict = field(default_factory=dict)
    mu: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    blocks: tuple[BodyBlock, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    body_input: BodyInput | None = None
    capture: dict = field(default_factory=dict)
    approximations: dict = field(default_factory=dict)
    #: which output is analysed when the model returns a tuple / dict (e.g. a Hugging Face
    #: ModelOutput: "output['last_hidden_state']"); "" for a tensor output
    output: str = ""
    #: the body's weight records (path, role, fan-in, the weight and bias as read), in order
    records: tuple = field(default=(), repr=False)

    def __repr__(self) -> str:
        skip = "; ".join(repr(s) for s in self.skipped) or "nothing"
        out = f"; analysed output: {self.output}" if self.output else ""
        return (f"ImportResult(analysed: {self.analysed}; skipped: {skip}; "
                f"pooled: {self.pooled}{out})")

    @property
    def analysed(self) -> str:
        """The analysed body in words: its first and last block and their number."""
        if not self.blocks:
            return "nothing"
        first, last = self.blocks[0].path, self.blocks[-1].path
        span = first if len(self.blocks) == 1 else f"{first} … {last}"
        return f"{span} ({len(self.blocks)} blocks)"

    @property
    def outputs(self) -> list[str | None]:
        """The submodule whose output is each block's output (layer names for
        :func:`critsym.apjn`; None where no module returns a block's output)."""
        return [b.output for b in self.blocks]

    def network_run(self, theory: str = "auto", **state) -> NetworkRun:
        """The theory through every block with its own maps and estimates.

        ``theory="auto"``: for a token body whose tokens are not exchangeable (a causal mask,
        or tokens not alike at the body input: :attr:`gram_theory`) the token Gram recursion
        (:mod:`critsym.attention.gram_theory`) from each example's Gram measured at the body
        input (:attr:`input_gram`); where it cannot run the body, the exchangeable theory with
        ``note`` saying why.  Otherwise (``theory="exchangeable"``, or any start state given)
        the exchangeable maps from the body input estimate (``body_input``) unless ``K0=``,
        ``O_T0=``, ``O_C0=``, ``J0=``, ``k0=`` are given
        (:func:`critsym.interop.network.run_blocks`)."""
        from .interop.network import run_blocks

        if theory not in ("auto", "exchangeable", "gram"):
            raise UnsupportedModuleError(
                f"theory must be 'auto', 'gram' or 'exchangeable', got {theory!r}")
        note = ""
        kind = self.gram_theory if theory != "exchangeable" and not state else None
        if theory == "gram" and kind is None:
            raise UnsupportedModuleError(
                "theory='gram' needs a token body whose tokens are not exchangeable (a causal "
                "mask or tokens not alike, labelled in approximations), its input Gram "
                "measured from example_input, and no start state given")
        if kind is not None:
            got = self._gram_run(*kind)
            if isinstance(got, NetworkRun):
                return got
            note = got
        start = self.body_input.state() if self.body_input is not None else {"K0": 1.0}
        start.update(state)
        run = run_blocks(self.blocks, **start)
        if note:
            from dataclasses import replace

            run = replace(run, note=note)
        return run

    @property
    def gram_theory(self) -> tuple[bool, str] | None:
        """(causal, why) when the body's theory is the token Gram recursion: a token body whose
        tokens are not exchangeable (its attention causal, or its input tokens not alike,
        both labelled in ``approximations``) with a measured input Gram; else None."""
        from .attention.gram_theory import gram_kind

        if self.input_gram is None:
            return None
        return gram_kind(self.approximations)

    def _gram_run(self, causal: bool, why: str) -> NetworkRun | str:
        """The Gram recursion as a :class:`NetworkRun`, or the label of the exchangeable
        fallback when it cannot run the body."""
        from .attention.gram_theory import (
            GRAM_ERRORS,
            boundary_states,
            exchangeable_fallback,
            theory_label,
        )

        try:
            states, v = boundary_states([b.arch for b in self.blocks], self.input_gram, causal)
        except GRAM_ERRORS as e:
            return exchangeable_fallback(e)
        n = states[0][0].K.shape[0]
        off = ~np.eye(n, dtype=bool)
        K = np.array([np.mean([np.diag(s.K).mean() for s in b]) for b in states])
        OC = np.array([np.mean([s.K[off].mean() if n > 1 else 0.0 for s in b])
                       for b in states])
        OT = np.array([np.mean([(s.m**2).mean() for s in b]) for b in states])
        J = np.array([np.mean([s.J for s in b]) for b in states])
        return NetworkRun(K, J, J[1:] / J[:-1], OT, OC, None, None,
                          theory_label(causal, why), "", states, v)

    @property
    def input_gram(self):
        """Each example's token Gram at the body input, (examples, n, n), measured on the
        example input (``body_input.gram``, or ``body_input.measured.gram`` where the body
        input's state comes from the embedding theory); ``None`` without one."""
        bi = self.body_input
        if bi is None:
            return None
        if bi.gram is None and bi.measured is not None:
            return bi.measured.gram
        return bi.gram

    def causal_run(self, causal: bool = True):
        """The position-resolved token Gram recursion through every block
        (:func:`critsym.attention.causal.causal_run`), from the Gram of each example measured
        at the body input (``body_input.gram``, or ``body_input.measured.gram`` where the
        body input's state comes from the embedding theory): the theory of a causal decoder
        (GPT-2, Llama) with ``causal=True``, and of a body whose input tokens are not alike
        (a class token) with ``causal=False`` (what :meth:`network_run` runs for such bodies,
        :attr:`gram_theory`).  Standard attention is taken as uniform (the result records its
        largest logit variance)."""
        from .attention.causal import causal_run

        gram = self.input_gram
        if gram is None:
            raise UnsupportedModuleError(
                "the causal recursion needs the token Gram of the body input: import a model "
                "whose body mixes tokens, with example_input=... of shape (batch, tokens, "
                "channels) at the body")
        return causal_run([b.arch for b in self.blocks], gram, causal=causal)

    def J_theory(self, start: int = 0, theory: str = "auto", **state) -> np.ndarray:
        """Theory J^{start, b} across the body, b = start..len(blocks) (b: the output of block
        b−1, b = 0 the body input), at the model's current initialization: the state from the
        body input up to ``start``, the tangent restarted there (j = 1, k = 0: a perturbation
        independent across tokens, what :func:`critsym.apjn` applies at a block's output; in
        the token Gram recursion T = I).  ``theory`` as in :meth:`network_run`.  For a body
        without token mixing this is ``J_theory()[start:] / J_theory()[start]``."""
        from .interop.network import run_blocks

        run = self.network_run(theory, **state)
        if start == 0:
            return run.J
        if not 0 <= start <= len(self.blocks):
            raise UnsupportedModuleError(
                f"start must be a block boundary 0..{len(self.blocks)}, got {start}")
        if run.gram is not None:
            from .attention.causal import causal_run

            causal = self.gram_theory[0]
            K = np.stack([s.K for s in run.gram[start]])
            m = np.stack([s.m for s in run.gram[start]])
            return causal_run([b.arch for b in self.blocks[start:]], K, m, causal=causal).J
        st = {"K0": float(run.K[start])}
        if run.laws is not None:  # a post-activation or position-resolved body: its state
            st["law0"] = run.laws[start]
        if run.O_T is not None:
            st.update(O_T0=float(run.O_T[start]), O_C0=float(run.O_C[start]))
        return run_blocks(self.blocks[start:], **st).J

    @property
    def pooled(self) -> bool:
        """True when every pooled σ agrees with its per-layer estimates."""
        return all(a.agree for a in self.agreement.values())

    @property
    def values(self) -> dict[str, float]:
        self._check_pooled()
        v = {"sigma_w": self.sigma_w.value, "sigma_b": self.sigma_b.value}
        if self.block is not None:
            names = {s.name for s in self.block.hyperparameters()}
            return {k: x for k, x in v.items() if k in names}
        return v

    def _check_pooled(self) -> None:
        bad = [k for k, a in self.agreement.items() if not a.agree]
        if bad:
            raise UnsupportedModuleError(_disagree_message(bad, self.layers, self.agreement))

    def theory(self):
        """``critsym.derive(block)`` (raises when the body has no repeating block: use
        ``blocks`` and :meth:`network_run`)."""
        from .derive import derive

        self._check_pooled()
        if self.block is None:
            raise UnsupportedModuleError(
                "the body is not a stack of identical blocks; use result.blocks (each with its "
                "own theory and values) and result.network_run()")
        return derive(self.block)

    def critical(self, solve_for: str = "sigma_w", **fixed):
        """The value of ``solve_for`` that makes the imported model critical (χ_J* = 1), the
        other hyperparameters at their estimates unless given in ``fixed``
        (:func:`critsym.critical_point`)."""
        from .criticality import critical_point

        hp = {k: v for k, v in self.values.items() if k != solve_for}
        hp.update(fixed)
        return float(critical_point(self.theory(), solve_for, **hp))

    def run(self, K0: float = 1.0, **kw):
        """The theory's trajectory over the model's ``n_blocks`` blocks at the estimated σ's."""
        return self.theory().run(self.n_blocks, K0=K0, **self.values, **kw)


def _disagree_message(names, layers, agreement) -> str:
    idx = {"sigma_w": 0, "sigma_b": 1}
    parts = []
    for k in names:
        per = ", ".join(f"{p}: {v[idx[k]]:.4g}" for p, v in layers.items())
        parts.append(f"{k} differs between layers ({per}; {agreement[k]!r})")
    return ("; ".join(parts) + ". The layers are not initialized alike, so one σ does not "
            "describe the model: use result.arch (per-layer σ's) or result.layers")


# ----------------------------------------------------------------------------- import
class Reader:
    """Maps torch modules to operators through the operator registries and records the weight
    estimates; operators' ``read_torch`` / ``read_graph`` / ``probe_torch`` receive it."""

    def __init__(self, inputs: dict | None = None):
        self.layers: list[_Layer] = []
        self.mus: dict[str, float] = {}
        self.methods: dict[str, str] = {}
        #: id(module) → the first tensor argument of the call being read, for the module read
        #: whole and its submodules (readers take e.g. the number of tokens from it)
        self.inputs: dict[int, torch.Tensor] = dict(inputs or {})
        #: submodule label → what its import approximates (readers record it)
        self.approximations: dict[str, str] = {}

    def note_inputs(self, m: nn.Module, args: tuple | None) -> None:
        """Record the arguments of the call of ``m`` being read (and, for a module with
        submodules, the first tensor argument each submodule receives in that call: forward
        pre-hooks that return nothing, so the arguments are the module's own; buffers are
        restored)."""
        if not args or not isinstance(args[0], torch.Tensor):
            return
        self.inputs[id(m)] = args[0]
        if not any(True for _ in m.children()):
            return

        def record(mm, a):
            if a and isinstance(a[0], torch.Tensor):
                self.inputs[id(mm)] = a[0].detach()

        hooks = [c.register_forward_pre_hook(record) for c in m.modules() if c is not m]
        saved = {k: b.detach().clone() for k, b in m.named_buffers()}
        try:
            with torch.no_grad():
                m(*args)
        except Exception:  # noqa: BLE001 - the call's arguments are recorded; the rest optional
            pass
        finally:
            for h in hooks:
                h.remove()
            with torch.no_grad():
                for k, b in m.named_buffers():
                    if k in saved:
                        b.copy_(saved[k])

    @staticmethod
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    @staticmethod
    def label(path: str) -> str:
        return path or "<model>"

    def weights(self, path: str, kind: str, w: torch.Tensor, b: torch.Tensor | None,
                role: str = "sigma_w", bias_role: str | None = None) -> tuple[float, float]:
        """Record one layer's weights (rows = outputs) and bias; return (σ̂_w, σ̂_b).
        ``role``: the hyperparameter the weights scale (default ``sigma_w``; its bias's
        ``bias_role``, default ``sigma_b`` for ``sigma_w`` and ``sigma_b_<x>`` for
        ``sigma_<x>``)."""
        if bias_role is None:
            bias_role = "sigma_b" if role == "sigma_w" else role.replace("sigma_", "sigma_b_")
        ref, bref = w, b
        w = w.detach().to(torch.float64)
        f = int(w[0].numel())
        sq = (w * w * f).flatten()
        layer = _Layer(path, kind, f, float(sq.sum()), sq.numel(), float((sq * sq).sum()),
                       0.0, 0, 0.0, role, bias_role, ref, bref)
        if b is not None:
            bb = (b.detach().to(torch.float64) ** 2).flatten()
            layer.b_sq, layer.n_b, layer.b4 = float(bb.sum()), bb.numel(), float((bb * bb).sum())
        self.layers.append(layer)
        sw = math.sqrt(layer.w_sq / layer.n_w)
        sb = math.sqrt(layer.b_sq / layer.n_b) if layer.n_b else 0.0
        return sw, sb

    def map(self, m: nn.Module, path: str) -> Op | None:
        """The operator for ``m`` (``None``: skipped): the operator claiming its type, else its
        ``forward`` captured as a graph, else the patterns operators recognise by evaluating
        an opaque leaf, else an error naming the submodule."""
        if isinstance(m, OpModule):  # a stacked map that names its operator
            return m.op
        cls = claimant(m)
        if cls is not None:
            return cls.read_torch(m, self, path)
        if isinstance(m, SKIPPED):
            return None
        from .interop.capture import opaque_torch

        if opaque_torch(m):
            return self.unmappable(m, path)
        parametrised = any(True for _ in m.parameters(recurse=False))
        if not parametrised or any(True for _ in m.children()):
            try:
                return self.capture_module(m, path, None)
            except UnsupportedModuleError as e:
                captured_error = e
        else:
            captured_error = None
        if self.is_identity(m):
            return None
        for cls in torch_probes():
            op = cls.probe_torch(m, self, path)
            if op is not None:
                return op
        if captured_error is not None and any(True for _ in m.children()):
            self.name_unmappable_leaf(m, path)
            raise captured_error
        return self.unmappable(m, path)

    def name_unmappable_leaf(self, m: nn.Module, path: str) -> None:
        """Raise naming the first leaf of ``m`` no operator maps (when there is one)."""
        for n, c in m.named_modules():
            if n and not any(True for _ in c.children()):
                try:
                    Reader().map(c, self.join(path, n))
                except UnsupportedModuleError as e:
                    raise UnsupportedModuleError(
                        f"{e} (inside {self.label(path)!r}, a {type(m).__name__})") from None

    def capture_module(self, m: nn.Module, path: str, args: tuple | None,
                       why: str | None = None) -> Op | None:
        """The operator of a whole submodule, its ``forward`` captured as a graph (torch.fx,
        or torch.export from ``args``, the inputs of the call being read); every part must
        map."""
        from .interop.capture import walk

        try:
            chain, _ = walk(m, self, args, path)
        except UnsupportedModuleError:
            self.name_unmappable_leaf(m, path)
            raise
        for e in chain.items:
            if not e.ok:
                reason = e.reason or f"a scaling by {e.scale:g} outside a residual sum"
                raise UnsupportedModuleError(
                    f"{reason} (inside {self.label(path)!r}, a {type(m).__name__})")
        return self.seq([e.op for e in chain.items])

    @staticmethod
    def is_identity(m: nn.Module) -> bool:
        """A parameter-free leaf module that returns its input."""
        pair = probe_leaf(m)
        return pair is not None and pair[1].shape == pair[0].shape and torch.equal(*pair)

    def unmappable(self, m: nn.Module, path: str):
        name = self.label(path)
        raise UnsupportedModuleError(
            f"cannot map submodule {name!r} ({type(m).__module__}.{type(m).__name__}) to a "
            "critsym operator: no operator claims its type (the claimed torch types: "
            "critsym.ops.contract.torch_claims()); register an operator for it "
            "(Op.torch_types / read_torch)")

    def seq(self, ops):
        ops = [o for o in ops if o is not None]
        if not ops:
            return None
        return ops[0] if len(ops) == 1 else Sequential(*ops)

    def pooled(self, layers: list[_Layer] | None = None) -> tuple[Estimate, Estimate, dict]:
        """Pooled σ̂_w, σ̂_b over ``layers`` (default: all) and the per-layer agreement
        check."""
        w = self.layers if layers is None else layers
        if not w:
            return Estimate(float("nan"), float("nan"), 0), Estimate(0.0, 0.0, 0), {}
        nw = sum(la.n_w for la in w)
        m2 = sum(la.w_sq for la in w) / nw
        m4 = sum(la.w4 for la in w) / nw
        sw = Estimate(math.sqrt(m2), _se(m2, m4, nw), nw)
        agreement = {"sigma_w": _agreement(sw, [(la.w_sq, la.w4, la.n_w) for la in w])}
        with_b = [la for la in w if la.n_b and la.b_sq > 0]
        nb = sum(la.n_b for la in with_b)
        if nb == 0:
            return sw, Estimate(0.0, 0.0, 0), agreement
        b2 = sum(la.b_sq for la in with_b) / nb
        b4 = sum(la.b4 for la in with_b) / nb
        sb = Estimate(math.sqrt(b2), _se(b2, b4, nb), nb)
        agreement["sigma_b"] = _agreement(sb, [(la.b_sq, la.b4, la.n_b) for la in with_b])
        return sw, sb, agreement


def _agreement(pooled: Estimate, layers) -> LayerAgreement:
    """χ² of the per-layer estimates (sums of s, s², count n) around the pooled one."""
    from scipy.stats import chi2 as _chi2

    total, k = 0.0, 0
    for s1, s2, n in layers:
        m2, m4 = s1 / n, s2 / n
        se = _se(m2, m4, n)
        if se > 0:
            total += ((math.sqrt(m2) - pooled.value) / se) ** 2
            k += 1
    dof = max(k - 1, 0)
    p = float(_chi2.sf(total, dof)) if dof else 1.0
    return LayerAgreement(total, dof, p)


def _se(m2: float, m4: float, n: int) -> float:
    """SE of sqrt(mean of n samples with moments m2 = E[s], m4 = E[s²]) by the delta method."""
    if m2 <= 0 or n < 2:
        return 0.0
    var = max(m4 - m2 * m2, 0.0) / n
    return math.sqrt(var) / (2 * math.sqrt(m2))


def _round(mu: float) -> float:
    r = round(mu, 6)
    return float(int(r)) if r == int(r) else r


def from_torch(module: nn.Module, example_input: torch.Tensor | None = None) -> ImportResult:
    """Map a torch model to critsym: stem → body → head, the body a sequence of blocks with
    σ_w, σ_b estimated from the model's weights.

    The model's ``forward`` is captured as a graph (torch.fx; torch.export for submodules fx
    cannot trace, which needs ``example_input``) and cut into blocks; the longest run of
    blocks with a theory is the analysed body (``result.blocks``), the rest is reported in
    ``result.skipped`` with the reason.  ``example_input`` (one batch the model accepts) also
    gives the body input state (``result.body_input``) and the shapes of reshapes.  σ's are
    pooled within a block, and over the body for ``result.block`` / ``result.sigma_w``, only
    when the per-layer estimates agree within their sampling errors (``agreement``); otherwise
    a :class:`PoolingWarning` is issued, ``result.block`` is None, and each block keeps its
    own estimates.  Raises :class:`UnsupportedModuleError` when nothing can be analysed, naming
    the first submodule it cannot map.
    """
    from .interop.capture import Element, walk
    from .interop.network import (
        Segment,
        body_input,
        derivable,
        longest_run,
        segments,
        stem_input,
    )
    from .interop.stream import post_activation
    from .ops.attention import uses_tokens
    from .ops.axes import uses_axes
    from .torch.build import CritsymNet

    if not isinstance(module, nn.Module):
        raise UnsupportedModuleError(
            f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise SimulationError("example_input must be a torch.Tensor the model accepts")
    named = list(module.named_modules())
    if any(isinstance(m, (nn.Linear, nn.LayerNorm)) for _, m in named):
        for n, m in named:
            if isinstance(m, nn.Conv1d) and m.kernel_size == (1,):
                raise UnsupportedModuleError(
                    f"submodule {n!r}: Conv1d(kernel_size=1) in a model that also applies "
                    "Linear/LayerNorm to the last axis is ambiguous (in an MLP-Mixer it mixes "
                    "tokens, not channels); write the token MLP as a transpose + nn.Linear")
    imp = Reader()
    values: dict = {}
    output = ""
    if isinstance(module, CritsymNet):  # stacked networks (leading n_nets axis): per block
        blocks = module.iter_blocks() if hasattr(module, "iter_blocks") else module.blocks
        items = []
        for i, c in enumerate(blocks):
            start = len(imp.layers)
            path = f"blocks.{i}"
            try:
                op = imp.map(c, path)
            except UnsupportedModuleError as e:
                items.append(Element(None, path, "", path, reason=str(e)))
                continue
            if op is not None:
                items.append(Element(op, path, "", path, tuple(range(start, len(imp.layers))),
                                     module=path))
        imp.methods[""] = "critsym stacked blocks"
    else:
        args = None if example_input is None else (example_input,)
        chain, cap = walk(module, imp, args)
        items, values = list(chain.items), cap.values
        output = "output" + "".join(f"[{k}]" if k.isdigit() else f"[{k!r}]"
                                    for k in cap.output_path) if cap.output_path else ""
    segs = segments(items)
    axes = any(uses_axes(s.op) for s in segs if s.ok)
    tokens = any(uses_tokens(s.op) for s in segs if s.ok)
    checked = []
    for s in segs:
        why = derivable(s, axes, tokens) if s.ok else ""
        if why and all(type(e.op).__name__ == "Transpose" for e in s.elements):
            why = "a transpose outside the body (layout, no theory of its own)"
        if why and len(s.elements) > 1:  # e.g. a stem's BN → ReLU before a residual block
            tail = Segment(s.elements[-1:])
            if not derivable(tail, axes, tokens):
                head = Segment(s.elements[:-1], ok=False)
                head.reason = derivable(head, axes, tokens) or why
                checked += [head, tail]
                continue
        if why:
            s.ok, s.reason = False, why
        checked.append(s)
    segs = checked
    _one_kind(segs)
    a, b = longest_run([s.ok for s in segs])
    if a == b:
        reasons = "; ".join(s.reason for s in segs if s.reason)
        raise UnsupportedModuleError(
            "no part of the model can be analysed: " + (reasons or "it holds only identities"))
    a, b = _layout_to_stem(segs, a, b)
    body = segs[a:b]
    body_axes = any(uses_axes(s.op) for s in body)
    body_tokens = any(uses_tokens(s.op) for s in body)
    skipped = []
    stream = any(post_activation(s.op) is not None for s in body)
    for part, group, blocker in (("stem", segs[:a], segs[a - 1] if a else None),
                                 ("head", segs[b:], segs[b] if b < len(segs) else None)):
        for s in group:
            why = s.reason or f"has a theory, but {blocker.path!r} separates it from the body"
            if stream and part == "stem" and "not a Gaussian preactivation" in why:
                why = ("its output (an activation) is not a Gaussian preactivation; the "
                       "post-activation residual body after it starts from the measured law "
                       "of its input")
            skipped.append(Skipped(part, s.path, why))
    bblocks = tuple(_body_block(s, imp, values, body_axes, body_tokens) for s in body)
    first = body[0].elements[0].inp
    x0 = values.get(first) if values else None
    if x0 is None and a == 0 and not isinstance(module, CritsymNet):
        x0 = example_input  # the body starts at the model's input
    bn = any(contains(s.op, lambda o: type(o).__name__ == "BatchNorm") for s in body)
    start = body_input(x0, body_axes, "batch" if bn else "tokens",
                       any(contains(s.op, lambda o: type(o).channels_first) for s in body))
    start = stem_input(module, example_input, start, body[0].path, body_tokens)
    body_layers = sorted({i for s in body for e in s.elements for i in e.layers})
    layers = [imp.layers[i] for i in body_layers]
    sw, sb, agreement = imp.pooled(layers)
    per_layer = {la.path: (math.sqrt(la.w_sq / la.n_w),
                           math.sqrt(la.b_sq / la.n_b) if la.n_b else 0.0) for la in layers}
    # the whole model when every part maps to an operator (pooling, heads included), else the
    # analysed body
    arch = _seq([e.op for e in items]) if all(e.ok for e in items) else \
        _seq([s.op for s in body])
    whole = all(e.ok for e in items)
    block, n = _repeating(module, items if whole else
                          [e for s in body for e in s.elements], bblocks)
    bad = [k for k, ag in agreement.items() if not ag.agree]
    if bad:
        warnings.warn(_disagree_message(bad, per_layer, agreement) + "; not pooled (each "
                      "block keeps its own estimates: result.blocks)", PoolingWarning,
                      stacklevel=2)
        block = None
    approximations = dict(getattr(imp, "approximations", {}))
    if start.maps is not None:
        _position_resolved(approximations, body, stream, {la.path for la in layers})
        _few_rows(approximations, body, start.maps)
    if body_tokens:
        unlike = _unlike_tokens(x0)
        if unlike:
            approximations[f"{body[0].path} (body input)"] = unlike
    return ImportResult(arch=arch, block=block, n_blocks=n, sigma_w=sw, sigma_b=sb,
                        layers=per_layer, mu=dict(imp.mus), agreement=agreement,
                        blocks=bblocks, skipped=tuple(skipped), body_input=start,
                        capture=dict(imp.methods),
                        approximations=approximations,
                        output=output, records=tuple(layers))


def _position_resolved(approximations: dict, body, stream: bool, paths: set) -> None:
    """A post-activation body, or a body of Conv / BatchNorm / activation chains, with
    zero-padded convolutions runs the position-resolved theory (:mod:`critsym.interop.padded`):
    its convolutions' zero-padding labels give way to one note naming what that theory
    approximates."""
    from .interop.padded import CHAIN_NOTE, POSITION_NOTE, resolvable, zero_padded

    if not any(zero_padded(s.op) for s in body) or not all(resolvable(s.op) for s in body):
        return
    inside = [p for p in approximations
              if approximations[p].startswith("zero padding") and p in paths]
    for p in inside:
        del approximations[p]
    key = body[0].path if body[0].path == "<model>" else f"{body[0].path} (zero padding)"
    approximations.setdefault(key, POSITION_NOTE if stream else CHAIN_NOTE)


def _few_rows(approximations: dict, body, maps) -> None:
    """Note each body block where the rows a BatchNorm normalises over (examples × positions
    of its map) fall to a new count below :data:`~critsym.interop.padded.FEW_ROWS` (the first
    block of each such stage): the theory's BatchNorm is the infinite-batch one."""
    from .interop.padded import FEW_ROWS, few_rows_note, strides
    from .ops.contract import contains

    B, shape, noted = maps.shape[0], maps.shape[2:], None
    for s in body:
        for st in strides(s.op):
            shape = tuple(-(-n // st) for n in shape)
        rows = B * int(np.prod(shape))
        if (rows < FEW_ROWS and rows != noted
                and contains(s.op, lambda o: type(o).__name__ == "BatchNorm")):
            approximations.setdefault(f"{s.path} (BatchNorm rows)", few_rows_note(rows))
            noted = rows


#: per-token second moments at the body input further apart than this factor are reported
TOKEN_SPREAD = 2.0


def _unlike_tokens(x0) -> str:
    """A note when the tokens of the body input (batch, tokens, channels) are not alike: the
    per-token second moments m_a = mean over examples and channels of h_a² differ by more than
    :data:`TOKEN_SPREAD` (e.g. a class token drawn near zero); '' otherwise.  The theory's
    exchangeable tokens carry their average."""
    import torch

    from .attention.gram_theory import UNLIKE_TOKENS

    if not isinstance(x0, torch.Tensor) or x0.dim() != 3 or x0.shape[1] < 2:
        return ""
    m = (x0.detach().to(torch.float64) ** 2).mean(dim=(0, 2))
    lo, hi = float(m.min()), float(m.max())
    if hi <= 0 or lo * TOKEN_SPREAD >= hi:
        return ""
    a, b = int(m.argmin()), int(m.argmax())
    return (f"{UNLIKE_TOKENS}: per-token second moment {lo:.3g} (token {a}) to {hi:.3g} "
            f"(token {b}), e.g. a class token: the theory is the token Gram recursion from "
            "each example's measured input Gram (network_run), where the exchangeable token "
            "theory would carry their average")


def _one_kind(segs) -> None:
    """A body is of one kind: Gaussian blocks, or post-activation residual blocks (a law
    state, :mod:`critsym.interop.stream`).  Where both derive, the kind with the longer run
    stays; the other kind's blocks joined to it are marked not analysable, with the reason."""
    from .interop.network import longest_run
    from .interop.stream import post_activation

    law = [s.ok and post_activation(s.op) is not None for s in segs]
    gauss = [s.ok and not k for s, k in zip(segs, law, strict=True)]
    if not any(law) or not any(gauss):
        return
    a, b = longest_run(law)
    c, d = longest_run(gauss)
    (a, b), other, why = ((c, d), law, "a post-activation residual block (a law state) next "
                                       "to a body of Gaussian blocks") if d - c > b - a else (
        (a, b), gauss, "a Gaussian block next to a post-activation residual body (a law "
                       "state); critsym runs a body of one kind")
    for rng in (range(a - 1, -1, -1), range(b, len(segs))):  # outward from the kept run
        for i in rng:
            if not segs[i].ok:
                break
            if other[i]:
                segs[i].ok, segs[i].reason = False, why


def _layout_to_stem(segs, a: int, b: int) -> tuple[int, int]:
    """Transposes at the start of the body (e.g. a patch stem's 'b c t -> b t c') are layout,
    not theory: they move to the stem, so the body input is taken after them."""
    from .interop.network import Segment
    from .ops.axes import Transpose

    seg = segs[a]
    k = 0
    while k < len(seg.elements) - 1 and isinstance(seg.elements[k].op, Transpose):
        k += 1
    if k == 0:
        return a, b
    lead = Segment(seg.elements[:k], ok=False,
                   reason="a transpose at the body's input (layout: the body input is taken "
                          "after it)")
    segs[a:a + 1] = [lead, Segment(seg.elements[k:])]
    return a + 1, b + 1


def _seq(ops) -> Op:
    return ops[0] if len(ops) == 1 else Sequential(*ops)


def _body_block(seg, imp: Reader, values: dict, axes: bool, tokens: bool) -> BodyBlock:
    """One body block: pooled σ's (symbolic block) where its layers agree, else the numbers."""
    idx = sorted({i for e in seg.elements for i in e.layers})
    layers = [imp.layers[i] for i in idx]
    arch = seg.op
    sw, sb, agreement = imp.pooled(layers)
    pooled = all(ag.agree for ag in agreement.values())
    if pooled:
        block = arch.symbolic()
        names = {s.name for s in block.hyperparameters()}
        vals = {k: v.value for k, v in (("sigma_w", sw), ("sigma_b", sb)) if k in names}
    else:
        block, vals = arch, {}
    last = seg.elements[-1]
    out = values.get(last.out) if values else None
    width = None
    if isinstance(out, torch.Tensor) and out.dim() >= 2:
        width = int(out.shape[1] if contains(arch, lambda o: type(o).channels_first)
                    and out.dim() > 2 else out.shape[-1])
    return BodyBlock(seg.path, arch, block, vals, width, last.module, pooled, agreement,
                     tuple(la.path for la in layers), axes or tokens, tokens)


def _repeating(module: nn.Module, elements, blocks) -> tuple[Op | None, int]:
    """The repeating unit: the top-level children of an ``nn.Sequential`` when they are
    identical (``elements``: the whole model's when every part maps, else the body's), else
    identical body blocks; (None, number of blocks) otherwise."""
    if isinstance(module, nn.Sequential) and len(module) > 1:
        groups: dict[str, list] = {}
        for e in elements:
            groups.setdefault(e.path.split(".")[0], []).append(e.op)
        kids = [n for n, _ in module.named_children()]
        covered = [k for k in kids if k in groups]
        if len(covered) > 1 and covered == kids[kids.index(covered[0]):][:len(covered)]:
            parts = [_seq(groups[k]).symbolic() for k in covered]
            if all(p == parts[0] for p in parts):
                return parts[0], len(parts)
    syms = [b.arch.symbolic() for b in blocks]
    if all(x == syms[0] for x in syms):
        return syms[0], len(syms)
    return None, len(syms)


# ----------------------------------------------------------------------------- export
def to_torch_model(arch: Op, width: int, depth: int, *, seed: int = 0,
                   dtype=torch.float64, channels_first_norm: str = "groupnorm",
                   **hp: float) -> nn.Sequential:
    """A plain torch model of ``depth`` blocks ``arch`` with standard modules.

    Each operator exports itself (``Op.export``).  Widths: every Linear / Conv outputs
    ``width`` features.  Conv maps are channels-first (N, C, *spatial), as torch expects;
    LayerNorm next to a Conv becomes ``nn.GroupNorm(1, C)`` (``channels_first_norm=
    "groupnorm"``) or a per-position channel LayerNorm ("channel") — the same mean-field map.
    W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²).
    """
    arch = as_op(arch)
    needed = {s.name for s in arch.hyperparameters()}
    if needed - set(hp) or set(hp) - needed:
        raise SimulationError(f"hyperparameters of {arch!r} are {sorted(needed)}; got "
                              f"{sorted(hp)}")
    if channels_first_norm not in ("groupnorm", "channel"):
        raise SimulationError(f"channels_first_norm must be 'groupnorm' or 'channel', got "
                              f"{channels_first_norm!r}")
    ctx = ExportContext(width=int(width), values={k: float(v) for k, v in hp.items()},
                        generator=torch.Generator().manual_seed(int(seed)), dtype=dtype,
                        channels_first=contains(arch, lambda o: type(o).channels_first),
                        channels_first_norm=channels_first_norm)
    blocks = []
    for _ in range(depth):
        m, f = arch.export(ctx, width)
        if f != width:
            raise SimulationError(f"block {arch!r} changes the width {width} -> {f}")
        blocks.append(m)
    return nn.Sequential(*blocks)


__all__ = ["BodyBlock", "BodyInput", "Estimate", "ImportResult", "LayerAgreement",
           "NetworkRun", "PoolingWarning", "Reader", "Skipped", "from_torch", "to_torch_model"]
