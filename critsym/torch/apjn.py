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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import jacrev, jvp, vjp

from ..errors import SimulationError
from ..stats import mean_se
from .build import network_generators, network_range
from .estimators import PROBES, jvp_norms, make_probes, vjp_norms


@dataclass(frozen=True)
class APJNResult:
    """``J[k]`` = J^{layers[0], layers[k]} (jvp, exact) or J^{layers[k], layers[-1]} (vjp);
    ``J_se`` its standard error over probes and examples (0 for exact)."""

    layers: tuple[str, ...]
    J: np.ndarray
    J_se: np.ndarray
    mode: str
    n_probes: int
    samples: np.ndarray | None = None
    first_net: int = 0

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
        return cls(parts[0].layers, J, se, parts[0].mode, parts[0].n_probes, samples,
                   parts[0].first_net)


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


def apjn(model: nn.Module, x: torch.Tensor, layers: Sequence, *, mode: str = "jvp",
         n_probes: int = 16, probe: str = "gaussian", batch_axis: int | None = 0,
         seed: int = 0, networks: range | None = None) -> APJNResult:
    r"""The APJN between submodules ``layers`` of ``model`` at input ``x`` (see module doc).

    ``layers``: submodule names (``dict(model.named_modules())`` keys, e.g. ``"blocks.3"``) or
    module objects, in the order the forward pass visits them.
    ``networks=range(start, stop)``: the batch rows of ``x`` are examples start..stop-1 of a
    larger run (e.g. independent networks or inputs); example i then takes its
    probes from a generator seeded by (seed, i) and the result keeps its per-example
    ``samples``, so :meth:`APJNResult.concat` of shards equals the unsplit run bit for bit
    (modes "jvp" and "vjp", ``batch_axis=0``).
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
        ex = hooks.record[0] if mode != "vjp" else hooks.record[len(mods) - 1]
        dt, dev = ex.dtype, ex.device
        gen = torch.Generator(device=dev).manual_seed(pseed)
        gens = None if networks is None else \
            network_generators(pseed, networks.start, networks.stop, dev)

        def grouped(t):
            return t if batch_axis == 0 else t.unsqueeze(0)

        def ungrouped(t):
            return t if batch_axis == 0 else t.squeeze(0)

        def run_with(deltas: dict[int, torch.Tensor], inp: torch.Tensor = x):
            hooks.deltas = deltas
            hooks.record = {}
            model(inp)
            return hooks.record

        P = n_probes
        xr = x.repeat(P, *([1] * (x.dim() - 1))) if batch_axis == 0 else x

        def sq_folded(ts):  # (P·B, ...) per layer -> (P, layers, B)
            return torch.stack([(t * t).reshape(P, B, -1).sum(-1) for t in ts]).permute(1, 0, 2)

        n_out = [math.prod(s) // (B if batch_axis == 0 else 1) for s in shapes]
        if mode == "exact":
            J = np.empty(len(mods))
            d0 = torch.zeros(shapes[0], dtype=dt, device=dev)
            for k in range(len(mods)):
                jac = jacrev(lambda d, k=k: run_with({0: d})[k])(d0)
                jac = jac.detach()
                J[k] = float((jac * jac).sum()) / (B * n_out[k]) if batch_axis == 0 else \
                    float((jac * jac).sum()) / n_out[k]
            return APJNResult(names, J, np.zeros_like(J), mode, 0)
        if mode == "jvp" and batch_axis == 0:
            # probes folded into the batch: the model runs once on P copies of x
            V = make_probes(probe, P, shapes[0], generator=gen, generators=gens, dtype=dt,
                            device=dev)
            d0 = torch.zeros((P * B, *shapes[0][1:]), dtype=dt, device=dev)

            def f0(d):
                rec = run_with({0: d}, xr)
                return tuple(rec[k] for k in range(len(mods)))

            _, tangents = jvp(f0, (d0,), (V.reshape(d0.shape),))
            sq = sq_folded(tangents)
        elif mode == "vjp" and batch_axis == 0:
            last = len(mods) - 1
            zeros = [torch.zeros((P * B, *s[1:]), dtype=dt, device=dev) for s in shapes]
            U = make_probes(probe, P, shapes[last], generator=gen, generators=gens, dtype=dt,
                            device=dev)
            _, pullback = vjp(lambda *ds: run_with(dict(enumerate(ds)), xr)[last], *zeros)
            sq = sq_folded(pullback(U.reshape(zeros[last].shape)))
            n_out = [n_out[last]] * len(mods)
        elif mode == "jvp":
            d0 = grouped(torch.zeros(shapes[0], dtype=dt, device=dev))
            V = make_probes(probe, n_probes, d0.shape, generator=gen, dtype=dt, device=dev)

            def f(d):
                rec = run_with({0: ungrouped(d)})
                return [grouped(rec[k]) for k in range(len(mods))]

            sq = jvp_norms(f, d0, V)  # (P, layers, B)
        else:
            zeros = [grouped(torch.zeros(s, dtype=dt, device=dev)) for s in shapes]
            last = len(mods) - 1
            U = make_probes(probe, n_probes, zeros[last].shape, generator=gen, dtype=dt,
                            device=dev)

            def g(*ds):
                return grouped(run_with({k: ungrouped(d) for k, d in enumerate(ds)})[last])

            sq = vjp_norms(g, zeros, U)
            n_out = [n_out[last]] * len(mods)
    finally:
        hooks.remove()
        hooks.deltas = {}
    samples = (sq / torch.tensor(n_out, dtype=sq.dtype, device=sq.device)[None, :, None])
    order = (1, 0, 2) if networks is None else (1, 2, 0)  # shards: example-major samples
    samples = samples.permute(*order).reshape(len(mods), -1).detach().cpu().numpy()
    J, se = mean_se(samples)
    if not np.all(np.isfinite(J)):
        raise SimulationError("non-finite APJN values: the model's outputs or Jacobians "
                              "overflowed at this input")
    if networks is None:
        return APJNResult(names, J, se, mode, n_probes)
    return APJNResult(names, J, se, mode, n_probes, samples, networks.start)
