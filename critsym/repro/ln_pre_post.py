r"""Claim 2: LayerNorm on preactivations vs on activations — different exponents and critical
points, side by side.

(a) relu, μ = 1, (σ_w, σ_b) = (1.5, 0.5): J^{0,l} ~ l^p with
    p_pre = σ_w²/(σ_w² + 2σ_b²) (LN → φ → W) and p_post = σ_w²/((1 − 1/π)(σ_w² + σ_b²))
    (φ → LN → W) (docs/theory.md#ln-post-and-plain-residual); the theory's asymptotic
    log-slope and the Monte Carlo log-slope are compared with these formulas.
(b) tanh, μ = 0.9, σ_b = 0.3: χ* = lim χ_J^l as a function of σ_w; the critical σ_w (χ* = 1)
    differs: LN-pre has χ* = μ² + (1 − μ²)A/B, critical at σ_w = σ_b/√(E_zφ'² − E_zφ²);
    LN-post's is found by root finding on the theory.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from .. import derive, mlp_block, simulate
from ._common import fit_slope, log_slope_nets, pyplot, save_figure, show

SW, SB = 1.5, 0.5
TANH_D2_MINUS_E2 = 0.46440290 - 0.39429449  # docs/theory.md#standard-normal-moments (tanh)


def chi_star(theory, sw, sb, mu, depth=300):
    r = theory.run(depth, K0=1.0, sigma_w=sw, sigma_b=sb, mu=mu)
    return float(r.chi[-1])


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    width, depth, n_nets = (64, 12, 8) if quick else (256, 40, 16)
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    res: dict = {}
    rows = []
    formulas = {"pre": SW**2 / (SW**2 + 2 * SB**2),
                "post": SW**2 / ((1 - 1 / math.pi) * (SW**2 + SB**2))}
    for k, ln in enumerate(("pre", "post")):
        arch = mlp_block("relu", ln, True)
        hp = dict(sigma_w=SW, sigma_b=SB, mu=1.0)
        th = derive(arch)
        n_long = 8000 if quick else 20000
        long = th.run(n_long, K0=1.0, **hp)
        L = np.arange(n_long // 2, n_long + 1)
        p_th = fit_slope(np.log(L), np.log(long.J[L]))[0]
        sim = simulate(arch, width, depth, n_nets=n_nets, n_probes=4, c0=None,
                       seed=seed + k, **hp)
        short = th.run(depth, K0=sim.K0, **hp)
        half = np.arange(depth // 2, depth + 1)
        p_mc, p_se = log_slope_nets(sim.J_nets, half)
        p_th_half = fit_slope(np.log(half), np.log(short.J[half]))[0]
        res[ln] = dict(p_formula=formulas[ln], p_theory_asymptotic=p_th,
                       p_theory_window=p_th_half, p_mc_window=p_mc, p_mc_se=p_se,
                       J_last_theory=float(short.J[-1]), J_last_mc=float(sim.J[-1]),
                       J_last_mc_se=float(sim.J_se[-1]))
        rows.append((f"LN-{ln:<4}", f"p formula {formulas[ln]:.4f}",
                     f"theory slope (l={n_long // 2}..{n_long}) {p_th:.4f}",
                     f"window l={half[0]}..{depth}: theory {p_th_half:.4f}",
                     f"MC {p_mc:.4f}±{p_se:.4f}"))
        line = ax[0].loglog(short.layers[1:], short.J[1:], "-")[0]
        ax[0].errorbar(sim.layers[1:], sim.J[1:], sim.J_se[1:], fmt="o", ms=3,
                       color=line.get_color(), label=f"LN-{ln}: p→{formulas[ln]:.3f}")
    show(f"relu, μ=1, σ_w={SW}, σ_b={SB}: exponents (width {width}, {n_nets} nets)", rows)
    ax[0].set(xlabel="l", ylabel="J^{0,l}", title="relu, μ=1: LN-pre vs LN-post (lines: theory)")
    ax[0].legend(fontsize=8)

    mu, sb = 0.9, 0.3
    sws = np.linspace(0.2, 3.0, 15 if quick else 57)
    crit = {}
    for ln in ("pre", "post"):
        th = derive(mlp_block("tanh", ln, True))
        cs_ = [chi_star(th, s, sb, mu) for s in sws]
        ax[1].plot(sws, cs_, label=f"LN-{ln}")
        def f(s, th=th):
            return chi_star(th, s, sb, mu) - 1.0

        crit[ln] = optimize.brentq(f, 0.2, 3.0, xtol=1e-10)
        ax[1].axvline(crit[ln], ls=":", color=ax[1].lines[-1].get_color())
    pre_formula = sb / math.sqrt(TANH_D2_MINUS_E2)
    res["critical_sigma_w"] = dict(pre=crit["pre"], post=crit["post"], pre_formula=pre_formula,
                                   mu=mu, sigma_b=sb)
    show(f"tanh, μ={mu}, σ_b={sb}: critical σ_w (χ*=1)",
         [(f"LN-pre  {crit['pre']:.6f}", f"formula σ_b/√(E φ'²−E φ²) = {pre_formula:.6f}"),
          (f"LN-post {crit['post']:.6f}",)])
    ax[1].axhline(1, color="k", lw=0.5)
    ax[1].set(xlabel="σ_w", ylabel="χ*", title=f"tanh, μ={mu}, σ_b={sb}: critical points")
    ax[1].legend()
    save_figure(fig, out)
    return res
