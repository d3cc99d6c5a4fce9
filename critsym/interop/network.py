r"""Whole networks: stem → body → head, the body a sequence of blocks that may differ.

A captured chain (:mod:`critsym.interop.capture`) is cut into blocks, each ending where the
signal is again a Gaussian preactivation (after a weight layer, a residual / parallel sum):
``Linear``, ``Act → Linear``, ``LayerNorm → Act → Linear``, ``Residual(…)``.  Operators
before a weight layer join it (so ``Linear → act`` stacks read as the input layer followed
by ``act → Linear`` blocks).  A residual sum followed by an activation, φ(x + f(x)) (the
torchvision / Hugging Face ResNet block), closes after the activation; such blocks carry the
stream's law instead of (K, offsets) (:mod:`critsym.interop.stream`).  Each block is derived
(:func:`critsym.derive`; blocks of one body share the state kind: multi-axis for all when one
needs it).  The **body** is the longest run of consecutive blocks that derive; what comes
before is the stem, what follows the head, each skipped part listed with its reason.

The network theory runs the state through each block's own maps,

    (K, O_T, O_C)^{b+1} = F_b((K, O_T, O_C)^b; θ_b),   J^{0,b+1} = χ_b · J^{0,b}

(token theories: the two-part tangent (j, k) through ``Theory.run(1, J0=j, k0=k)`` per block),
θ_b the block's own hyperparameter estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ..errors import CritsymError, DerivationError, UnsupportedModuleError
from ..ops.base import Op, Sequential
from .capture import Element

#: the most entries of the body input kept as its law (BodyInput.samples)
LAW_SAMPLES = 200_000
#: operators after which the signal is a Gaussian preactivation again (a block may end there)
CLOSING = ("Linear", "Conv", "Residual", "Parallel", "BalancedResidual", "Attention")
#: normalisations that end a post-norm layer read whole
POST_NORMS = ("LayerNorm", "RMSNorm")


@dataclass(frozen=True)
class Estimate:
    """A σ estimate with its sampling standard error and the number of samples behind it."""

    value: float
    se: float
    n: int

    def __repr__(self) -> str:
        return f"{self.value:.5g} ± {self.se:.2g} (n={self.n})"


@dataclass(frozen=True)
class Skipped:
    """A part of the model left out of the analysis: ``part`` ("stem", "head"), the module
    ``path`` (or the node) and ``reason``."""

    part: str
    path: str
    reason: str

    def __repr__(self) -> str:
        return f"{self.part} {self.path or '<model>'}: {self.reason}"


@dataclass(frozen=True)
class BodyBlock:
    """One block of the analysed body.

    ``path``: the module(s) it comes from (``"blocks.3"``; ``"1..2"`` for a run of sibling
    modules); ``arch``: the block with its estimated numbers; ``block``: the same with the
    symbols σ_w, σ_b where its layers' estimates agree (``pooled``), else ``arch``;
    ``values``: numeric hyperparameters of ``block``; ``width``: features at its output (None
    without an example input); ``output``: the submodule whose output is the block's output
    (a layer name for :func:`critsym.apjn`; None when no module returns it); ``agreement``:
    the χ² check of its layers (``{"sigma_w": LayerAgreement, …}``); ``layers``: the weight
    layers inside.
    """

    path: str
    arch: Op
    block: Op
    values: dict
    width: int | None
    output: str | None
    pooled: bool
    agreement: dict = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    axes: bool = False
    tokens: bool = False

    @property
    def theory(self):
        """The block's :class:`~critsym.theory.Theory` (derived once per distinct block; the
        body's state kind: multi-axis / token state when another block needs it)."""
        return derive_block(self.block, self.axes, self.tokens)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in self.values.items())
        return f"BodyBlock({self.path!r}: {self.block!r}" + (f"; {vals})" if vals else ")")


