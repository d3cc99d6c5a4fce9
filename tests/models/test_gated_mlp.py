"""The gated MLP's fold rule against scipy quadrature of its defining expectations.

y = W_d(φ(g₁) g₂), g₁, g₂ independent N(0, q), q = σ² K + σ_b²:
K' = σ_d² E[φ(g₁)²] E[g₂²] + σ_b,d²,  χ = σ_d² (σ_g² E[φ'(g₁)²] q + σ_u² E[φ(g₁)²]),
K'_ab = σ_d² E[φ(g₁ᵃ)φ(g₁ᵇ)] (σ_u² K_ab + σ_b,u²) + σ_b,d² (bivariate Gaussian of corr. c).
"""

import math

import numpy as np
import pytest
from scipy import integrate

import critsym as cs
from critsym.ops.gated import GatedMLP


def _silu(z):
    return z / (1 + np.exp(-z))


def _dsilu(z):
    s = 1 / (1 + np.exp(-z))
    return s * (1 + z * (1 - s))


def _gauss(f, var):
    sd = math.sqrt(var)
    val, _ = integrate.quad(lambda t: f(sd * t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi),
                            -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)
    return val


def _gauss2(f, var, cov):
    """E[f(u) f(v)] for (u, v) centred Gaussian with equal variances ``var``, covariance cov."""
    c = cov / var
    sd = math.sqrt(var)

    def inner(t):
        m = c * t
        s = math.sqrt(max(1 - c * c, 0.0))
        return _gauss(lambda r: f(sd * (m + s * r / sd)), sd * sd) if s > 0 else f(sd * m)

    val, _ = integrate.quad(lambda t: f(sd * t) * inner(t) * math.exp(-t * t / 2)
                            / math.sqrt(2 * math.pi), -10, 10, epsabs=1e-11, epsrel=1e-10)
    return val


@pytest.mark.parametrize("K", [0.4, 1.0, 2.5])
def test_variance_and_jacobian_maps_against_quadrature(K):
    sg, su, sd, sb = 1.3, 0.8, 1.1, 0.2
    arch = GatedMLP("silu", cs.Linear(sg, sb), cs.Linear(su, sb), cs.Linear(sd, sb))
    r = cs.derive(arch).run(1, K0=K)
    qg, qu = sg**2 * K + sb**2, su**2 * K + sb**2
    e_phi2 = _gauss(lambda z: _silu(z) ** 2, qg)
    e_dphi2 = _gauss(lambda z: _dsilu(z) ** 2, qg)
    assert r.K[1] == pytest.approx(sd**2 * e_phi2 * qu + sb**2, rel=1e-9)
    chi = sd**2 * (sg**2 * e_dphi2 * qu + su**2 * e_phi2)
    assert r.J[1] == pytest.approx(chi, rel=1e-9)


def test_covariance_map_against_quadrature():
    sw, sb, K, c = 1.2, 0.3, 1.0, 0.6
    th = cs.derive(GatedMLP("silu"))
    q, qab = sw**2 * K + sb**2, sw**2 * c * K + sb**2
    want = sw**2 * _gauss2(_silu, q, qab) * qab + sb**2
    got = float(th.covariance_map(K=K, K12=c * K, sigma_w=sw, sigma_b=sb))
    assert got == pytest.approx(want, rel=1e-7)


def test_bad_parts_are_refused():
    with pytest.raises(cs.errors.CritsymError, match="Linear"):
        GatedMLP("silu", gate=cs.Act("tanh"))
