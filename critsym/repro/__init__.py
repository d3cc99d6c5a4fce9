"""Executable reproductions of the partial-Jacobian paper's claims (Doshi, He, Gromov 2021).

``python -m critsym.repro <name> --out fig.png [--quick] [--seed N]`` writes a figure and prints
the numbers it asserts; each ``run(quick, out, seed)`` returns them as a dict.

* ``ln-critical``  — LayerNorm on preactivations + μ = 1 is critical for every (σ_w, σ_b):
  χ_J^l → 1 and J^{0,l} ~ l^{A/B}; without LayerNorm, or with μ < 1, it is not;
* ``ln-pre-post``  — LayerNorm on preactivations vs on activations: different exponents and
  critical points, side by side;
* ``conv-mixer``   — a convolutional ResNet and an MLP-Mixer: J^{0,l} vs l for several
  initializations, theory lines over Monte Carlo points;
* ``numerical-test`` — the cheap numerical criticality test on a torch model: scan σ_w, measure
  the one-step APJN deep in the network, pick the σ_w where it crosses 1, compare with theory;
* ``batchnorm``    — per-layer gradient growth of a BatchNorm MLP vs batch size, theory and
  simulation (B = 4 … 64 and B → ∞);
* ``attention-standard`` — standard softmax attention (1/√d_k logits): theory vs Monte Carlo of
  q, p, j, k over σ_QK and n, for one layer, one and four pre-LN blocks;
* ``transformer``  — one-block APJN phase diagrams of a ViT-like stack (pre-LN, post-LN, no LN),
  theory beside Monte Carlo, and J^{0,l} vs depth: power law with LayerNorm, stretched
  exponential with erf ("Derf").
"""

from __future__ import annotations

import importlib

REPROS = {
    "ln-critical": "critsym.repro.ln_critical",
    "ln-pre-post": "critsym.repro.ln_pre_post",
    "conv-mixer": "critsym.repro.conv_mixer",
    "numerical-test": "critsym.repro.numerical_test",
    "batchnorm": "critsym.repro.batchnorm",
    "attention-standard": "critsym.repro.attention_standard",
    "transformer": "critsym.repro.transformer",
}


def run(name: str, quick: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Run one reproduction by name (see the module docstring)."""
    from ..errors import CritsymError

    if name not in REPROS:
        raise CritsymError(f"unknown reproduction {name!r}; choose one of {sorted(REPROS)}")
    return importlib.import_module(REPROS[name]).run(quick=quick, out=out, seed=seed)
