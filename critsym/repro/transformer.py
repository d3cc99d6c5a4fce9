r"""Transformer blocks: one-block APJN phase diagrams of a ViT-like stack, and J^{0,l} vs depth.

**Phase diagrams** (the partial-Jacobian paper's ViT notebook, github ablghtianyi/PartialJac):
17 tokens, 10 blocks, MLP 4× with ReLU, every Linear (Q, K, V, O, W₁, W₂) with weights of
variance varw/fan_in and zero biases, residual x ↦ μx + branch around both sub-blocks, with
LayerNorm before each branch ("pre"), after each residual sum ("post") or nowhere ("none").
The one-block APJN J^{7→8} = (1/(n d)) ‖∂h⁸/∂h⁷‖_F² over varw ∈ [0.1, 4.1], μ ∈ [0.1, 1].

* Theory, as drawn: the **standard softmax regime** of the paper's attention (independent W_Q,
  W_K, logits of variance σ_QK² q̃(q̃ − p̃) with σ_QK = varw): :func:`standard_one_block` runs
  critsym's fold of the block with ``Attention(n, "standard", …)``
  (:func:`standard_block_theory`; the exact softmax moments of
  :mod:`critsym.attention.softmax_moments` combined by the rule of
  :mod:`critsym.attention.standard`, equal to rounding to the same moments combined by hand,
  :func:`standard_one_block_by_hand`), propagating the expected token Gram across blocks.
  Where the logit variance leaves the moments' range (no LN at large varw) it is NaN (grey).
* Theory, dashed: critsym's token theory (q, p per token and the two-part tangent (j, k)) of
  the block built from ``Residual``, ``LayerNorm``, ``Attention``, ``Linear`` and ``Act``
  (:func:`vit_block`) with **uniform attention** A = 11ᵀ/n; J^{7→8} is the (j, j) entry of the
  block's tangent map at the state after 7 blocks.  The standard regime with σ_QK = 0 equals it.
* Monte Carlo: real torch stacks of that architecture (:func:`vit_stack`) with softmax attention
  as in the paper, and — for the slices — with uniform attention (W_Q = W_K = 0, so the softmax
  is exactly 11ᵀ/n), where the uniform theory is exact up to O(1/d); J^{7→8} by
  :func:`critsym.apjn`, mean ± SE over independent networks.

Claims: pre-LN with μ = 1 is near-critical for every varw; pre-LN with μ < 1 and post-LN are
ordered (J < 1); no LN is chaotic (J > 1) once varw is not small.

**Depth** (labofdoubt/transformers-apjn): a ViT-base-like init (σ_O = σ_V = σ₁ = 0.64·√(3/4),
σ₂ = 2σ₁, uniform attention) with pre-LN, and with erf(x) ("Derf" erf(αx + s) of Chen et al.
2025, arXiv 2512.10938, at its initial α = 1, s = 0, and at α = ½ and 2) in place of
LayerNorm.  J^{0,l} grows as
a power law J ∝ l^b with LayerNorm (q grows ∝ l and each block adds O(1/q)) and as a
stretched exponential log J ≈ a + c·l^β, β ≈ ½, with erf (its Jacobian factor decays only as
q^{-1/2}).  Both forms are fitted (:func:`fit_growth`) to the theory and to the Monte Carlo.

``critsym repro transformer --out docs/figures/transformer_phase.png [--quick]`` writes the phase
figure there and the depth figure beside it (``…_depth.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..stats import line_fit
from ._common import pyplot, save_figure, show
from .transformer_mc import measure_depth, measure_one_block, vit_stack
from .transformer_theory import (
    MEASURED,
    N_BLOCKS,
    N_TOKENS,
    NORMS,
    VIT_SIGMA,
    block_theory,
    standard_block_theory,
    standard_one_block,
    standard_one_block_by_hand,
    theory_one_block,
    theory_run,
    vit_base_depth_theory,
    vit_block,
)

__all__ = ["DEPTH_CURVES", "MEASURED", "N_BLOCKS", "N_TOKENS", "NORMS", "VIT_SIGMA", "GrowthFit",
           "block_theory",
           "depth_growth", "depth_path", "fit_growth", "measure_depth", "measure_one_block",
           "phase_diagrams", "plot_depth", "plot_phase", "run", "standard_block_theory",
           "standard_one_block", "standard_one_block_by_hand", "theory_one_block", "theory_run",
           "vit_base_depth_theory", "vit_block", "vit_stack"]
THEORY_LABEL = ("theory: standard softmax regime, σ_QK = varw (critsym.attention.standard; grey: "
                "logit variance beyond its range); dashed: uniform attention A = 11ᵀ/n")


# ---------------------------------------------------------------- growth-law fits

@dataclass(frozen=True)
class GrowthFit:
    """Two three-parameter fits of log J^{0,l} over ``layers`` (ordinary least squares, or
    weighted by the SE of log J): a power law log J = a + b log(l + l₀) (l₀ ≥ 0 by a grid
    scan) and a stretched exponential log J = a + c l^β (β ∈ [0.01, 1.5] by a grid scan).
    ``rms_*``: the root-mean-square residual of log J (weighted when errors are given);
    ``chi2_*``: χ²/dof with the given errors (NaN without).

    The power law is the β → 0 end of the stretched family (l^β ≈ 1 + β log l), so the fitted β
    decides: :attr:`form` is "power law" for β < 0.15 and "stretched exponential" otherwise."""

    layers: tuple[int, int]
    power_b: float
    power_l0: float
    rms_power: float
    chi2_power: float
    beta: float
    stretched_c: float
    rms_stretched: float
    chi2_stretched: float

    @property
    def form(self) -> str:
        return "power law" if self.beta < 0.15 else "stretched exponential"

    def __repr__(self) -> str:
        return (f"GrowthFit(l={self.layers[0]}..{self.layers[1]}: {self.form}; power law "
                f"b={self.power_b:.3f}, l0={self.power_l0:.3g}, rms={self.rms_power:.2g}; "
                f"stretched β={self.beta:.2f}, rms={self.rms_stretched:.2g})")


def _best_line(xs, y, sig):
    """(index, fit, weighted mean square residual, χ²) of the best of the regressors ``xs``."""
    w = np.ones_like(y) if sig is None else 1.0 / sig**2
    best = None
    for i, x in enumerate(xs):
        f = line_fit(x, y, sigma=sig)
        r = y - f.coef[0] - f.coef[1] * x
        chi2 = float(np.sum(w * r * r))
        if best is None or chi2 < best[3]:
            best = (i, f, chi2 / float(np.sum(w)), chi2)
    return best


def fit_growth(layers, J, se=None) -> GrowthFit:
    """Fit both growth laws (see :class:`GrowthFit`) to J^{0,l} at ``layers`` (≥ 1); ``se``:
    standard errors of J (the fits are then weighted by the SE of log J, se/J)."""
    l = np.asarray(layers, dtype=float)
    y = np.log(np.asarray(J, dtype=float))
    sig = None if se is None else np.maximum(np.asarray(se, float) / np.exp(y), 1e-12)
    dof = len(l) - 3
    l0s = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 200)])
    ip, fp, msp, chip = _best_line([np.log(l + a) for a in l0s], y, sig)
    betas = np.linspace(0.01, 1.5, 150)
    ib, fb, msb, chib = _best_line([l**b for b in betas], y, sig)
    nan = float("nan")
    return GrowthFit((int(l[0]), int(l[-1])), float(fp.coef[1]), float(l0s[ip]),
                     math.sqrt(msp), chip / dof if sig is not None and dof > 0 else nan,
                     float(betas[ib]), float(fb.coef[1]), math.sqrt(msb),
                     chib / dof if sig is not None and dof > 0 else nan)


# ---------------------------------------------------------------- the reproduction

def _settings(quick: bool) -> dict:
    if quick:
        return dict(varws=(0.1, 2.1, 4.1), mus=(0.5, 1.0), dim=32, n_nets=3, slice_nets=3,
                    slice_varws=(0.1, 4.1), slice_mus=(1.0,), depth=12, depth_dim=32,
                    depth_nets=3, depth_n=17, theory_depth=256)
    return dict(varws=tuple(np.round(np.arange(0.1, 4.11, 0.5), 2)),
                mus=tuple(np.round(np.arange(0.1, 1.01, 0.1), 2)), dim=64, n_nets=6, slice_nets=8,
                slice_varws=tuple(np.round(np.arange(0.1, 4.11, 0.5), 2)),
                slice_mus=(1.0, 0.7, 0.4), depth=128, depth_dim=64, depth_nets=8, depth_n=17,
                theory_depth=512)


def phase_diagrams(quick: bool = False, seed: int = 0) -> dict:
    """Theory and Monte Carlo J^{7→8} over the (varw, μ) grid for each norm placement, and the
    slices (softmax and uniform attention Monte Carlo) at a few μ."""
    s = _settings(quick)
    fine_v = np.round(np.arange(0.1, 4.11, 0.1), 2)
    fine_mu = np.round(np.arange(0.1, 1.001, 0.025), 3)
    res = {"varws": list(s["varws"]), "mus": list(s["mus"]), "dim": s["dim"],
           "n_nets": s["n_nets"], "slice_nets": s["slice_nets"], "theory_label": THEORY_LABEL}
    for norm in NORMS:
        th = theory_one_block(norm, fine_mu[:, None], fine_v[None, :])
        std = np.array([[standard_one_block(norm, mu, v) for v in s["varws"]]
                        for mu in s["mus"]])
        mc = np.empty((len(s["mus"]), len(s["varws"]), 2))
        for a, mu in enumerate(s["mus"]):
            for b, v in enumerate(s["varws"]):
                mc[a, b] = measure_one_block(norm, mu, v, dim=s["dim"], n_nets=s["n_nets"],
                                             seed=seed)
        slices = []
        for mu in s["slice_mus"]:
            row = {"mu": mu, "varw": list(s["slice_varws"]),
                   "theory": list(theory_one_block(norm, mu, np.asarray(s["slice_varws"]))),
                   "standard": [standard_one_block(norm, mu, v) for v in s["slice_varws"]]}
            for att in ("softmax", "uniform"):
                ms = [measure_one_block(norm, mu, v, dim=s["dim"], n_nets=s["slice_nets"],
                                        seed=seed + 1, attention=att)
                      for v in s["slice_varws"]]
                row[att] = [m for m, _ in ms]
                row[att + "_se"] = [e for _, e in ms]
            slices.append(row)
        res[norm] = {"theory_grid": th, "theory_varw": fine_v, "theory_mu": fine_mu,
                     "standard_grid": std, "mc": mc[..., 0], "mc_se": mc[..., 1], "slices": slices}
    return res


#: the depth curves: (key, norm, Derf α) — pre-LN, and Derf erf(αx) at α = 1, ½ and 2
DEPTH_CURVES = (("pre", "pre", 1.0), ("derf", "derf", 1.0), ("derf_0.5", "derf", 0.5),
                ("derf_2", "derf", 2.0))


def depth_growth(quick: bool = False, seed: int = 0) -> dict:
    """J^{0,l} vs l for pre-LN and Derf erf(αx) (α ∈ {1, ½, 2}; keys of
    :data:`DEPTH_CURVES`) ViT-base-like stacks: theory to a large depth, Monte Carlo to a
    modest one, both growth laws fitted to each."""
    s = _settings(quick)
    res = {"n": s["depth_n"], "dim": s["depth_dim"], "n_nets": s["depth_nets"]}
    for key, norm, alpha in DEPTH_CURVES:
        th = vit_base_depth_theory(norm, s["theory_depth"], s["depth_n"], alpha)
        m, se = measure_depth(norm, s["depth"], dim=s["depth_dim"], n_nets=s["depth_nets"],
                              seed=seed, n=s["depth_n"], alpha=alpha)
        lo = max(2, s["depth"] // 8)
        layers = np.arange(lo, s["depth"] + 1)
        deep = np.arange(s["theory_depth"] // 16, s["theory_depth"] + 1)
        z = (m[1:] - th[1:len(m)]) / se[1:]
        res[key] = {"alpha": alpha, "theory": th, "mc": m, "mc_se": se,
                     "fit_theory": fit_growth(deep, th[deep]),
                     "fit_theory_mc_range": fit_growth(layers, th[layers]),
                     "fit_mc": fit_growth(layers, m[layers], se[layers]),
                     "z_max": float(np.max(np.abs(z))), "z_last": float(z[-1])}
    return res


def depth_path(out: str | Path) -> Path:
    """Where the depth figure goes: ``<out stem>_depth<suffix>`` beside ``out``."""
    p = Path(out)
    return p.with_name(p.stem + "_depth" + p.suffix)


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Both parts; ``out`` (checked with its ``_depth`` sibling before computing) gets the phase
    figure and the sibling the depth figure."""
    if out is not None:
        from ..cli.paths import check_output_file

        check_output_file(out)
        check_output_file(depth_path(out))
    phase = phase_diagrams(quick, seed)
    rows = []
    for norm in NORMS:
        d = phase[norm]
        for row in d["slices"]:
            for v, st, t, m, e, mu_, eu in zip(row["varw"], row["standard"], row["theory"],
                                               row["softmax"], row["softmax_se"], row["uniform"],
                                               row["uniform_se"], strict=True):
                rows.append((norm, f"mu={row['mu']}", f"varw={v}", f"standard={st:.4f}",
                             f"MC softmax={m:.4f}±{e:.4f}", f"uniform={t:.4f}",
                             f"MC uniform={mu_:.4f}±{eu:.4f}"))
    show("one-block APJN J^{7->8} of a 17-token 10-block ViT-like stack: theory (standard "
         "regime / uniform attention) and Monte Carlo", rows)
    depth = depth_growth(quick, seed)
    rows = []
    for norm, _, _ in DEPTH_CURVES:
        d = depth[norm]
        rows += [(norm, "theory", repr(d["fit_theory"])),
                 (norm, "theory", repr(d["fit_theory_mc_range"])),
                 (norm, "Monte Carlo", repr(d["fit_mc"])),
                 (norm, "Monte Carlo vs theory", f"max |z| = {d['z_max']:.2f}",
                  f"z at l = {len(d['mc']) - 1}: {d['z_last']:+.2f}")]
    show("J^{0,l} vs depth: growth-law fits", rows)
    if out is not None:
        save_figure(plot_phase(phase), out)
        save_figure(plot_depth(depth), str(depth_path(out)))
    return {"phase": phase, "depth": depth}


