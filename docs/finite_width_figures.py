"""Regenerate the figures of docs/finite_width.md (a minute on one CPU core).

    python docs/finite_width_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from critsym.finite_width import ModelSpec, log_norm, plot_log_norm, simulate_log_norm  # noqa: E402
from critsym.parameterization import (  # noqa: E402
    parameterization,
    plot_one_step,
    simulate_one_step,
)

FIG = ROOT / "docs" / "figures"


def main() -> None:
    torch.set_num_threads(1)
    FIG.mkdir(parents=True, exist_ok=True)
    n, d = 64, 64
    spec = ModelSpec("mlp", 2.0)
    s = simulate_log_norm(spec, d, n, n_nets=1500, seed=0, method="torch")
    plot_log_norm(s, log_norm(spec, d, n, order="exact"), FIG / "finite_width_mlp.png")
    spec = ModelSpec("resnet", 1.0)
    s = simulate_log_norm(spec, d, n, n_nets=20000, seed=0, method="exact")
    plot_log_norm(s, log_norm(spec, d, n, order="1/n"), FIG / "finite_width_resnet.png")
    res = [simulate_one_step(parameterization(nm, 6), seeds=8) for nm in ("SP", "NTK", "muP")]
    plot_one_step(res, FIG / "parameterization_delta_h.png", "delta_h", layer=-1)
    ip = [simulate_one_step(parameterization("IP", k), seeds=8) for k in (3, 4, 6)]
    for r, k in zip(ip, (3, 4, 6), strict=True):
        r.param = type(r.param)(r.param.a, r.param.b, r.param.c, name=f"IP, {k} layers")
    plot_one_step(ip, FIG / "parameterization_ip_dw.png", "dW", layer=1)


if __name__ == "__main__":
    main()
