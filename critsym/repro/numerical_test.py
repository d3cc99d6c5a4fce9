r"""Claim 4: the cheap numerical criticality test on a torch model.

"User model": a plain ``nn.Sequential`` of erf blocks x ↦ W erf(x) + b (σ_b = 0.5), built by
:func:`critsym.to_torch_model` for a range of σ_w.  For each σ_w we measure, with
:func:`critsym.apjn` on the torch model (no critsym structure used), the one-step APJN deep in the
network, J^{L-3,L-2} (the paper's proxy for χ*), over independent networks and inputs; a
weighted linear fit of the points around the crossing gives the σ_w where it equals 1, with a
delta-method standard error.  The theory's critical point is the root of χ*(σ_w) = 1 of
``critsym.derive`` of the model imported back with :func:`critsym.from_torch`;
docs/theory.md#critical-lines gives σ_w = 1.3713304703 at σ_b = 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

from .. import apjn, derive, from_torch, mlp_block, to_torch_model
from ..stats import line_fit, mean_se
from ._common import pyplot, save_figure, show

SB = 0.5
ERF_CRITICAL_SIGMA_W = 1.3713304703


def measure(sw, width, depth, n_nets, n_probes, batch, seed):
    """Mean and SE over ``n_nets`` independent networks (fresh seeds for every call, so the
    points of a scan are independent)."""
    vals = []
    for i in range(n_nets):
        s = seed * 100_003 + i
        model = to_torch_model(mlp_block("erf"), width, depth, seed=s, sigma_w=sw, sigma_b=SB)
        g = torch.Generator().manual_seed(s + 7919)
        x = torch.randn(batch, width, generator=g, dtype=torch.float64)
        r = apjn(model, x, [str(depth - 3), str(depth - 2)], n_probes=n_probes, seed=i)
        vals.append(float(r.J[-1]))
    m, se = mean_se(vals)
    return float(m), float(se)


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    if quick:
        width, depth, n_nets, n_probes, batch = 128, 10, 8, 8, 4
        grid = np.linspace(1.2, 1.55, 6)
    else:
        width, depth, n_nets, n_probes, batch = 512, 24, 8, 16, 8
        grid = np.linspace(1.0, 1.8, 17)
    chi = np.array([measure(s, width, depth, n_nets, n_probes, batch, seed * 1000 + k)
                    for k, s in enumerate(grid)])
    m, se = chi[:, 0], chi[:, 1]
    # crossing: weighted linear fit over the 4 points nearest to χ = 1
    near = np.argsort(np.abs(m - 1))[:4]
    fit = line_fit(grid[near], m[near], sigma=se[near])
    a, b = fit.coef
    cov = fit.cov
    sc = (1 - a) / b
    grad = np.array([-1 / b, -(1 - a) / b**2])  # d sc / d(a, b)
    sc_se = float(math.sqrt(grad @ cov @ grad))
    # theory: import one model back, derive, root-find χ*(σ_w) = 1
    imp = from_torch(to_torch_model(mlp_block("erf"), width, depth, seed=seed,
                                    sigma_w=float(grid[0]), sigma_b=SB))
    th = derive(imp.block)

    def chi_star(s):
        return float(th.run(400, K0=1.0, sigma_w=s, sigma_b=SB).chi[-1])

    s_th = optimize.brentq(lambda s: chi_star(s) - 1, 1.0, 2.0, xtol=1e-12)
    res = dict(sigma_w_critical_mc=float(sc), sigma_w_critical_mc_se=sc_se,
               sigma_w_critical_theory=s_th, sigma_w_critical_closed_form=ERF_CRITICAL_SIGMA_W,
               grid=grid.tolist(),
               chi_mc=m.tolist(), chi_mc_se=se.tolist(),
               chi_theory=[chi_star(s) for s in grid], width=width, depth=depth,
               imported_block=repr(imp.block))
    rows = [(f"σ_w={s:.3f}", f"J^(L-3,L-2) = {mm:.4f} ± {ss:.4f}", f"theory χ* {t:.4f}")
            for s, mm, ss, t in zip(grid, m, se, res["chi_theory"], strict=True)]
    rows.append((f"critical σ_w: MC {sc:.4f} ± {sc_se:.4f}", f"theory {s_th:.6f}",
                 f"closed form {ERF_CRITICAL_SIGMA_W}", f"z = {(sc - s_th) / sc_se:+.2f}"))
    show(f"erf MLP, σ_b={SB}, width {width}, depth {depth}, {n_nets} nets × {batch} inputs", rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    fine = np.linspace(grid[0], grid[-1], 60)
    ax.plot(fine, [chi_star(s) for s in fine], "-", label="theory χ*")
    ax.errorbar(grid, m, se, fmt="o", ms=4, label="torch model: J^{L-3,L-2}")
    ax.axhline(1, color="k", lw=0.5)
    ax.axvline(s_th, ls=":", label=f"theory critical σ_w={s_th:.4f}")
    ax.axvspan(sc - sc_se, sc + sc_se, alpha=0.2, color="C1", label=f"MC {sc:.3f}±{sc_se:.3f}")
    ax.set(xlabel="σ_w", ylabel="one-step APJN", title=f"numerical criticality test (σ_b={SB})")
    ax.legend(fontsize=8)
    save_figure(fig, out)
    return res
