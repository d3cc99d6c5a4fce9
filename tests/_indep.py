"""Independent reference computations (scipy only, no critsym) shared by the criticality tests."""

from __future__ import annotations

import numpy as np
from scipy import integrate, optimize


def gauss_E(f, K: float) -> float:
    """E_{z~N(0,K)}[f(z)] by scipy.integrate.quad on the real line."""
    if K == 0:
        return float(f(0.0))
    s = np.sqrt(K)
    val, _ = integrate.quad(lambda x: f(s * x) * np.exp(-x * x / 2), -np.inf, np.inf,
                            epsabs=1e-14, epsrel=1e-13, limit=400)
    return val / np.sqrt(2 * np.pi)


def tanh2(z):
    return np.tanh(z) ** 2


def sech4(z):
    return (1 - np.tanh(z) ** 2) ** 2


def tanh_critical(sigma_b: float) -> tuple[float, float]:
    """(σ_w, K*) on the tanh critical line: σ_w² = 1/E_K sech⁴, σ_b² = K − σ_w² E_K tanh²."""
    def h(K):
        return K - gauss_E(tanh2, K) / gauss_E(sech4, K) - sigma_b**2

    K = optimize.brentq(h, 1e-6, 50.0, xtol=1e-15, rtol=1e-15)
    return float(1 / np.sqrt(gauss_E(sech4, K))), float(K)


def erf_critical(sigma_b: float) -> tuple[float, float]:
    """(σ_w, K*) on the erf critical line from F = (2/π)σ_w² asin(2K/(1+2K)) + σ_b² and
    χ = 4σ_w²/(π√(1+4K)) = 1."""
    def sw2(K):
        return np.pi / 4 * np.sqrt(1 + 4 * K)

    def h(K):
        return K - 2 / np.pi * sw2(K) * np.arcsin(2 * K / (1 + 2 * K)) - sigma_b**2

    K = optimize.brentq(h, 1e-12, 1e4, xtol=1e-15, rtol=1e-15)
    return float(np.sqrt(sw2(K))), float(K)


def tanh_fixed_point(sigma_w: float, sigma_b: float) -> float:
    """K* of the tanh map by brentq (the stable positive root, or 0)."""
    def g(K):
        return sigma_w**2 * gauss_E(tanh2, K) + sigma_b**2 - K

    if g(1e-13) <= 0:
        return 0.0
    return float(optimize.brentq(g, 1e-13, 1e3, xtol=1e-15, rtol=1e-14))
