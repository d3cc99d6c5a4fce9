r"""Odd Hermite data of the signed energy h(v) = v|v| and of sign(v), v ~ N(0, 1).

With probabilists' Hermite polynomials He_k and the coefficient convention
h(v) = \sum_k h_k He_k(v), E[h He_k] = k! h_k:

    E[v|v| He_k(v)] = 4 phi(0)              (k = 1)
    E[v|v| He_k(v)] = 4 phi(0) He_{k-3}(0)  (odd k >= 3)
    E[sign(v) He_k(v)] = 2 phi(0) He_{k-1}(0)  (odd k)

(phi(0) = 1/sqrt(2 pi)); even modes vanish.  Hence k! h_k^2 = 16 phi(0)^2 He_{k-3}(0)^2 / k! and
sum_k k! h_k^2 = E[v^4] = 3.  These closed forms are checked against quadrature in the tests.
He_{2j}(0) = (-1)^j (2j-1)!!, evaluated in log space so that k can run to a few thousand.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

PHI0 = 1.0 / np.sqrt(2.0 * np.pi)


def _log_abs_he_even_at0(j: np.ndarray) -> np.ndarray:
    """ln |He_{2j}(0)| = ln (2j-1)!! = ln (2j)! - j ln 2 - ln j!."""
    return gammaln(2 * j + 1) - j * np.log(2.0) - gammaln(j + 1)


def odd_modes(k_max: int = 4001) -> np.ndarray:
    """The odd mode indices 1, 3, ..., k_max."""
    return np.arange(1, k_max + 1, 2)


def energy_mode_weights(k: np.ndarray) -> np.ndarray:
    """w_k = k! h_k^2 for h(v) = v|v| at odd k (sums to 3)."""
    k = np.asarray(k)
    out = np.empty(k.shape, dtype=float)
    first = k == 1
    out[first] = 16.0 * PHI0**2
    j = (k[~first] - 3) // 2
    log_w = np.log(16.0 * PHI0**2) + 2 * _log_abs_he_even_at0(j) - gammaln(k[~first] + 1)
    out[~first] = np.exp(log_w)
    return out


def energy_coefficients(k: np.ndarray) -> np.ndarray:
    """Signed coefficients h_k = E[v|v| He_k]/k! at odd k."""
    k = np.asarray(k)
    out = np.empty(k.shape, dtype=float)
    first = k == 1
    out[first] = 4.0 * PHI0
    j = (k[~first] - 3) // 2
    sign = np.where(j % 2 == 0, 1.0, -1.0)
    out[~first] = sign * np.exp(
        np.log(4.0 * PHI0) + _log_abs_he_even_at0(j) - gammaln(k[~first] + 1)
    )
    return out


def sign_projections(k: np.ndarray) -> np.ndarray:
    """s_k = E[sign(v) He_k(v)] = 2 phi(0) He_{k-1}(0) at odd k (not divided by k!)."""
    k = np.asarray(k)
    j = (k - 1) // 2
    sign = np.where(j % 2 == 0, 1.0, -1.0)
    return sign * np.exp(np.log(2.0 * PHI0) + _log_abs_he_even_at0(j))


def energy_sign_products(k: np.ndarray) -> np.ndarray:
    """h_k * s_k at odd k, evaluated in log space (each factor alone overflows for large k)."""
    k = np.asarray(k)
    j_s = (k - 1) // 2
    sign_s = np.where(j_s % 2 == 0, 1.0, -1.0)
    log_s = np.log(2.0 * PHI0) + _log_abs_he_even_at0(j_s)
    out = np.empty(k.shape, dtype=float)
    first = k == 1
    out[first] = 4.0 * PHI0 * 2.0 * PHI0
    kk = k[~first]
    j_h = (kk - 3) // 2
    sign_h = np.where(j_h % 2 == 0, 1.0, -1.0)
    log_h = np.log(4.0 * PHI0) + _log_abs_he_even_at0(j_h) - gammaln(kk + 1)
    out[~first] = sign_h * sign_s[~first] * np.exp(log_h + log_s[~first])
    return out