# ---------------------------------------------------------------- figures

def _cell_edges(centres) -> tuple[float, float]:
    """The outer edges of pcolormesh cells ("nearest" shading) centred on ``centres``."""
    c = np.asarray(centres, dtype=float)
    half = (c[1] - c[0]) / 2 if len(c) > 1 else 0.5
    return float(c[0] - half), float(c[-1] + half)


def plot_phase(res: dict, axes=None):
    """Rows: theory log₁₀ J^{7→8} (standard softmax regime, with the uniform-attention J = 1
    line), Monte Carlo (softmax attention), and slices with error bars (theory lines: standard
    solid, uniform dashed); columns: pre-LN, post-LN, no LN.  Returns the figure."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    if axes is None:
        fig, axes = plt.subplots(3, 3, figsize=(12, 10.5))
    else:
        fig = np.asarray(axes).flat[0].figure
    axes = np.asarray(axes)
    cnorm = TwoSlopeNorm(vcenter=0.0, vmin=-2.0, vmax=2.0)
    titles = {"pre": "pre-LN", "post": "post-LN", "none": "no LN"}
    for c, norm in enumerate(NORMS):
        d = res[norm]
        ax = axes[0, c]
        ax.set_facecolor("0.8")
        im = ax.pcolormesh(res["varws"], res["mus"], np.log10(d["standard_grid"]),
                           cmap="RdBu_r", norm=cnorm, shading="nearest")
        ax.contour(d["theory_varw"], d["theory_mu"], np.log10(d["theory_grid"]), levels=[0.0],
                   colors="k", linewidths=1, linestyles="--")
        ax.set_title(f"{titles[norm]}: theory, standard regime (dashed: uniform J = 1)",
                     fontsize=9)
        ax.set_xlim(*_cell_edges(res["varws"]))
        ax.set_ylim(*_cell_edges(res["mus"]))
        fig.colorbar(im, ax=ax, label="log10 J(7→8)")
        ax = axes[1, c]
        im = ax.pcolormesh(res["varws"], res["mus"], np.log10(np.maximum(d["mc"], 1e-12)),
                           cmap="RdBu_r", norm=cnorm, shading="nearest")
        fig.colorbar(im, ax=ax, label="log10 J(7→8)")
        ax.set_title(f"{titles[norm]}: Monte Carlo (softmax, σ_QK² = varw², d = {res['dim']})",
                     fontsize=9)
        for ax in axes[:2, c]:
            ax.set_xlabel("varw")
            ax.set_ylabel("μ")
        ax = axes[2, c]
        for i, row in enumerate(d["slices"]):
            col = f"C{i}"
            v = np.asarray(row["varw"])
            ax.plot(v, row["standard"], "-", color=col, lw=1.2,
                    label=f"μ={row['mu']}: theory, standard")
            ax.plot(v, row["theory"], "--", color=col, lw=1.0,
                    label="theory, uniform" if i == 0 else None)
            ax.errorbar(v, row["softmax"], row["softmax_se"], fmt="o", color=col, ms=4,
                        capsize=2, label="MC softmax" if i == 0 else None)
            ax.errorbar(v + 0.05, row["uniform"], row["uniform_se"], fmt="s", mfc="none",
                        color=col, ms=4, capsize=2, label="MC uniform" if i == 0 else None)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("varw")
        ax.set_ylabel("J(7→8)")
        ax.legend(fontsize=6)
    fig.suptitle("one-block APJN J(7→8) of a 17-token, 10-block ViT-like stack\n"
                 + res["theory_label"], fontsize=9)
    return fig


def plot_depth(res: dict, ax=None):
    """J^{0,l} vs l (log–log): theory lines and Monte Carlo points for pre-LN and erf."""
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.4))
    else:
        fig = ax.figure
    names = {"pre": "pre-LN", "derf": "Derf erf(x)", "derf_0.5": "Derf erf(x/2)",
             "derf_2": "Derf erf(2x)"}
    for i, (norm, _, _) in enumerate(DEPTH_CURVES):
        if norm not in res:
            continue
        d, col = res[norm], f"C{i}"
        th = d["theory"]
        l_th = np.arange(1, len(th))
        f = d["fit_theory"]
        ax.plot(l_th, th[1:], "-", color=col, lw=1.3,
                label=f"{names[norm]}: theory — best fit {f.form} (β = {f.beta:.2f})")
        l_mc = np.arange(1, len(d["mc"]))
        ax.errorbar(l_mc, d["mc"][1:], d["mc_se"][1:], fmt="o", color=col, ms=3, capsize=2,
                    label=f"{names[norm]}: Monte Carlo (d = {res['dim']}, n = {res['n']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth l (blocks)")
    ax.set_ylabel(r"$J^{0,l}$")
    ax.set_title("ViT-base-like init, uniform attention: LN → power law, Derf erf(αx) → "
                 "stretched exponential", fontsize=8)
    ax.legend(fontsize=6)
    return fig
