r"""An independent reference for pre-LN transformer blocks with uniform or deterministic
attention and a ReLU MLP (μ = 1, no biases), in the exchangeable token state (q, p) with the
two-part tangent (j, k); written from the closed forms, not from critsym's fold.

Per block, attention sub-block h ↦ h + W_O A W_V LN(h), then MLP sub-block
h ↦ h + W₂ relu(W₁ LN(h)), with σ_OV = σ_O σ_V and mlp = σ₁² σ₂²:

* LN'd tokens: q̃ = 1, cross-token correlation ρ = p/q; tangent factors q̂ = p̂ = 1/q;
* attention matrix: uniform A = 11ᵀ/n; deterministic A = softmax(β G) with
  A_aa = 1/(1 + (n−1)e^{−β(1−ρ)}), A_ab = (1 − A_aa)/(n − 1);
  D = Σ_c A_ac², X = Σ_c A_ac A_bc (a ≠ b);
* attention: q += σ_OV²(ρ + (1−ρ)D), p += σ_OV²(ρ + (1−ρ)X); with κ = k n/(n−1) the per-pair
  overlap, j += σ_OV²(D j + (1−D) κ)/q, k += σ_OV² (n−1)/n · (X j + (1−X) κ)/q
  (uniform: j' = (1 + σ_OV²/(nq)) j + σ_OV² k/q, k' = (1 + σ_OV²(n−1)/(nq)) k
  + σ_OV²(n−1)/(n² q) j);
* MLP at ρ = p/q: q += mlp/2, p += mlp·κ₁(ρ), κ₁(ρ) = (√(1−ρ²) + ρ(π − arccos ρ))/(2π);
  j ·= 1 + mlp/(2q), k ·= 1 + mlp·κ₀(ρ)/q, κ₀(ρ) = ¼ + arcsin(ρ)/(2π).
"""

import math
from dataclasses import dataclass

import numpy as np


def mixing_moments(regime: str, n: int, rho: float, beta: float) -> tuple[float, float]:
    """(D, X) of the attention matrix at LN'd token correlation ρ."""
    if regime == "uniform":
        return 1.0 / n, 1.0 / n
    a = 1.0 / (1.0 + (n - 1) * math.exp(-beta * (1.0 - rho)))
    b = (1.0 - a) / (n - 1)
    return a * a + (n - 1) * b * b, 2 * a * b + (n - 2) * b * b


def kappa1(rho: float) -> float:
    return (math.sqrt(1 - rho * rho) + rho * (math.pi - math.acos(rho))) / (2 * math.pi)


def kappa0(rho: float) -> float:
    return 0.25 + math.asin(rho) / (2 * math.pi)


@dataclass
class Trajectory:
    K: np.ndarray
    O_C: np.ndarray
    J: np.ndarray
    k: np.ndarray
    naive_J: np.ndarray  # product of the per-block χ = M[0, 0] (the j → j factor)


def pre_ln_run(depth: int, n: int, sigma_ov: float, mlp: float, regime: str = "uniform",
               beta: float = 0.0, q0: float = 1.0, p0: float = 0.0) -> Trajectory:
    q, p, j, k, naive = q0, p0, 1.0, 0.0, 1.0
    out = [(q, p, j, k, naive)]
    s2 = sigma_ov**2
    for _ in range(depth):
        rho = p / q
        D, X = mixing_moments(regime, n, rho, beta)
        kap = k * n / (n - 1)
        chi_att = 1 + s2 * D / q
        j, k = (j + s2 * (D * j + (1 - D) * kap) / q,
                k + s2 * (n - 1) / n * (X * j + (1 - X) * kap) / q)
        q, p = q + s2 * (rho + (1 - rho) * D), p + s2 * (rho + (1 - rho) * X)
        rho = p / q
        chi_mlp = 1 + mlp / (2 * q)
        j, k = j * chi_mlp, k * (1 + mlp * kappa0(rho) / q)
        q, p = q + mlp / 2, p + mlp * kappa1(rho)
        naive *= chi_att * chi_mlp
        out.append((q, p, j, k, naive))
    a = np.array(out)
    return Trajectory(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])
