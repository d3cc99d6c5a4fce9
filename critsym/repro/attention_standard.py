r"""Standard attention (1/√d_k logits, independent W_Q, W_K): theory against Monte Carlo.

``python -m critsym.repro attention-standard [--quick]`` prints, for σ_QK ∈ {0.25, 0.5, 1, 2, 4}
and n ∈ {4, 8, 32}, the infinite-width theory of :mod:`critsym.attention.standard` beside an
independent Monte Carlo of torch networks at widths d = 32, 64, 128 (40, 80, 160 for n = 32;
one head, d_k = d),
extrapolated to d → ∞ by the weighted 1/d fit (:func:`critsym.torch.validate.extrapolate`), for

* ``layer``: one attention layer y = W_O softmax(QKᵀ/√d_k) W_V x on exchangeable tokens of
  Gram q⁰ = 1, p⁰ = 0.3 (random directions, exact Gram) and a tangent probe with j⁰ = 1,
  κ⁰ = 0;
* ``block``: ``depth`` pre-LN blocks h ↦ h + Attn(LN(h)) (σ_V = σ_O = 1), same input.

The tangent is carried by forward-mode autodiff (``torch.func.jvp``) of a plain torch forward,
so the Monte Carlo shares no formula with the theory.  q is the per-token variance, p the
cross-token covariance, j the APJN over all tokens and k = (1/(n² d)) Σ_{a≠b} ⟨∂h_a, ∂h_b⟩.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..attention.softmax_moments import softmax_D, softmax_WD, softmax_WX, softmax_X
from ..errors import SimulationError

QUANTITIES = ("q", "p", "j", "k")


def theory(n: int, sigma_qk: float, depth: int = 1, mode: str = "layer", q0: float = 1.0,
           p0: float = 0.3, j0: float = 1.0, kappa0: float = 0.0,
           sigma_ov: float = 1.0, heads: int = 1) -> dict[str, float]:
    r"""(q, p, j, k) after one layer (``mode="layer"``) or ``depth`` pre-LN blocks.

    Layer: with v = σ_QK² q(q − p), ρ = p/q, u = q − p,
    q' = σ_OV²[p + u D], p' = σ_OV²[p + u X],
    j' = σ_OV²[D j + (1−D) κ + σ_QK² u W_D((q + u) j − q κ)],
    κ' = σ_OV²[X j + (1−X) κ + σ_QK² u W_X(p j + (u − p) κ)].
    Pre-LN block: the layer acts on LN(h) (q̃ = 1, p̃ = p/q, tangent (j, κ)/q) and adds to h.
    The expectations do not depend on ``heads``.
    """
    q, p, j, kap = q0, p0, j0, kappa0
    for _ in range(depth if mode == "block" else 1):
        if mode == "block":
            qt, pt, jt, kt = 1.0, p / q, j / q, kap / q
        else:
            qt, pt, jt, kt = q, p, j, kap
        u = qt - pt
        v = sigma_qk**2 * qt * u
        rho = pt / qt
        D, X = float(softmax_D(n, v)), float(softmax_X(n, v, rho))
        WD, WX = float(softmax_WD(n, v)), float(softmax_WX(n, v, rho))
        g = sigma_ov**2
        dq, dp = g * (pt + u * D), g * (pt + u * X)
        dj = g * (D * jt + (1 - D) * kt + sigma_qk**2 * u * WD * ((qt + u) * jt - qt * kt))
        dk = g * (X * jt + (1 - X) * kt + sigma_qk**2 * u * WX * (pt * jt + (u - pt) * kt))
        if mode == "block":
            q, p, j, kap = q + dq, p + dp, j + dj, kap + dk
        else:
            q, p, j, kap = dq, dp, dj, dk
    return dict(q=q, p=p, j=j, k=kap * (n - 1) / n)


def _exact_gram(g, diag: float, off: float):  # g: (b, d, n + 1), d >= n + 1
    """Tokens (b, n, d) with Gram x_a·x_b/d exactly ``diag`` (a = b) and ``off`` (a ≠ b):
    √d (√off e_0 + √(diag − off) e_a) from orthonormal columns e of a Gaussian (b, d, n + 1)
    matrix (QR).  A rotation-invariant input of the given Gram (variance reduction: the input
    Gram does not fluctuate)."""
    import torch

    e = torch.linalg.qr(g).Q.transpose(1, 2) * math.sqrt(g.shape[1])  # (b, n + 1, d)
    return math.sqrt(off) * e[:, :1] + math.sqrt(diag - off) * e[:, 1:]


def simulate(n: int, sigma_qk: float, d: int, nets: int, mode: str = "layer", depth: int = 1,
             heads: int = 1, q0: float = 1.0, p0: float = 0.3, j0: float = 1.0,
             kappa0: float = 0.0, sigma_ov: float = 1.0, seed: int = 0,
             chunk: int = 64) -> dict[str, np.ndarray]:
    """Per-network (q, p, j, k) of ``nets`` independent networks of width ``d`` (float64)."""
    import torch
    from torch.func import jvp

    if d < n + 1:
        raise SimulationError(f"width d = {d} is too small for {n} tokens of exact Gram "
                              f"(d >= n + 1 = {n + 1} is needed)")
    gen = torch.Generator().manual_seed(seed)
    dk = d // heads
    sq = math.sqrt(sigma_qk)  # σ_Q = σ_K = √σ_QK
    sv = so = math.sqrt(sigma_ov)
    dt = torch.float64
    out = {k: [] for k in QUANTITIES}

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dt)

    done = 0
    while done < nets:
        b = min(chunk, nets - done)
        layers = depth if mode == "block" else 1
        W = [[randn(b, d, d) / math.sqrt(d) * s for s in (sq, sq, sv, so)] for _ in range(layers)]
        x0 = _exact_gram(randn(b, d, n + 1), q0, p0)
        t0 = _exact_gram(randn(b, d, n + 1), j0, kappa0)

        def attention(x, WQ, WK, WV, WO):
            B = x.shape[0]
            Q = (x @ WQ.transpose(1, 2)).view(B, n, heads, dk).transpose(1, 2)
            K = (x @ WK.transpose(1, 2)).view(B, n, heads, dk).transpose(1, 2)
            V = (x @ WV.transpose(1, 2)).view(B, n, heads, dk).transpose(1, 2)
            A = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(dk), dim=-1)
            y = (A @ V).transpose(1, 2).reshape(B, n, d)
            return y @ WO.transpose(1, 2)

        def net(x, W=W):
            if mode == "layer":
                return attention(x, *W[0])
            for w in W:
                m = x.mean(-1, keepdim=True)
                xc = x - m
                ln = xc / torch.sqrt((xc * xc).mean(-1, keepdim=True))
                x = x + attention(ln, *w)
            return x

        y, t = jvp(net, (x0,), (t0,))
        off = ~torch.eye(n, dtype=torch.bool)
        gy = (y @ y.transpose(1, 2)) / d
        gt = (t @ t.transpose(1, 2)) / d
        out["q"].append(gy.diagonal(dim1=1, dim2=2).mean(-1))
        out["p"].append(gy[:, off].mean(-1))
        out["j"].append(gt.diagonal(dim1=1, dim2=2).mean(-1))
        out["k"].append(gt[:, off].mean(-1) * (n - 1) / n)
        done += b
    return {k: torch.cat(v).numpy() for k, v in out.items()}


@dataclass(frozen=True)
class Row:
    """One (n, σ_QK) entry: theory, extrapolated Monte Carlo ± SE, per quantity."""

    n: int
    sigma_qk: float
    theory: dict
    mc: dict
    se: dict

    def error(self, name: str) -> float:
        """Relative error (MC_∞ − theory)/theory."""
        return (self.mc[name] - self.theory[name]) / self.theory[name]

    def z(self, name: str) -> float:
        return (self.mc[name] - self.theory[name]) / self.se[name]


def measure(n: int, sigma_qk: float, widths=(64, 128, 256), nets: int = 2000,
            mode: str = "layer", depth: int = 1, seed: int = 0, **kw) -> Row:
    """Theory and the 1/d-extrapolated Monte Carlo at one (n, σ_QK)."""
    from ..stats import mean_se
    from ..torch.validate import extrapolate

    th = theory(n, sigma_qk, depth=depth, mode=mode, **kw)
    sims = [simulate(n, sigma_qk, d, nets, mode=mode, depth=depth, seed=seed + 7919 * i, **kw)
            for i, d in enumerate(widths)]
    mc, se = {}, {}
    for name in QUANTITIES:
        ms = [mean_se(s[name]) for s in sims]
        ext, ext_se, _ = extrapolate(widths, [m for m, _ in ms], [s for _, s in ms])
        mc[name], se[name] = ext, ext_se
    return Row(n=n, sigma_qk=sigma_qk, theory=th, mc=mc, se=se)


def table(rows: list[Row]) -> str:
    """A markdown table: per (n, σ_QK) and quantity, theory, MC_∞ ± SE and the relative
    error in percent."""
    head = "| n | σ_QK | " + " | ".join(f"{x}: theory, MC ± SE, error" for x in QUANTITIES) + " |"
    lines = [head, "|" + "---|" * (2 + len(QUANTITIES))]
    for r in rows:
        cells = [f"{r.theory[x]:.4f}, {r.mc[x]:.4f} ± {r.se[x]:.4f}, {100 * r.error(x):+.2f} %"
                 for x in QUANTITIES]
        lines.append(f"| {r.n} | {r.sigma_qk:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SIGMAS = (0.25, 0.5, 1.0, 2.0, 4.0)
TOKENS = (4, 8, 32)
#: (name, mode, depth, networks per width at full settings)
SETTINGS = (("one attention layer", "layer", 1, 2000), ("one pre-LN block", "block", 1, 1000),
            ("four pre-LN blocks", "block", 4, 600))


def widths_for(n: int) -> tuple[int, int, int]:
    """The widths of the Monte Carlo (one head, d_k = d): (32, 64, 128), or (w, 2w, 4w) with w
    the smallest multiple of 8 above n when the tokens' exact Gram needs more room (d > n)."""
    w = max(32, 8 * (n // 8 + 1))
    return (w, 2 * w, 4 * w)


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """The tables over σ_QK × n for each of :data:`SETTINGS` (``quick``: 100 networks per width,
    σ_QK ∈ {0.5, 2}, n ∈ {4, 8}); writes a figure of the relative errors to ``out`` when given.
    Returns {setting name: [Row, ...]}."""
    sigmas = (0.5, 2.0) if quick else SIGMAS
    tokens = (4, 8) if quick else TOKENS
    results = {}
    for name, mode, depth, nets in SETTINGS:
        rows = [measure(n, s, widths=widths_for(n), nets=100 if quick else nets, mode=mode,
                        depth=depth, seed=seed + 1000 * n + 10 * i)
                for n in tokens for i, s in enumerate(sigmas)]
        results[name] = rows
        print(f"== standard attention, {name}: theory vs Monte Carlo (widths "
              f"{', '.join(str(widths_for(n)) for n in tokens)} for n = {tokens}, "
              f"{100 if quick else nets} networks each, extrapolated 1/d → 0)", flush=True)
        print(table(rows), flush=True)
    if out:
        from ._common import pyplot, save_figure

        plt = pyplot()
        fig, axes = plt.subplots(len(SETTINGS), len(QUANTITIES),
                                 figsize=(3.6 * len(QUANTITIES), 2.8 * len(SETTINGS)),
                                 squeeze=False)
        for row_axes, (name, rows) in zip(axes, results.items(), strict=True):
            for ax, x in zip(row_axes, QUANTITIES, strict=True):
                for n in tokens:
                    rs = [r for r in rows if r.n == n]
                    ax.errorbar([r.sigma_qk for r in rs], [100 * r.error(x) for r in rs],
                                yerr=[100 * r.se[x] / abs(r.theory[x]) for r in rs],
                                marker="o", capsize=3, label=f"n = {n}")
                ax.axhline(0, color="k", lw=0.5)
                ax.set_xscale("log")
                ax.set_xlabel("σ_QK")
                ax.set_ylabel(f"error of {x} (%)")
                ax.set_title(name, fontsize=9)
        axes[0, 0].legend(fontsize=8)
        save_figure(fig, out)
    return results


__all__ = ["Row", "measure", "run", "simulate", "table", "theory"]