@dataclass(frozen=True)
class BodyInput:
    """The state entering the body, estimated from the example input (``source``
    "example_input"), from the embedding theory of a registered embedding stem (``source``
    "embedding theory: …", :func:`stem_input`; the example estimate kept in ``measured``) or
    the default K = 1 with zero offsets (``source`` "default").
    ``K`` = mean h²; multi-axis (rows × neurons in the last two axes): ``O_T`` = mean of
    h_{r,n} h_{r,n'} over n ≠ n' (the per-row part), ``O_C`` = mean of h_{r,n} h_{r',n} over
    r ≠ r'; each an :class:`Estimate` whose SE is the spread over the examples / √B.
    ``gram``: with token rows, each example's token Gram h_a·h_b/N, shape (examples, R, R)
    (the start of the causal recursion, :mod:`critsym.attention.causal`), else None."""

    K: Estimate
    O_T: Estimate | None = None
    O_C: Estimate | None = None
    source: str = "default"
    #: entries of the body input (at most :data:`LAW_SAMPLES`): its law, which the theory of
    #: post-activation residual bodies (:mod:`~.stream`) starts from; None without an input
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    gram: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the example-input estimate when the values come from the embedding theory
    measured: BodyInput | None = None
    #: a conv body's input maps (batch, channels, *map), which the position-resolved theory
    #: of zero-padded bodies (:mod:`~.padded`) starts from; None otherwise
    maps: np.ndarray | None = field(default=None, repr=False, compare=False)

    def state(self) -> dict[str, float]:
        out = {"K0": self.K.value}
        if self.samples is not None:
            out["law0"] = self.samples
        if self.maps is not None:
            out["maps0"] = self.maps
        if self.O_T is not None:
            out["O_T0"] = self.O_T.value
        if self.O_C is not None:
            out["O_C0"] = self.O_C.value
        return out


@dataclass(frozen=True)
class NetworkRun:
    """The network theory across the body: index b = 0..len(blocks) is the input of block b
    (b = len(blocks): the body output).  ``J[b]`` = J^{0,b} (J[0] = 1), ``chi[b]`` =
    J[b+1]/J[b]; ``K``, ``O_T``, ``O_C`` the state (offsets None for a single-axis body);
    ``k`` the cross-token tangent of token theories (None otherwise); ``laws`` the law of
    each boundary for a body of post-activation residual blocks (:mod:`~.stream`; else None).
    ``theory``: which theory ran ("exchangeable" for the (K, O_T, O_C) maps of each block;
    "token Gram recursion (…)" for a token body whose tokens are not exchangeable,
    :mod:`critsym.attention.gram_theory`: then ``K`` is the mean over examples and tokens of
    K_aa, ``O_C`` the mean of K_ab over a ≠ b, ``O_T`` the mean of m_a², and ``gram`` each
    example's Gram state at every boundary); ``note``: why the exchangeable theory ran where
    the Gram recursion was wanted ("" otherwise)."""

    K: np.ndarray
    J: np.ndarray
    chi: np.ndarray
    O_T: np.ndarray | None = None
    O_C: np.ndarray | None = None
    k: np.ndarray | None = None
    laws: tuple | None = field(default=None, repr=False)
    theory: str = "exchangeable"
    note: str = ""
    gram: list | None = field(default=None, repr=False)
    #: the largest logit variance of standard attention taken as uniform by the Gram recursion
    max_logit_var: float = 0.0

    def __repr__(self) -> str:
        kind = "" if self.theory == "exchangeable" else f"; {self.theory}"
        return (f"NetworkRun({len(self.chi)} blocks: J^{{0,L}}={self.J[-1]:.5g}, "
                f"K^L={self.K[-1]:.5g}{kind})")


@lru_cache(maxsize=256)
def derive_block(block: Op, axes: bool = False, tokens: bool = False):
    """``critsym.derive(block)``; with ``tokens`` the token state (rows = tokens, the two-part
    tangent) even for a position-wise block, with ``axes`` the multi-axis state even for a
    block that does not need one (a body where another block does)."""
    from ..derive import derive
    from ..ops.axes import uses_axes

    if tokens:
        return derive(block, tokens=True)
    from .stream import PostActivationTheory, post_activation

    if post_activation(block) is not None:
        return PostActivationTheory(block)
    if not axes or uses_axes(block):
        return derive(block)
    from ..derive import _maps_within_budget
    from ..theory import Theory

    return Theory(arch=block, **_maps_within_budget(block, True))


