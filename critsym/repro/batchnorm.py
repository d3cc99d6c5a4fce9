r"""BatchNorm: per-layer gradient growth vs batch size, theory and simulation.

For the MLP block BatchNorm(B) → φ → Linear the whole-batch APJN grows by λ(B) per layer for
every σ_w, σ_b (:mod:`critsym.batchnorm.theory`); as B → ∞ it tends to E φ'(z)²/Var φ(z), the
value the fold derives for ``BatchNorm()``.  For each activation and batch size the Monte Carlo
estimate is the per-network growth (J^{0,L}/J^{0,1})^{1/(L−1)} (mean ± SE over networks) at
each width, extrapolated in 1/N (:func:`critsym.torch.validate.extrapolate`); the B → ∞ point
extrapolates the large-batch estimates once more, linearly in 1/B.

``python -m critsym.repro batchnorm --out docs/figures/batchnorm_growth.png [--quick]``.
"""

from __future__ import annotations

import numpy as np

from ..batchnorm.simulate import simulate_batch
from ..batchnorm.theory import growth_rate
from ..ops import Act, Linear
from ..ops.batchnorm import BatchNorm
from ..stats import mean_se
from ..torch.validate import extrapolate
from ._common import pyplot, save_figure, show

ACTS = ("relu", "tanh", "identity")


def net_growth(sim) -> tuple[float, float]:
    """Mean ± SE over networks of (J^{0,L}/J^{0,1})^{1/(L−1)}."""
    L = sim.depth
    g = (sim.J_nets[L] / sim.J_nets[1]) ** (1.0 / (L - 1))
    m, se = mean_se(g)
    return float(m), float(se)


def measured_growth(act: str, B: int, widths, depth: int, n_nets: int, seed: int,
                    infinite: bool = False) -> tuple[float, float]:
    """The 1/N-extrapolated per-layer growth of BN(B) → φ → W (``infinite``: BatchNorm()
    simulated at batch B)."""
    arch = (BatchNorm() if infinite else BatchNorm(B)) >> Act(act) >> Linear()
    ms, ses = [], []
    for i, w in enumerate(widths):
        sim = simulate_batch(arch, w, depth, B, n_nets=n_nets, seed=seed + 101 * i + B,
                             sigma_w=1.0, sigma_b=0.2)
        m, se = net_growth(sim)
        ms.append(m)
        ses.append(se)
    ext, ext_se, _ = extrapolate(widths, ms, ses)
    return ext, ext_se


def run(quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    widths = (128, 256) if quick else (512, 1024)
    batches = (4, 8, 16, 64)
    large = (64, 128) if quick else (64, 128, 256)
    depth = 4
    n_nets = 12 if quick else 32
    rows, res = [], {}
    for act in ACTS:
        entry = {"B": [], "theory": [], "mc": [], "se": [], "z": []}
        for B in batches:
            th = growth_rate(act, B)
            m, se = measured_growth(act, B, widths, depth, n_nets, seed)
            for k, v in zip(("B", "theory", "mc", "se", "z"), (B, th, m, se, (m - th) / se),
                            strict=True):
                entry[k].append(v)
            rows.append((act, B, f"{th:.5f}", f"{m:.5f} ± {se:.5f}", f"z={(m - th) / se:+.2f}"))
        # B -> infinity: BatchNorm() at large batches, extrapolated linearly in 1/B
        lm = [measured_growth(act, B, widths, depth, n_nets, seed, infinite=True)
              for B in large]
        inf, inf_se, _ = extrapolate(large, [v[0] for v in lm], [v[1] for v in lm])
        th_inf = growth_rate(act, None)
        entry.update(inf_theory=th_inf, inf_mc=inf, inf_se=inf_se, inf_z=(inf - th_inf) / inf_se)
        rows.append((act, "inf", f"{th_inf:.5f}", f"{inf:.5f} ± {inf_se:.5f}",
                     f"z={(inf - th_inf) / inf_se:+.2f}"))
        res[act] = entry
    show("BatchNorm MLP: per-layer APJN growth lambda(B), theory vs Monte Carlo (N -> inf)",
         rows)
    fig = plot(res)
    save_figure(fig, out)
    return res


def plot(res: dict, ax=None):
    """λ(B) vs B: theory lines, the B → ∞ asymptotes, Monte Carlo points; returns the figure."""
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 4.0))
    else:
        fig = ax.figure
    Bs = np.unique(np.round(np.geomspace(4, 2048, 60)).astype(int))
    for i, (act, e) in enumerate(res.items()):
        col = f"C{i}"
        ax.plot(Bs, [growth_rate(act, int(B)) for B in Bs], "-", color=col, lw=1.4,
                label=f"{act}: theory")
        ax.axhline(e["inf_theory"], color=col, ls=":", lw=1)
        ax.errorbar(e["B"], e["mc"], e["se"], fmt="o", color=col, ms=4, capsize=2,
                    label=f"{act}: Monte Carlo")
        ax.errorbar([3000], [e["inf_mc"]], [e["inf_se"]], fmt="s", mfc="none", color=col,
                    ms=5, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("batch size B  (open squares: B → ∞ extrapolation; dotted: E φ'²/Var φ)")
    ax.set_ylabel("per-layer gradient growth λ(B)")
    ax.set_title("BatchNorm → φ → Linear: gradient growth vs batch size", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def add_parser(subparsers) -> None:
    """Register ``batchnorm`` (this reproduction) on an argparse ``subparsers`` object."""
    p = subparsers.add_parser("batchnorm", help="per-layer gradient growth vs batch size, "
                              "theory and simulation")
    p.add_argument("--out", default="docs/figures/batchnorm_growth.png")
    p.add_argument("--quick", action="store_true", help="small widths (CI settings)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: run(quick=a.quick, out=a.out, seed=a.seed))
