r"""Claim 1: LayerNorm on preactivations + residual μ = 1 is critical for every (σ_w, σ_b).

Block h ↦ h + W φ(LN(h)) + b (tanh).  Theory (docs/theory.md#everywhere-critical): K^l = K^0 + lB,
χ_J^l = 1 + A/K^l → 1, J^{0,l} = Γ(l+c+p)Γ(c)/[Γ(c+p)Γ(l+c)] ~ (l+c)^p with p = A/B,
A = σ_w² E_z φ'², B = σ_w² E_z φ² + σ_b², c = K^0/B.  Controls: the same block with μ = 0.7, σ_b = 1
(χ* = μ² + (1 − μ²)A/B ≠ 1) and a residual relu block without LayerNorm
(χ = 1 + σ_w²/2 at every layer: exponential growth).

Printed per (σ_w, σ_b): the theory's χ_J at the last layer and the Monte Carlo one-step APJN
J^{L-1,L} (± SE); the exponent p = A/B against the Monte Carlo log-slope of J^{0,l} in
log(l + c) over the second half of the layers.
"""

from __future__ import annotations

import math

import numpy as np

from .. import derive, mlp_block, simulate
from ._common import log_slope_nets, pyplot, save_figure, show

SAMPLES = [(0.6, 0.0), (1.0, 0.5), (1.6, 1.0), (2.2, 0.3)]


def ab(theory_free, sw, sb):
    """(A, B) from the block's own theory at K → ∞ is not needed: compute E_z φ², E_z φ'²
    of tanh by quadrature (independent of the fold)."""
    from scipy import integrate

    def g(f):
        return integrate.quad(lambda t: f(t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi),
                              -12, 12, limit=200)[0]

    e2 = g(lambda t: math.tanh(t) ** 2)
    d2 = g(lambda t: (1 - math.tanh(t) ** 2) ** 2)
    return sw**2 * d2, sw**2 * e2 + sb**2


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    width, depth, n_nets = (64, 12, 8) if quick else (256, 40, 16)
    samples = SAMPLES[:2] if quick else SAMPLES
    crit = mlp_block("tanh", "pre", True)
    th_c = derive(crit)
    res: dict = {"critical": [], "controls": {}}
    rows = []
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    half = np.arange(depth // 2, depth + 1)
    for k, (sw, sb) in enumerate(samples):
        hp = dict(sigma_w=sw, sigma_b=sb, mu=1.0)
        sim = simulate(crit, width, depth, n_nets=n_nets, n_probes=4, c0=None, l=depth,
                       seed=seed + k, **hp)
        th = th_c.run(depth, K0=sim.K0, **hp)
        A, B = ab(None, sw, sb)
        c = sim.K0 / B
        p_mc, p_se = log_slope_nets(sim.J_nets, half, c)
        one, one_se = float(sim.J_to[depth - 1]), float(sim.J_to_se[depth - 1])
        d = dict(sigma_w=sw, sigma_b=sb, p_theory=A / B, p_mc=p_mc, p_mc_se=p_se,
                 chi_last_theory=float(th.chi[-1]), chi_last_mc=one, chi_last_mc_se=one_se,
                 J_last_theory=float(th.J[-1]), J_last_mc=float(sim.J[-1]),
                 J_last_mc_se=float(sim.J_se[-1]))
        res["critical"].append(d)
        rows.append((f"σ_w={sw:<4} σ_b={sb:<4}", f"χ^L theory {d['chi_last_theory']:.4f}",
                     f"MC {one:.4f}±{one_se:.4f}", f"p=A/B {A / B:.4f}",
                     f"MC slope {p_mc:.4f}±{p_se:.4f}"))
        line = ax[0].loglog(th.layers[1:] + c, th.J[1:], "-", lw=1)[0]
        ax[0].errorbar(sim.layers[1:] + c, sim.J[1:], sim.J_se[1:], fmt="o", ms=3,
                       color=line.get_color(), label=f"σ_w={sw}, σ_b={sb}: p={A / B:.3f}")
    show(f"LN-pre tanh, μ=1, width {width}, depth {depth}, {n_nets} nets: critical everywhere",
         rows)
    ax[0].set(xlabel="l + K⁰/B", ylabel="J^{0,l}", title="LN-pre + μ=1: power laws (lines: theory)")
    ax[0].legend(fontsize=7)

    controls = {
        "ln_pre_mu0.7": (mlp_block("tanh", "pre", 0.7), dict(sigma_w=1.0, sigma_b=1.0)),
        "no_ln_relu_mu1": (mlp_block("relu", None, 1), dict(sigma_w=1.0, sigma_b=0.0)),
    }
    rows = []
    for k, (name, (arch, hp)) in enumerate(controls.items()):
        sim = simulate(arch, width, depth, n_nets=n_nets, n_probes=4, c0=None, l=depth,
                       seed=seed + 100 + k, **hp)
        th = derive(arch).run(depth, K0=sim.K0, **hp)
        one, one_se = float(sim.J_to[depth - 1]), float(sim.J_to_se[depth - 1])
        res["controls"][name] = dict(chi_last_theory=float(th.chi[-1]), chi_last_mc=one,
                                     chi_last_mc_se=one_se, J_last_theory=float(th.J[-1]),
                                     J_last_mc=float(sim.J[-1]), J_last_mc_se=float(sim.J_se[-1]))
        rows.append((name, f"χ^L theory {th.chi[-1]:.4f}", f"MC {one:.4f}±{one_se:.4f}",
                     f"J^(0,L) theory {th.J[-1]:.4g}", f"MC {sim.J[-1]:.4g}±{sim.J_se[-1]:.2g}"))
        line = ax[1].semilogy(th.layers, th.J, "-")[0]
        ax[1].errorbar(sim.layers, sim.J, sim.J_se, fmt="o", ms=3, color=line.get_color(),
                       label=f"{name}: χ*={th.chi[-1]:.3f}")
    show("controls (not critical: χ* ≠ 1, exponential)", rows)
    ax[1].set(xlabel="l", ylabel="J^{0,l}", title="controls: μ<1 or no LayerNorm")
    ax[1].legend(fontsize=7)
    save_figure(fig, out)
    return res
