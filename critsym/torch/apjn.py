r"""APJN between submodules of *any* torch model (hooks + ``torch.func``).

    J^{l0,l} = (1/N_l) ‖∂h^l/∂h^{l0}‖_F²   per example,

where h^{l0}, h^l are the outputs of two submodules of ``model`` on input ``x``.  A forward hook
adds a perturbation δ (= 0) to the output of the reference module and other hooks record the
outputs of the target modules, so ∂h^l/∂δ = ∂h^l/∂h^{l0}.  Modes:

* ``"jvp"``  — forward mode from ``layers[0]`` to every layer in ``layers``, Hutchinson probes
  (with a batch axis the probes are folded into it: one ``torch.func.jvp`` pass of the model on
  ``n_probes`` copies of ``x``; without one they are vmapped);
* ``"vjp"``  — reverse mode to ``layers[-1]`` from every layer in ``layers`` (perturbations at
  each), Hutchinson probes;
* ``"exact"`` — the full Jacobian (``torch.func.jacrev``): small layers only.

With ``batch_axis=0`` (default) the first axis of ``x`` indexes independent examples and
N_l = (number of entries of h^l) / batch; the result is the mean over examples (modules must not
mix examples, e.g. no BatchNorm in training mode).  ``batch_axis=None`` treats ``x`` as one
example.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import jacrev, vjp

from ..errors import SimulationError
from ..stats import mean_se
from .batch_stats import frozen_batch_stats
from .build import network_generators, network_range
from .estimators import PROBES, jvp_norms, make_probes, token_norms, vjp_norms
from .simulate import _Progress


@dataclass(frozen=True)
class APJNResult:
    """``J[k]`` = J^{layers[0], layers[k]} (jvp, exact) or J^{layers[k], layers[-1]} (vjp);
    ``J_se`` its standard error over probes and examples (0 for exact).  With
    ``apjn(..., token_axis=...)``: ``k[k]`` the cross-token overlap of the same Jacobian and
    ``k_se`` its standard error (else None).  ``note``: how the numbers were computed when it
    differs from ``mode`` (e.g. reverse mode for a model without forward-mode AD)."""

    layers: tuple[str, ...]
    J: np.ndarray
    J_se: np.ndarray
    mode: str
    n_probes: int
    samples: np.ndarray | None = None
    first_net: int = 0
    k: np.ndarray | None = None
    k_se: np.ndarray | None = None
    k_samples: np.ndarray | None = None
    note: str = ""

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.layers, map(float, self.J), strict=True))

    @property
    def n_nets(self) -> int:
        return 0 if self.samples is None else self.samples.shape[1] // max(self.n_probes, 1)

    @property
    def networks(self) -> range:
        return range(self.first_net, self.first_net + self.n_nets)

    @classmethod
    def concat(cls, results: Sequence[APJNResult]) -> APJNResult:
        """One result from shards ``apjn(..., networks=range(...))`` of one run that tile a
        range of examples: equal to the run on all of them bit for bit."""
        from .simulate import ordered_shards

        parts = ordered_shards(results, cls, ("layers", "mode", "n_probes"))
        if any(r.samples is None for r in parts):
            raise SimulationError("only results of apjn(..., networks=range(...)) can be merged")
        samples = np.concatenate([r.samples for r in parts], axis=1)
        J, se = mean_se(samples)
        k = k_se = k_samples = None
        if any((r.k_samples is None) != (parts[0].k_samples is None) for r in parts):
            raise SimulationError("some shards have k (token_axis) and others do not")
        if parts[0].k_samples is not None:
            k_samples = np.concatenate([r.k_samples for r in parts], axis=1)
            k, k_se = mean_se(k_samples)
        return cls(parts[0].layers, J, se, parts[0].mode, parts[0].n_probes, samples,
                   parts[0].first_net, k, k_se, k_samples, parts[0].note)


#: Spawn key of the probe stream: ``seed`` and this key make the probes' generator seed, so the
#: probes never replay the stream that ``torch.manual_seed(seed)`` gives the model's weights.
PROBE_STREAM = 0x5EED_A9C1


def probe_seed(seed: int) -> int:
    """The seed of the probes' own generator: ``np.random.SeedSequence([seed, PROBE_STREAM])``
    hashed to 63 bits: a hash of ``seed``, not ``seed`` itself, so the probes do not replay
    torch's global stream after ``torch.manual_seed(seed)``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationError(f"seed must be an integer >= 0, got {seed!r}")
    state = np.random.SeedSequence([int(seed), PROBE_STREAM]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def _resolve(model: nn.Module, layers) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    by_id = {id(m): n for n, m in named.items()}
    out = []
    if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence) or not layers:
        raise SimulationError("layers must be a non-empty list of submodule names or modules")
    for item in layers:
        if isinstance(item, str):
            if item not in named:
                sample = [n for n in named if n][:12]
                raise SimulationError(
                    f"the model has no submodule named {item!r}; names look like {sample} "
                    "(see model.named_modules())"
                )
            out.append((item, named[item]))
        elif isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise SimulationError(f"module {type(item).__name__} is not part of the model")
            out.append((by_id[id(item)], item))
        else:
            raise SimulationError(f"a layer must be a submodule name or module, got {item!r}")
    return out