def run_blocks(blocks, K0: float = 1.0, *, O_T0: float = 0.0, O_C0: float = 0.0,
               J0: float = 1.0, k0: float = 0.0, law0=None, maps0=None) -> NetworkRun:
    """Run the state and the APJN through ``blocks`` (:class:`BodyBlock` s, or pairs
    (Theory, values)), each with its own maps and hyperparameters (see the module doc).  Token
    theories carry the two-part tangent (j, k) (``Theory.run(1, J0=j, k0=k)`` per block);
    other theories multiply J by their χ_J.  A body of post-activation residual blocks carries
    the stream's law instead (:func:`~critsym.interop.stream.run_stream`; ``law0``: the body
    input's law or samples of it); with zero-padded convolutions and the body input's maps
    (``maps0``, batch × channels × map, or ``law0`` a :class:`~.padded.MapLaw`) the
    position-resolved law (:func:`~critsym.interop.padded.run_padded`); a zero-padded body of
    Conv / BatchNorm / activation chains from ``maps0`` (or ``law0`` a
    :class:`~.padded.MapState`) runs the position-resolved state
    (:func:`~critsym.interop.padded.run_chain`)."""
    pairs = [(b.theory, b.values) if isinstance(b, BodyBlock) else b for b in blocks]
    from .padded import MapState, chain, run_chain

    if isinstance(law0, MapState) or (maps0 is not None and chain(pairs)):
        s = run_chain(pairs, law0 if isinstance(law0, MapState) else maps0, J0)
        return NetworkRun(s.K, s.J, s.J[1:] / s.J[:-1], None, None, None, s.maps)
    if any(getattr(th, "stream", False) for th, _ in pairs):
        from .padded import MapLaw, resolvable, run_padded, zero_padded
        from .stream import run_stream

        if isinstance(law0, MapLaw) or (maps0 is not None and any(
                zero_padded(th.arch) for th, _ in pairs) and all(
                resolvable(th.arch) for th, _ in pairs)):
            s = run_padded(pairs, law0 if isinstance(law0, MapLaw) else maps0, J0)
            return NetworkRun(s.K, s.J, s.J[1:] / s.J[:-1], np.zeros_like(s.K), s.O, None,
                              s.maps)

        s = run_stream(pairs, K0, O_C0=O_C0, law0=law0, J0=J0)
        return NetworkRun(s.K, s.J, s.J[1:] / s.J[:-1], np.zeros_like(s.K), s.O, None, s.laws)
    axes = any(th.multi_axis for th, _ in pairs)
    tokens = any(getattr(th, "token_state", False) for th, _ in pairs)
    n = len(pairs)
    K, J, chi = np.empty(n + 1), np.empty(n + 1), np.empty(n)
    OT = np.empty(n + 1) if axes else None
    OC = np.empty(n + 1) if axes else None
    kk = np.full(n + 1, np.nan)
    K[0], J[0] = K0, J0
    if tokens:
        kk[0] = k0
    if axes:
        OT[0], OC[0] = O_T0, O_C0
    for i, (th, vals) in enumerate(pairs):
        st = {"K0": K[i]}
        if th.multi_axis:
            st.update(O_T0=OT[i], O_C0=OC[i] if np.isfinite(OC[i]) else 0.0)
        if getattr(th, "token_state", False):
            r = th.run(1, **st, J0=J[i], k0=kk[i], **vals)
            J[i + 1] = float(r.J[1])
            kk[i + 1] = float(r.k[1])
        else:
            r = th.run(1, **st, **vals)
            J[i + 1] = J[i] * float(r.J[1])
        K[i + 1] = float(r.K[1])
        if axes:
            OT[i + 1] = float(r.O_T[1]) if r.O_T is not None else 0.0
            OC[i + 1] = float(r.O_C[1]) if r.O_C is not None else 0.0
        chi[i] = J[i + 1] / J[i]
    return NetworkRun(K, J, chi, OT, OC, kk if tokens else None)


