r"""Per-layer laws of the log-norm increments, as pure functions of numbers.

Observable: L_d = ln(|x^d|^2 / |x^0|^2) for x^0 ~ N(0, I_n), no biases, positively 1-homogeneous
activations.  Since the weights of different layers are independent, x^{l+1} given x^l is
Gaussian, and
every law below follows from that conditional Gaussianity.

MLP  x^{l+1} = W phi(x^l), W ~ N(0, c/n), phi = leaky-relu with slope alpha (alpha = 0: relu).
    Exact: L_d is a sum of d i.i.d. increments ln((c/n) Y), Y = chi^2_K + alpha^2 chi^2_{n-K},
    K ~ Bin(n, 1/2).  relu: E ln chi^2_K = ln 2 + psi(K/2), Var = psi'(K/2) (conditioned on K >= 1;
    all units die with probability 2^{-n} per layer and the log-norm is then -inf).
    leaky: Y = chi^2_n * (alpha^2 + (1 - alpha^2) U), U ~ Beta(K/2, (n-K)/2) independent of chi^2_n.

Balanced ResNet  x' = x + W_+ phi(x) + W_- phi(-x), W_+- ~ N(0, c/(2n)), g = c/2.
    Exact: i.i.d. increments ln((g/n) chi'^2_n(lambda = n/g)) (noncentral chi-square);
    E ln chi'^2_k(lambda) = E_J[ln 2 + psi(k/2 + J)], Var = E_J psi'(k/2 + J) + Var_J psi(k/2 + J),
    J ~ Poisson(lambda/2).

Standard ResNet  x' = x + W phi(x), W ~ N(0, c/n): no exact law; the 1/n expansion in the odd
Hermite
modes of the signed energy imbalance m = (1/n) sum_i v_i|v_i| (v = sqrt(n) x/|x|), see
:func:`resnet_constants`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import integrate, special, stats

from critsym.finite_width.hermite import (
    energy_coefficients,
    energy_mode_weights,
    energy_sign_products,
    odd_modes,
)

_K_MODES = odd_modes(4001)
_W = energy_mode_weights(_K_MODES)  # k! h_k^2, sums to 3
_H = energy_coefficients(_K_MODES)  # h_k
_HS = energy_sign_products(_K_MODES)  # h_k E[sign He_k]


@dataclass(frozen=True)
class LayerMoments:
    """Mean and variance of one log-norm increment ln(|x^{l+1}|^2/|x^l|^2)."""

    mean: float
    var: float


def _binomial_support(n: int, tol: float = 1e-18) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(0, n + 1)
    pmf = stats.binom.pmf(k, n, 0.5)
    keep = pmf > tol * pmf.max()
    return k[keep], pmf[keep]


_GL_X, _GL_W = np.polynomial.legendre.leggauss(160)


def _beta_log_moments(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    r"""E f(U), E f(U)^2 for f(u) = ln(alpha^2 + (1 - alpha^2) u), U ~ Beta(a, b), vectorised over
    (a, b).

    Gauss-Legendre on a +-14 sd window for a, b >= 4 (self-normalised density), otherwise QUADPACK's
    algebraic-singularity rule (accurate for small shape parameters).
    """
    a = np.atleast_1d(np.asarray(a, float))
    b = np.atleast_1d(np.asarray(b, float))
    a2 = alpha * alpha

    def f(u: np.ndarray) -> np.ndarray:
        return np.log(a2 + (1.0 - a2) * u)

    m1 = np.empty(a.shape)
    m2 = np.empty(a.shape)
    small = np.minimum(a, b) < 4
    for i in np.flatnonzero(small):
        norm = special.beta(a[i], b[i])
        w = (a[i] - 1, b[i] - 1)
        m1[i] = integrate.quad(f, 0, 1, weight="alg", wvar=w, limit=200)[0] / norm
        m2[i] = integrate.quad(lambda u: f(u) ** 2, 0, 1, weight="alg", wvar=w,
                               limit=200)[0] / norm
    big = ~small
    if np.any(big):
        ab, bb = a[big][:, None], b[big][:, None]
        mu = ab / (ab + bb)
        sd = np.sqrt(ab * bb / ((ab + bb) ** 2 * (ab + bb + 1)))
        lo, hi = np.maximum(mu - 14 * sd, 0.0), np.minimum(mu + 14 * sd, 1.0)
        u = 0.5 * (hi - lo) * _GL_X[None, :] + 0.5 * (hi + lo)
        logpdf = (ab - 1) * np.log(u) + (bb - 1) * np.log1p(-u)
        dens = _GL_W[None, :] * np.exp(logpdf - logpdf.max(axis=1, keepdims=True))
        dens /= dens.sum(axis=1, keepdims=True)
        fu = f(u)
        m1[big] = np.sum(dens * fu, axis=1)
        m2[big] = np.sum(dens * fu * fu, axis=1)
    return m1, m2


def mlp_layer_moments(width: int, c: float = 2.0, alpha: float = 0.0) -> LayerMoments:
    r"""Exact moments of one MLP increment ln((c/n) Y), Y = chi^2_K + alpha^2 chi^2_{n-K}.

    relu (alpha = 0): mean = ln(2c/n) + E[psi(K/2) | K >= 1],
    var = E[psi'(K/2) | K >= 1] + Var[psi(K/2) | K >= 1].
    leaky: mean = ln(2c/n) + psi(n/2) + E f(U), var = psi'(n/2) + Var f(U).
    """
    n = int(width)
    k, pmf = _binomial_support(n)
    if alpha == 0.0:
        keep = k >= 1
        k, p = k[keep], pmf[keep] / pmf[keep].sum()
        psi = special.digamma(k / 2.0)
        mean = np.log(2.0 * c / n) + p @ psi
        var = p @ special.polygamma(1, k / 2.0) + p @ (psi - p @ psi) ** 2
        return LayerMoments(float(mean), float(var))
    a2 = alpha * alpha
    m1 = np.zeros(k.shape)
    m2 = np.zeros(k.shape)
    dead, full = k == 0, k == n
    m1[dead], m2[dead] = np.log(a2), np.log(a2) ** 2
    mid = ~(dead | full)
    m1[mid], m2[mid] = _beta_log_moments(k[mid] / 2.0, (n - k[mid]) / 2.0, alpha)
    p = pmf / pmf.sum()
    ef = p @ m1
    vf = p @ m2 - ef**2
    mean = np.log(2.0 * c / n) + special.digamma(n / 2.0) + ef
    var = special.polygamma(1, n / 2.0) + vf
    return LayerMoments(float(mean), float(var))


def noncentral_chi2_log_moments(k: float, lam: float) -> tuple[float, float]:
    r"""E ln chi'^2_k(lambda) and Var, as Poisson(lambda/2) mixtures of central chi-squares."""
    mu_j = lam / 2.0
    sd_j = np.sqrt(mu_j) if mu_j > 0 else 0.0
    j = np.arange(max(0, int(mu_j - 16 * sd_j - 20)), int(mu_j + 16 * sd_j + 40))
    p = stats.poisson.pmf(j, mu_j)
    p = p / p.sum()
    psi = special.digamma(k / 2.0 + j)
    mean = np.log(2.0) + p @ psi
    var = p @ special.polygamma(1, k / 2.0 + j) + p @ (psi - p @ psi) ** 2
    return float(mean), float(var)


def balanced_layer_moments(width: int, c: float) -> LayerMoments:
    r"""Exact moments of one Balanced-ResNet increment ln((g/n) chi'^2_n(n/g)), g = c/2."""
    n = int(width)
    g = c / 2.0
    m, v = noncentral_chi2_log_moments(n, n / g)
    return LayerMoments(float(np.log(g / n) + m), float(v))


def mlp_leading(c: float = 2.0, alpha: float = 0.0) -> tuple[float, float, float]:
    r"""(ln q, M, V) of the MLP in the proportional limit: q = c (1 + alpha^2)/2,
    V = 2 + 3 ((1 - alpha^2)/(1 + alpha^2))^2, M = -V/2."""
    r = (1 - alpha**2) / (1 + alpha**2)
    v = 2.0 + 3.0 * r * r
    return float(np.log(c * (1 + alpha**2) / 2.0)), -v / 2.0, v


def balanced_leading(c: float) -> tuple[float, float, float]:
    r"""(ln q, M, V) of the Balanced ResNet: q = 1 + g, M = -g(2+g)/q^2, V = 2 g(2+g)/q^2."""
    g = c / 2.0
    q = 1.0 + g
    return float(np.log(q)), -g * (2 + g) / q**2, 2 * g * (2 + g) / q**2


@dataclass(frozen=True)
class ResNetConstants:
    r"""Constants of the standard ReLU ResNet's 1/n expansion (branch W ~ N(0, c/n)).

    g = c/2, q = 1 + g, rho0 = q^{-1/2}, rho'(0) = -(c/4) q^{-3/2}, w_k = k! h_k^2:
      mu_m  = rho'(0) sum_k k w_k rho0^{k-1}/(1 - rho0^k)          (n E[m] in the stationary state)
      M     = -(4g + 2g^2 + 3g^2)/(2q^2) + (g/q) mu_m
      V     = [4g + 2g^2 + g^2 sum_k w_k (1 + rho0^k)/(1 - rho0^k)]/q^2
      kappa = -1/2 rho'(0) sum_k k h_k s_k rho0^{k-1}/(1 - rho0^k)
              (E[active fraction] = 1/2 - kappa/n)
      lag1  = g^2 sum_k w_k rho0^k / (4g + 2g^2 + 3g^2)
    """

    c: float
    g: float
    q: float
    rho0: float
    drho0: float
    mu_m: float
    M: float
    V: float
    V_uncorrelated: float
    kappa: float
    lag1: float


def resnet_constants(c: float) -> ResNetConstants:
    """Evaluate :class:`ResNetConstants` by summing odd Hermite modes k <= 4001."""
    g = c / 2.0
    q = 1.0 + g
    rho = q**-0.5
    drho = -(c / 4.0) * q**-1.5
    k = _K_MODES
    rk = rho**k
    geo = 1.0 / (1.0 - rk)
    mu_m = drho * np.sum(k * _W * rho ** (k - 1) * geo)
    base = 4 * g + 2 * g * g + 3 * g * g
    m_const = -base / (2 * q * q) + (g / q) * mu_m
    corr_sum = 3.0 + 2.0 * np.sum(_W * rk * geo)  # sum_k w_k (1 + r^k)/(1 - r^k)
    v_const = (4 * g + 2 * g * g + g * g * corr_sum) / q**2
    kappa = -0.5 * drho * np.sum(k * _HS * rho ** (k - 1) * geo)
    lag1 = g * g * np.sum(_W * rk) / base
    return ResNetConstants(
        c=float(c), g=g, q=q, rho0=float(rho), drho0=float(drho), mu_m=float(mu_m),
        M=float(m_const), V=float(v_const), V_uncorrelated=float(base / q**2),
        kappa=float(kappa), lag1=float(lag1),
    )


def resnet_finite_depth(c: float, depth: int, width: int) -> tuple[float, float]:
    r"""Mean and variance of L_d - d ln q for the standard ResNet to O(1/n), finite depth included.

    The stationary law gives tau M and tau V; starting from a Gaussian input, E[m_l] relaxes as
    (1 - rho0^{kl}) per mode and the covariance sum over a window of d layers is
    d (1 + r)/(1 - r) - 2 r (1 - r^d)/(1 - r)^2 (r = rho0^k) instead of d (1 + r)/(1 - r):
      mean = [d M - (g/q) rho'(0) sum_k k w_k rho0^{k-1} (1 - rho0^{kd})/(1 - rho0^k)^2]/n
      var  = [d V - (g^2/q^2) sum_k w_k 2 rho0^k (1 - rho0^{kd})/(1 - rho0^k)^2]/n
    """
    cst = resnet_constants(c)
    g, q, rho, drho = cst.g, cst.q, cst.rho0, cst.drho0
    k = _K_MODES
    rk = rho**k
    rkd = rk**depth
    mean_edge = (g / q) * drho * np.sum(k * _W * rho ** (k - 1) * (1 - rkd) / (1 - rk) ** 2)
    var_edge = (g * g / q**2) * np.sum(_W * 2 * rk * (1 - rkd) / (1 - rk) ** 2)
    mean = (depth * cst.M - mean_edge) / width
    var = (depth * cst.V - var_edge) / width
    return float(mean), float(var)
