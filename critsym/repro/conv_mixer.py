r"""Claim 3: a convolutional ResNet and an MLP-Mixer at initialization — J^{0,l} vs l for
several initializations, theory lines over Monte Carlo points.

ResNet block (the paper's): LN → relu → conv3×3 → LN → relu → conv3×3, + μ·identity, circular
padding, σ_w² = 2m (Kaiming × multiplier m), σ_b = 0, on H×W×C channels-last maps.
Mixer block: token MLP then channel MLP (gelu), each after LayerNorm over channels and inside a
residual with μ, σ_b = 0, on T×C token maps.  Finite-width corrections are O(1/N) and
larger at small K (μ < 1, small σ_w): e.g. σ_w² = 1, μ = 0.5 at 64 × 64 gives J^{0,2} ≈ 8 %
above the infinite-width value, halving from 32 to 64 for the channel sub-block alone; at
σ_w² = 2, μ = 1 the excess of J^{0,2} is +13.6 % at 32, +2.5 % at 64, +0.3 % at 128.  The theory
is critsym.derive of the same blocks (the Mixer's includes the per-token offset O_T).  Each
Mixer sub-block's χ exceeds the N → ∞ value by ≈ 2.4/N (tanh, σ_w² = 3, μ = 0.5, measured at
N = 32, 64, 128), which compounds over depth: deep μ < 1 runs in the chaotic phase need large N.
Printed: J^{0,L} theory vs Monte Carlo ± SE.
"""

from __future__ import annotations

import math

import numpy as np

from .. import derive, mixer_block, resnet_block, simulate_maps
from ._common import pyplot, save_figure, show


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    if quick:
        img, tok, depth, mdepth, n_nets = (6, 6, 32), (48, 48), 3, 2, 6
        ms, mix = (0.5, 2.0), ((2.0, 1.0), (3.0, 0.5))
    else:
        img, tok, depth, mdepth, n_nets = (8, 8, 96), (96, 96), 10, 6, 12
        ms, mix = (0.25, 1.0, 2.0), ((2.0, 1.0), (1.0, 1.0), (3.0, 0.5))
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    res: dict = {"resnet": [], "mixer": []}
    rows = []
    rn = resnet_block()
    th_rn = derive(rn)
    for k, m in enumerate(ms):
        hp = dict(sigma_w=math.sqrt(2 * m), sigma_b=0.0, mu=1.0)
        sim = simulate_maps(rn, img, depth, n_nets=n_nets, n_probes=4, seed=seed + k, **hp)
        th = th_rn.run(depth, K0=1.0, **hp)
        res["resnet"].append(_entry(m, sim, th))
        rows.append((f"ResNet m={m}", *_fmt(sim, th)))
        line = ax[0].semilogy(th.layers, th.J, "-")[0]
        ax[0].errorbar(sim_layers(sim), sim.J, sim.J_se, fmt="o", ms=3, color=line.get_color(),
                       label=f"σ_w²={2 * m:g}")
    ax[0].set(xlabel="block l", ylabel="J^{0,l}", title=f"conv ResNet {img} (lines: theory)")
    ax[0].legend(fontsize=8)
    mb = mixer_block()
    th_mb = derive(mb)
    for k, (sw2, mu) in enumerate(mix):
        hp = dict(sigma_w=math.sqrt(sw2), sigma_b=0.0, mu=mu)
        sim = simulate_maps(mb, tok, mdepth, n_nets=n_nets, n_probes=4, seed=seed + 50 + k,
                            **hp)
        th = th_mb.run(mdepth, K0=1.0, **hp)
        e = _entry(sw2, sim, th)
        e.update(mu=mu, O_T_last_theory=float(th.O_T[-1]), O_T_last_mc=float(sim.O_T[-1]),
                 O_T_last_mc_se=float(sim.O_T_se[-1]))
        res["mixer"].append(e)
        rows.append((f"Mixer σ_w²={sw2} μ={mu}", *_fmt(sim, th),
                     f"O_T^L theory {th.O_T[-1]:.4f} MC {sim.O_T[-1]:.4f}±{sim.O_T_se[-1]:.4f}"))
        line = ax[1].semilogy(th.layers, th.J, "-")[0]
        ax[1].errorbar(sim_layers(sim), sim.J, sim.J_se, fmt="o", ms=3, color=line.get_color(),
                       label=f"σ_w²={sw2:g}, μ={mu:g}")
    ax[1].set(xlabel="Mixer block l", ylabel="J^{0,l}", title=f"MLP-Mixer {tok} (lines: theory)")
    ax[1].legend(fontsize=8)
    show(f"J^(0,L): conv ResNet {img} depth {depth}, Mixer {tok} depth {mdepth}, {n_nets} nets",
         rows)
    save_figure(fig, out)
    return res


def sim_layers(sim):
    return np.arange(sim.J.shape[0])


def _entry(param, sim, th):
    return dict(param=param, J_theory=th.J.tolist(), J_mc=sim.J.tolist(), J_mc_se=sim.J_se.tolist(),
                K_theory=th.K.tolist(), K_mc=sim.K.tolist(), K_mc_se=sim.K_se.tolist())


def _fmt(sim, th):
    z = (sim.J[-1] - th.J[-1]) / sim.J_se[-1]
    return (f"J theory {th.J[-1]:.4g}", f"MC {sim.J[-1]:.4g}±{sim.J_se[-1]:.2g}", f"z={z:+.2f}")
