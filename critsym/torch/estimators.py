r"""Estimators of the averaged partial Jacobian norm (APJN)

    J^{l0,l} = (1/N_l) ‖∂h^l/∂h^{l0}‖_F²

by Hutchinson's identity E_v ‖J v‖² = ‖J‖_F² for probes with E[v vᵀ] = I (Gaussian,
Rademacher, or uniform on the sphere of radius √N), and E_u ‖Jᵀ u‖² = ‖J‖_F² in reverse mode.

* :func:`jvp_norms` — forward mode (``torch.func.jvp``, probes batched with ``torch.func.vmap``):
  one pass from h^{l0} gives ‖J^{l0,l} v‖² for *every* l ≥ l0;
  :func:`jvp_norms_folded` — the same with the probes folded into a batch axis (used by
  :func:`~critsym.simulate`; dual tensors of ``torch.autograd.forward_ad`` by default).
* :func:`vjp_norms` — reverse mode (``torch.func.vjp``): one backward pass from h^l gives
  ‖(J^{l0,l})ᵀ u‖² for *every* l0 ≤ l (zero perturbations added to each h^{l0}).
* exact mode — the probes ``√F·e_j``, j = 1..F (F input features): the forward pass then
  computes the full Jacobian column by column and the probe mean of ‖J v‖² is exactly ‖J‖_F².

All functions work on a leading *group* axis (independent networks, or independent examples)
and return squared norms per probe, per layer and per group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jvp, vjp, vmap

from ..errors import SimulationError

PROBES = ("gaussian", "rademacher", "sphere")


def make_probes(kind: str, n_probes: int, shape: Sequence[int],
                generators: Sequence[torch.Generator] | None = None,
                generator: torch.Generator | None = None, dtype=torch.float64,
                device=None) -> torch.Tensor:
    """Probes of shape ``(n_probes, *shape)`` with E[v vᵀ] = I over the features.

    ``shape[0]`` is the group axis; with ``generators`` (one per group) group i's probes come
    from generator i.  ``kind``: ``"gaussian"`` (N(0, I)), ``"rademacher"`` (±1, the lowest
    variance for a diagonal-dominated JᵀJ), ``"sphere"`` (uniform, radius √(features)),
    ``"exact"`` (√F·e_j for j = 1..F, F = number of features; ``n_probes`` is ignored).
    """
    shape = tuple(shape)
    feat = shape[1:]
    nf = 1
    for s in feat:
        nf *= s
    if kind == "exact":
        eye = torch.eye(nf, dtype=dtype, device=device) * nf**0.5
        return eye.reshape(nf, 1, *feat).expand(nf, *shape).contiguous()
    if kind not in PROBES:
        raise SimulationError(f"probe must be one of {PROBES + ('exact',)}, got {kind!r}")
    if generators is not None:
        v = torch.stack([torch.randn(n_probes, *feat, generator=g, dtype=dtype, device=device)
                         for g in generators], dim=1)
    else:
        v = torch.randn(n_probes, *shape, generator=generator, dtype=dtype, device=device)
    if kind == "rademacher":
        v = torch.sign(v)
        v[v == 0] = 1
    elif kind == "sphere":
        flat = v.reshape(n_probes, shape[0], -1)
        flat = flat * (nf**0.5 / flat.norm(dim=-1, keepdim=True))
        v = flat.reshape(n_probes, *shape)
    return v


def _sq(t: torch.Tensor) -> torch.Tensor:
    """Σ over every axis but the first (the group axis) of t²."""
    return (t * t).reshape(t.shape[0], -1).sum(-1)


def jvp_norms(f: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor,
              probes: torch.Tensor, probe_chunk: int | None = None) -> torch.Tensor:
    r"""‖J_k v‖² for each probe v and each output k of ``f`` (J_k = ∂f(x)_k/∂x).

    ``f`` maps x (group axis first) to a sequence of layer tensors (group axis first).
    Returns shape ``(n_probes, n_outputs, n_groups)``.  Forward mode: the primal is computed
    once, the probes are vmapped tangents.
    """

    def one(v):
        _, tangents = jvp(lambda z: tuple(f(z)), (x,), (v,))
        return torch.stack([_sq(t) for t in tangents])

    chunk = probe_chunk or probes.shape[0]
    outs = [vmap(one)(probes[i:i + chunk]) for i in range(0, probes.shape[0], chunk)]
    return torch.cat(outs)


def jvp_norms_folded(f: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor,
                     probes: torch.Tensor, engine: str = "forward_ad") -> torch.Tensor:
    r"""As :func:`jvp_norms` with the probes folded into axis 1 of the primal instead of vmapped.

    ``x`` has shape (G, *feat) and ``f`` must accept (G, P, *feat) (a batch axis 1), e.g. a
    :class:`~critsym.torch.build.CritsymNet` trajectory.  The primal is repeated P times, and
    one forward-mode pass carries all P tangents in a matrix-matrix product — faster than vmap
    on CPU.  ``engine="forward_ad"`` (default) uses the dual tensors of
    ``torch.autograd.forward_ad`` directly — the engine under ``torch.func.jvp``, without
    functorch's per-operation wrapping, which at width 1024 cost ~1× a forward pass extra;
    ``engine="func"`` uses ``torch.func.jvp`` (identical numbers).  Returns (P, n_outputs, G).
    """
    P = probes.shape[0]
    X = x.unsqueeze(1).expand(x.shape[0], P, *x.shape[1:]).contiguous()
    T = probes.movedim(0, 1).contiguous()
    if engine == "forward_ad":
        with fwAD.dual_level():
            outs = f(fwAD.make_dual(X, T))
            tangents = [fwAD.unpack_dual(o).tangent for o in outs]
        if any(t is None for t in tangents):
            raise SimulationError("a layer output does not depend on the reference layer")
    elif engine == "func":
        _, tangents = jvp(lambda z: tuple(f(z)), (X,), (T,))
    else:
        raise SimulationError(f"engine must be 'forward_ad' or 'func', got {engine!r}")
    return torch.stack([(t * t).reshape(t.shape[0], P, -1).sum(-1) for t in tangents]) \
        .permute(2, 0, 1)


def vjp_norms_folded(g: Callable[..., torch.Tensor], x: torch.Tensor, n_inputs: int,
                     probes: torch.Tensor) -> torch.Tensor:
    r"""‖J_kᵀ u‖² with the probes folded into axis 1: ``g(X, *deltas)`` maps the repeated primal
    X (G, P, *feat) and ``n_inputs`` zero perturbations of that shape to one tensor (G, P, ...);
    ``probes`` (P, G, ...).  One reverse pass.  Returns (P, n_inputs, G)."""
    P = probes.shape[0]
    X = x.unsqueeze(1).expand(x.shape[0], P, *x.shape[1:]).contiguous()
    zeros = [torch.zeros_like(X) for _ in range(n_inputs)]
    _, pullback = vjp(lambda *d: g(X, *d), *zeros)
    grads = pullback(probes.movedim(0, 1).contiguous())
    return torch.stack([(t * t).reshape(t.shape[0], P, -1).sum(-1) for t in grads]) \
        .permute(2, 0, 1)


def vjp_norms(g: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
              probes: torch.Tensor, probe_chunk: int | None = None) -> torch.Tensor:
    r"""‖J_kᵀ u‖² for each probe u and each input k of ``g`` (J_k = ∂g/∂inputs_k).

    ``g(*inputs)`` returns one tensor (group axis first), ``probes`` have its shape with a
    leading probe axis.  Returns shape ``(n_probes, n_inputs, n_groups)``: one reverse pass per
    probe gives the Jacobian norms with respect to every input.
    """
    _, pullback = vjp(g, *inputs)

    def one(u):
        return torch.stack([_sq(t) for t in pullback(u)])

    chunk = probe_chunk or probes.shape[0]
    outs = [vmap(one)(probes[i:i + chunk]) for i in range(0, probes.shape[0], chunk)]
    return torch.cat(outs)


def token_norms(t: torch.Tensor, token_axis: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two-part Jacobian samples of a tangent t = J v (Hutchinson probe v, E vvᵀ = I) of a
    token network, whose tokens run along ``token_axis`` and channels along the last axis:

        j = ‖t‖²/(n d),   k = ‖Σ_a t_a‖²/(n² d) − j/n,

    unbiased for j = (1/(n d)) Σ_a ‖∂h_a/∂h⁰‖_F² and k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a/∂h⁰,
    ∂h_b/∂h⁰⟩_F, because Σ_{a,b} ⟨∂h_a, ∂h_b⟩_F = ‖∂(Σ_a h_a)/∂h⁰‖_F².  Sums run over the token
    and channel axes (and any axis after the token axis); the leading axes are kept.
    """
    ax = token_axis % t.dim()
    n, d = t.shape[ax], t.shape[-1]
    feat = tuple(range(ax, t.dim()))
    sq = (t * t).sum(feat)
    s = t.sum(ax)
    j = sq / (n * d)
    k = (s * s).sum(tuple(range(ax, s.dim()))) / (n * n * d) - j / n
    return j, k