# ---------------------------------------------------------------------------- segmentation
def closes(op: Op) -> bool:
    """True when ``op`` leaves a Gaussian preactivation (a block may end after it), or ends
    in a normalisation of a residual sum (a post-norm layer read whole, ``… >> Residual >>
    LayerNorm``)."""
    while isinstance(op, Sequential):
        if len(op.ops) > 1 and type(op.ops[-1]).__name__ in POST_NORMS and closes(op.ops[-2]):
            return True
        op = op.ops[-1]
    return type(op).__name__ in CLOSING


@dataclass
class Segment:
    elements: list[Element]
    ok: bool = True
    reason: str = ""

    @property
    def path(self) -> str:
        return segment_path(self.elements)

    @property
    def op(self) -> Op:
        ops = [e.op for e in self.elements]
        return ops[0] if len(ops) == 1 else Sequential(*ops)


def segment_path(elements) -> str:
    """The module a run of elements comes from, or ``"first..last"`` for several."""
    raw = [e.path for e in elements]
    paths = [p or "<model>" for p in raw]
    if all(p == raw[0] or not raw[0] or p.startswith(raw[0] + ".") for p in raw):
        return paths[0]  # a module and its children (e.g. a residual block and its activation)
    return f"{paths[0]}..{paths[-1]}"


def _common_prefix(paths) -> str:
    parts = [p.split(".") if p else [] for p in paths]
    out = []
    for xs in zip(*parts, strict=False):
        if all(x == xs[0] for x in xs):
            out.append(xs[0])
        else:
            break
    return ".".join(out)


def segments(items) -> list[Segment]:
    """Cut a chain's elements into blocks (see the module doc); a part that is not analysable
    is a segment of its own with ``ok`` False."""
    from .stream import post_activation_joins

    items = list(items)
    joins = post_activation_joins(items)  # φ(x + f(x)): the block closes after φ
    out: list[Segment] = []
    cur: list[Element] = []

    def flush():
        nonlocal cur
        if cur:
            out.append(Segment(cur))
            cur = []

    for i, e in enumerate(items):
        if not e.ok:
            flush()
            reason = e.reason or (f"a scaling by {e.scale:g} that is not part of a residual "
                                  "sum" if e.kind == "scale" else "not analysable")
            out.append(Segment([e], ok=False, reason=reason))
            continue
        if i in joins:  # a post-activation block starts at its sum (what precedes is stem)
            flush()
        elif cur and isinstance(e.op, Sequential) and closes(e.op):
            flush()  # a whole layer read at once is a block of its own (e.g. after a stem LN)
        cur.append(e)
        if (closes(e.op) and i not in joins) or (i - 1) in joins:
            flush()
    flush()
    return out


def longest_run(flags) -> tuple[int, int]:
    """(start, stop) of the longest run of True in ``flags`` (the first of equal runs)."""
    best, start = (0, 0), None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def derivable(seg: Segment, axes: bool, tokens: bool = False) -> str:
    """'' when the segment's block derives, else why not."""
    try:
        derive_block(seg.op.symbolic(), axes, tokens)
    except (DerivationError, CritsymError) as e:
        return str(e).splitlines()[0]
    return ""