class _Hooks:
    """Forward hooks: add perturbations to some outputs, record others."""

    def __init__(self, mods: list[tuple[str, nn.Module]]):
        self.mods = mods
        self.deltas: dict[int, torch.Tensor] = {}
        self.record: dict[int, torch.Tensor] = {}
        self.calls: dict[int, int] = {}
        self.handles = []
        for k, (_, m) in enumerate(mods):
            if any(m is mm for _, mm in mods[:k]):
                continue
            self.handles.append(m.register_forward_hook(self._make(k)))

    def _make(self, k: int):
        same = [j for j, (_, m) in enumerate(self.mods) if m is self.mods[k][1]]

        def hook(mod, inp, out):
            if not isinstance(out, torch.Tensor):
                raise SimulationError(
                    f"submodule {self.mods[k][0]!r} returns {type(out).__name__}, not a tensor; "
                    "pick a submodule whose output is one tensor"
                )
            self.calls[k] = self.calls.get(k, 0) + 1
            for j in same:
                if j in self.deltas:
                    out = out + self.deltas[j]
            for j in same:
                self.record[j] = out
            return out

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def math_attention():
    """A context in which ``F.scaled_dot_product_attention`` (hence ``nn.MultiheadAttention``
    and ``nn.TransformerEncoderLayer``) runs torch's math kernel: the fused CPU flash-attention
    kernel has no forward-mode AD rule, the math kernel has one."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch without the selector
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _no_forward_ad(e: BaseException) -> bool:
    """Whether ``e`` says that an operation has no forward-mode AD rule."""
    msg = str(e).lower()
    return isinstance(e, NotImplementedError) or (
        isinstance(e, RuntimeError) and ("forward ad" in msg or "forward mode ad" in msg
                                         or "forward-mode ad" in msg))


def _token_view(t: torch.Tensor, P: int, B: int, ax: int) -> torch.Tensor:
    """A layer tangent (P·B, *feat) as (P, B, n tokens, rest) for :func:`token_norms`."""
    t = t.movedim(ax, 1)
    return t.reshape(P, B, t.shape[1], -1)


def _stack_k(ts, P, B, axes) -> torch.Tensor:
    """k samples (P, layers, B) of the layer tangents ``ts``, tokens along ``axes[layer]``."""
    return torch.stack([token_norms(_token_view(t, P, B, ax))[1]
                        for t, ax in zip(ts, axes, strict=True)]).permute(1, 0, 2)


def _sq(ts, P, B) -> torch.Tensor:  # (P·B, ...) per layer -> (P, layers, B)
    return torch.stack([(t * t).reshape(P, B, -1).sum(-1) for t in ts]).permute(1, 0, 2)


def apjn(model: nn.Module, x: torch.Tensor, layers: Sequence, *, mode: str = "jvp",
         n_probes: int = 16, probe: str = "gaussian", batch_axis: int | None = 0,
         seed: int = 0, networks: range | None = None, token_axis: int | None = None,
         probe_chunk: int | None = None, progress: bool | None = None) -> APJNResult:
    r"""The APJN between submodules ``layers`` of ``model`` at input ``x`` (see module doc).

    ``layers``: submodule names (``dict(model.named_modules())`` keys, e.g. ``"blocks.3"``) or
    module objects, in the order the forward pass visits them.
    ``networks=range(start, stop)``: the batch rows of ``x`` are examples start..stop-1 of a
    larger run (e.g. independent networks or inputs); example i then takes its
    probes from a generator seeded by (seed, i) and the result keeps its per-example
    ``samples``, so :meth:`APJNResult.concat` of shards equals the unsplit run bit for bit
    (modes "jvp" and "vjp", ``batch_axis=0``).

    ``token_axis`` (an axis of the layer outputs, not the batch axis, e.g. -2 for
    (batch, tokens, channels)): also the cross-token overlap
    k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a/∂h^{l0}, ∂h_b/∂h^{l0}⟩_F (``result.k``; ``J`` is then j, see
    :func:`~critsym.torch.estimators.token_norms`); reverse mode adds probes constant along the
    tokens.  Attention: every mode runs under :func:`math_attention` (torch's fused CPU
    attention kernels have no forward-mode rule, nor a batching rule for their backward); a
    model that still refuses forward-mode AD is differentiated in reverse mode, one pass per
    layer, with the same probes' law and a ``note`` in the result.  ``probe_chunk``: probes per
    pass (memory; default all); ``progress``: a progress bar over the passes (default: on a
    terminal, when there are several).  BatchNorm modules in training mode normalise with the
    batch statistics and their running statistics are left as they were.
    """
    if not isinstance(model, nn.Module):
        raise SimulationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise SimulationError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise SimulationError("x contains non-finite values")
    if mode not in ("jvp", "vjp", "exact"):
        raise SimulationError(f"mode must be 'jvp', 'vjp' or 'exact', got {mode!r}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise SimulationError(f"n_probes must be an integer >= 1, got {n_probes!r}")
    if probe not in PROBES:
        raise SimulationError(f"probe must be one of {PROBES}, got {probe!r}")
    if batch_axis not in (0, None):
        raise SimulationError("batch_axis must be 0 or None")
    if probe_chunk is not None and (isinstance(probe_chunk, bool) or not isinstance(
            probe_chunk, int) or probe_chunk < 1):
        raise SimulationError(f"probe_chunk must be None or an integer >= 1, got {probe_chunk!r}")
    if token_axis is not None:
        if isinstance(token_axis, bool) or not isinstance(token_axis, int):
            raise SimulationError(f"token_axis must be an integer axis, got {token_axis!r}")
        if batch_axis != 0:
            raise SimulationError("token_axis needs batch_axis=0 (examples along axis 0, the "
                                  "tokens along token_axis)")
    pseed = probe_seed(seed)
    if networks is not None:
        if mode == "exact" or batch_axis != 0:
            raise SimulationError("networks=range(...) needs mode 'jvp' or 'vjp' with "
                                  "batch_axis=0 (one example per batch row)")
        networks = network_range(None, networks)
        if len(networks) != x.shape[0]:
            raise SimulationError(f"networks={networks!r} has {len(networks)} entries but x "
                                  f"has {x.shape[0]} batch rows; pass one range entry per row")
    mods = _resolve(model, layers)
    names = tuple(n for n, _ in mods)
    hooks = _Hooks(mods)
    frozen = contextlib.ExitStack()  # BatchNorm running statistics stay as they are
    frozen.enter_context(frozen_batch_stats(model))
    try:
        with torch.no_grad():
            model(x)
        for k, (n, _) in enumerate(mods):
            c = hooks.calls.get(k, 0)
            if c == 0 and not any(mods[j][1] is mods[k][1] and hooks.calls.get(j)
                                  for j in range(len(mods))):
                raise SimulationError(f"submodule {n!r} is not called by model(x)")
            if c > 1:
                raise SimulationError(
                    f"submodule {n!r} is called {c} times per forward pass; its output is "
                    "ambiguous, pick a module that is called once"
                )
        shapes = [hooks.record[k].shape for k in range(len(mods))]
        xb = x if batch_axis == 0 else x.unsqueeze(0)
        B = xb.shape[0]
        for (n, _), s in zip(mods, shapes, strict=True):
            if batch_axis == 0 and (len(s) == 0 or s[0] != B):
                raise SimulationError(
                    f"output of {n!r} has shape {tuple(s)}, whose first axis is not the batch "
                    f"({B}); pass batch_axis=None to treat x as one example"
                )
        tok = None
        if token_axis is not None:
            tok = [_token_axis(token_axis, s, n) for (n, _), s in zip(mods, shapes, strict=True)]
        ex = hooks.record[0] if mode != "vjp" else hooks.record[len(mods) - 1]
        est = _Estimate(model, x, mods, shapes, hooks, B, ex.dtype, ex.device, batch_axis,
                        probe, tok)
        gen = torch.Generator(device=est.dev).manual_seed(pseed)
        gens = None if networks is None else \
            network_generators(pseed, networks.start, networks.stop, est.dev)
        with math_attention():
            if mode == "exact":
                return est.exact(names, progress)
            chunk = n_probes if probe_chunk is None else min(probe_chunk, n_probes)
            sq, kk, n_out, note = est.run(mode, n_probes, chunk, gen, gens, progress)
    finally:
        hooks.remove()
        hooks.deltas = {}
        frozen.close()
    return _result(names, sq, kk, n_out, mode, n_probes, networks, note)


def _token_axis(token_axis: int, shape, name: str) -> int:
    ax = token_axis % len(shape) if -len(shape) <= token_axis < len(shape) else None
    if ax is None or ax == 0:
        raise SimulationError(f"token_axis={token_axis} is not a feature axis of the output of "
                              f"{name!r}, of shape {tuple(shape)} (axis 0 is the batch)")
    if shape[ax] < 2:
        raise SimulationError(f"the output of {name!r} has {shape[ax]} token along "
                              f"token_axis={token_axis}; k needs at least 2 tokens")
    return ax


def _result(names, sq, kk, n_out, mode, n_probes, networks, note) -> APJNResult:
    """Samples (P, layers, B) normalised and reduced to means and standard errors."""
    norm = torch.tensor(n_out, dtype=sq.dtype, device=sq.device)[None, :, None]
    order = (1, 0, 2) if networks is None else (1, 2, 0)  # shards: example-major samples

    def flat(t):
        return t.permute(*order).reshape(len(names), -1).detach().cpu().numpy()

    samples = flat(sq / norm)
    J, se = mean_se(samples)
    k = k_se = k_samples = None
    if kk is not None:
        k_samples = flat(kk)
        k, k_se = mean_se(k_samples)
    if not np.all(np.isfinite(J)):
        raise SimulationError("non-finite APJN values: the model's outputs or Jacobians "
                              "overflowed at this input")
    first = 0 if networks is None else networks.start
    return APJNResult(names, J, se, mode, n_probes, None if networks is None else samples,
                      first, k, k_se, None if networks is None else k_samples, note)


class _Estimate:
    """The passes of :func:`apjn` over one model, input and set of hooked layers."""

    def __init__(self, model, x, mods, shapes, hooks, B, dt, dev, batch_axis, probe, tok):
        self.model, self.x, self.mods, self.shapes, self.hooks = model, x, mods, shapes, hooks
        self.B, self.dt, self.dev, self.batch_axis, self.probe = B, dt, dev, batch_axis, probe
        self.tok = tok
        self.L = len(mods)
        self.n_out = [math.prod(s) // (B if batch_axis == 0 else 1) for s in shapes]

    def run_with(self, deltas: dict[int, torch.Tensor], inp: torch.Tensor | None = None):
        self.hooks.deltas = deltas
        self.hooks.record = {}
        self.model(self.x if inp is None else inp)
        return self.hooks.record

    def repeat(self, p: int) -> torch.Tensor:
        return self.x.repeat(p, *([1] * (self.x.dim() - 1)))

    def probes(self, p: int, shape, gen, gens, token: int | None = None) -> torch.Tensor:
        """(p, *shape) probes; ``token``: an axis of ``shape`` along which they are constant."""
        shape = tuple(shape)
        if token is not None:
            one = (*shape[:token], 1, *shape[token + 1:])
            v = make_probes(self.probe, p, one, generator=gen, generators=gens, dtype=self.dt,
                            device=self.dev)
            return v.expand(p, *shape).contiguous()
        return make_probes(self.probe, p, shape, generator=gen, generators=gens, dtype=self.dt,
                           device=self.dev)

    def exact(self, names, progress) -> APJNResult:
        J = np.empty(self.L)
        kv = None if self.tok is None else np.empty(self.L)
        d0 = torch.zeros(self.shapes[0], dtype=self.dt, device=self.dev)
        bar = _Progress(self.L, progress, "APJN (exact)", unit="layer")
        try:
            for k in range(self.L):
                jac = jacrev(lambda d, k=k: self.run_with({0: d})[k])(d0).detach()
                total = self.B * self.n_out[k] if self.batch_axis == 0 else self.n_out[k]
                J[k] = float((jac * jac).sum()) / total
                if kv is not None:
                    n = self.shapes[k][self.tok[k]]
                    s = jac.sum(self.tok[k])
                    kv[k] = float((s * s).sum()) / (total * n) - J[k] / n
                bar.update(1)
        finally:
            bar.close()
        zeros = np.zeros_like(J)
        return APJNResult(names, J, zeros, "exact", 0, k=kv,
                          k_se=None if kv is None else zeros.copy())

    def run(self, mode, P, chunk, gen, gens, progress):
        """Squared norms (P, layers, B), k samples (or None), the normalisations, a note."""
        note = ""
        if self.batch_axis != 0:
            return (*self._unbatched(mode, P, gen), "")
        if mode == "jvp":
            V = self.probes(P, self.shapes[0], gen, gens)
            try:
                sq, kk = self._chunked(P, chunk, progress, "APJN (jvp)",
                                       lambda lo, hi: self._jvp(V[lo:hi]))
                return sq, kk, self.n_out, note
            except (NotImplementedError, RuntimeError) as e:
                if not _no_forward_ad(e):
                    raise
                note = (f"forward-mode AD is not available for this model ({str(e)[:120]}); "
                        "J^{layers[0], layers[k]} was computed in reverse mode, one pass per "
                        "layer")
            U = [self.probes(P, s, gen, gens) for s in self.shapes]
            Ut = None if self.tok is None else \
                [self.probes(P, s, gen, gens, t) for s, t in zip(self.shapes, self.tok,
                                                                 strict=True)]
            sq, kk = self._chunked(P, chunk, progress, "APJN (reverse, per layer)",
                                   lambda lo, hi: self._reverse_each(U, Ut, lo, hi))
            return sq, kk, self.n_out, note
        last = self.L - 1
        U = self.probes(P, self.shapes[last], gen, gens)
        Ut = None if self.tok is None else self.probes(P, self.shapes[last], gen, gens,
                                                       self.tok[last])
        sq, kk = self._chunked(P, chunk, progress, "APJN (vjp)",
                               lambda lo, hi: self._vjp(U[lo:hi], None if Ut is None else
                                                        Ut[lo:hi]))
        return sq, kk, [self.n_out[last]] * self.L, note

    def _chunked(self, P, chunk, progress, desc, fn):
        parts = []
        bar = _Progress(P, progress if P > chunk or progress else False, desc, unit="probe")
        try:
            for lo in range(0, P, chunk):
                hi = min(P, lo + chunk)
                parts.append(fn(lo, hi))
                bar.update(hi - lo)
        finally:
            bar.close()
        sq = torch.cat([p[0] for p in parts])
        kk = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        return sq, kk

    def _jvp(self, V):
        p, B = V.shape[0], self.B
        xr = self.repeat(p)
        d0 = torch.zeros((p * B, *self.shapes[0][1:]), dtype=self.dt, device=self.dev)

        # dual tensors of torch.autograd.forward_ad: the engine under torch.func.jvp, without
        # functorch's per-operation wrapping (~20 % of a transformer's forward-mode pass)
        with fwAD.dual_level():
            rec = self.run_with({0: fwAD.make_dual(d0, V.reshape(d0.shape))}, xr)
            tangents = []
            for k in range(self.L):
                t = fwAD.unpack_dual(rec[k]).tangent
                tangents.append(torch.zeros_like(rec[k]) if t is None else t)
        kk = None if self.tok is None else _stack_k(tangents, p, B, self.tok)
        return _sq(tangents, p, B), kk

    def _pull(self, target: int, inputs: Sequence[int], U: torch.Tensor):
        """Reverse-mode gradients of ⟨U, h^target⟩ with respect to perturbations at ``inputs``
        (U: (p, B, *feat), the probes of p copies of x)."""
        p = U.shape[0]
        xr = self.repeat(p)
        zeros = [torch.zeros((p * self.B, *self.shapes[i][1:]), dtype=self.dt, device=self.dev)
                 for i in inputs]
        _, pullback = vjp(lambda *ds: self.run_with(dict(zip(inputs, ds, strict=True)),
                                                    xr)[target], *zeros)
        return pullback(U.reshape(p * self.B, *U.shape[2:]))

    def _vjp(self, U, Ut):
        p, B, last = U.shape[0], self.B, self.L - 1
        grads = self._pull(last, range(self.L), U if Ut is None else torch.cat([U, Ut]))
        if Ut is None:
            return _sq(grads, p, B), None
        both = _sq(grads, 2 * p, B)
        sq, sq_t = both[:p], both[p:]
        n = self.shapes[last][self.tok[last]]
        N = self.n_out[last]
        return sq, (sq_t / N - sq / N) / n

    def _reverse_each(self, U, Ut, lo, hi):
        """The forward-mode quantities J^{0,k} (and k) by one reverse pass per layer k."""
        p, B = hi - lo, self.B
        sq, kk = [], []
        for k in range(self.L):
            probes = U[k][lo:hi] if Ut is None else torch.cat([U[k][lo:hi], Ut[k][lo:hi]])
            (g,) = self._pull(k, [0], probes)
            s = (g * g).reshape(probes.shape[0], B, -1).sum(-1)
            sq.append(s[:p])
            if Ut is not None:
                n, N = self.shapes[k][self.tok[k]], self.n_out[k]
                kk.append((s[p:] / N - s[:p] / N) / n)
        sq = torch.stack(sq).permute(1, 0, 2)
        return sq, None if Ut is None else torch.stack(kk).permute(1, 0, 2)

    def _unbatched(self, mode, P, gen):
        """``batch_axis=None``: x is one example; probes vmapped."""
        def grouped(t):
            return t.unsqueeze(0)

        if mode == "jvp":
            d0 = grouped(torch.zeros(self.shapes[0], dtype=self.dt, device=self.dev))
            V = make_probes(self.probe, P, d0.shape, generator=gen, dtype=self.dt,
                            device=self.dev)

            def f(d):
                rec = self.run_with({0: d.squeeze(0)})
                return [grouped(rec[k]) for k in range(self.L)]

            return jvp_norms(f, d0, V), None, self.n_out
        zeros = [grouped(torch.zeros(s, dtype=self.dt, device=self.dev)) for s in self.shapes]
        last = self.L - 1
        U = make_probes(self.probe, P, zeros[last].shape, generator=gen, dtype=self.dt,
                        device=self.dev)

        def g(*ds):
            return grouped(self.run_with({k: d.squeeze(0) for k, d in enumerate(ds)})[last])

        return vjp_norms(g, zeros, U), None, [self.n_out[last]] * self.L