# ---------------------------------------------------------------------------- estimates
def body_input(x: torch.Tensor | None, axes: bool, rows: str = "tokens",
               channels_first: bool = False) -> BodyInput:
    """The state estimate of the body input ``x`` (batch first): see :class:`BodyInput`.

    Rows × neurons: ``rows="tokens"``: per example, rows the second-to-last axis and neurons
    the last (a Mixer / transformer body); ``rows="batch"``: neurons the channels (axis 1 when
    ``channels_first``, else the last axis), rows everything else, the examples included (a
    BatchNorm body).  A global mean m (constant over rows and neurons, e.g. after a ReLU) is a
    constant per-neuron part: it counts in O_C, and is removed from O_T (O_T = mean of
    h_{r,n} h_{r,n'} − m²); both are clipped to [0, K].
    """
    if x is None or not isinstance(x, torch.Tensor) or x.dim() < 2:
        z = Estimate(0.0, 0.0, 0)
        return BodyInput(Estimate(1.0, 0.0, 0), z if axes else None, z if axes else None)
    h = x.detach().to(torch.float64)
    flat = h.reshape(-1)
    if flat.numel() > LAW_SAMPLES:  # a fixed random subset (a stride could alias the layout)
        pick = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))
        flat = flat[pick[:LAW_SAMPLES]]
    samples = flat.numpy().copy()
    B = h.shape[0]
    per = (h * h).reshape(B, -1).mean(1)
    K = _mean_se(per)
    maps = h.numpy().copy() if channels_first and h.dim() > 3 else None
    if not axes:
        return BodyInput(K, source="example_input", samples=samples, maps=maps)
    if rows == "batch":
        if channels_first and h.dim() > 2:
            h = h.movedim(1, -1)
        g = h.reshape(1, -1, h.shape[-1])
    elif h.dim() < 3:
        raise UnsupportedModuleError(
            f"the body needs a rows × neurons state but its input has shape {tuple(h.shape)}; "
            "pass an example input with (batch, rows, neurons) at the body")
    else:
        g = h.reshape(B, -1, h.shape[-2], h.shape[-1])
    R, N = g.shape[-2], g.shape[-1]
    s_n, s_r = g.sum(-1), g.sum(-2)
    sq = g * g
    lead = g.shape[0]
    ot = ((s_n * s_n - sq.sum(-1)) / (N * (N - 1))).reshape(lead, -1).mean(1) if N > 1 else \
        torch.zeros(lead, dtype=h.dtype)
    oc = ((s_r * s_r - sq.sum(-2)) / (R * (R - 1))).reshape(lead, -1).mean(1) if R > 1 else \
        torch.zeros(lead, dtype=h.dtype)
    m2 = g.reshape(lead, -1).mean(1) ** 2
    OT, OC = _mean_se(ot - m2), _mean_se(oc)
    top = K.value
    OC = Estimate(min(max(OC.value, 0.0), top), OC.se, OC.n)
    OT = Estimate(min(max(OT.value, 0.0), top - OC.value), OT.se, OT.n)
    gram = None
    if rows == "tokens":
        t = g.reshape(-1, R, N)
        gram = (t @ t.transpose(-1, -2) / N).numpy()
    return BodyInput(K, OT, OC, "example_input", samples, gram, maps=maps)


def stem_input(model, example_input, measured: BodyInput, body_start: str,
               tokens: bool) -> BodyInput:
    """The body input from the embedding theory when the model's stem is a registered
    embedding stem (:mod:`critsym.interop.embedding`: BERT, GPT-2, Llama) and the body is a
    token body; else ``measured`` unchanged."""
    from .embedding import read_stage

    if not tokens or isinstance(model, torch.nn.Sequential):
        return measured
    got = read_stage(model, example_input, None, body_start)
    if got is None:
        return measured
    stage, label = got
    st = stage.state
    return BodyInput(Estimate(st.q, 0.0, 0), Estimate(st.O_T, 0.0, 0), Estimate(st.p, 0.0, 0),
                     f"embedding theory: {label}", measured=measured)


def _mean_se(v: torch.Tensor) -> Estimate:
    """Mean and standard error over the entries of ``v`` (SE NaN for a single entry: one
    batch-wide statistic)."""
    n = v.numel()
    m = float(v.mean())
    se = float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return Estimate(m, se, n)


__all__ = ["BodyBlock", "BodyInput", "Estimate", "NetworkRun", "Skipped", "derive_block",
           "run_blocks", "stem_input"]
