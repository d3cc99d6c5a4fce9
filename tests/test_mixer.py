"""MLP-Mixer blocks through the multi-axis fold: the maps against independent scipy
integrals (docs/theory.md#mlp-mixer-block), Monte Carlo of real Mixers, and errors."""

import math

import numpy as np
import pytest
from scipy import integrate, special

import critsym as cs
from critsym.errors import DerivationError, SimulationError
from critsym.torch.validate import extrapolate


def gelu(x):
    return x * 0.5 * (1 + special.erf(x / math.sqrt(2)))


def dgelu(x):
    pdf = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return 0.5 * (1 + special.erf(x / math.sqrt(2))) + x * pdf


def gauss(f, V):
    """E_{z~N(0,V)} f(z) by adaptive quadrature."""
    if V == 0:
        return f(0.0)
    s = math.sqrt(V)
    return integrate.quad(lambda t: f(s * t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi),
                          -12, 12, limit=200)[0]


def delta_T(sw, sb):
    """σ_w² E_b[m(b)²] + σ_b², m(b) = E_{g~N(0,σ_w²)} gelu(g + b)."""
    def m(b):
        return gauss(lambda g: gelu(g + b), sw**2)
    return sw**2 * gauss(lambda b: m(b) ** 2, sb**2) + sb**2


def test_delta_T_reference_value():
    # docs/theory.md#mlp-mixer-block
    assert delta_T(math.sqrt(2), 0.0) == pytest.approx(0.424413, abs=2e-6)


@pytest.mark.parametrize("sw,sb,mu,K,OT", [(math.sqrt(2), 0.0, 1.0, 3.0, 0.5),
                                           (1.1, 0.4, 0.7, 1.7, 0.2)])
def test_token_block_maps_against_scipy(sw, sb, mu, K, OT):
    th = cs.derive(cs.token_mixing())
    hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
    q = sw**2 + sb**2
    F = mu**2 * K + sw**2 * gauss(lambda z: gelu(z) ** 2, q) + sb**2
    chi = mu**2 + sw**4 * gauss(lambda z: dgelu(z) ** 2, q) / (K - OT)
    assert th.variance_map(K, O_T=OT, **hp) == pytest.approx(F, rel=1e-9)
    assert th.chi_J(K, O_T=OT, **hp) == pytest.approx(chi, rel=1e-9)
    OT1, OC1 = th.offset_maps(K, O_T=OT, O_C=0.1, **hp)
    assert OT1 == pytest.approx(mu**2 * OT + delta_T(sw, sb), rel=1e-8)
    assert OC1 == pytest.approx(mu**2 * 0.1, rel=1e-12)  # the token Linear kills it


def test_channel_block_keeps_offsets_out_of_chi():
    """After a channel sub-block O_T' = μ² O_T and χ = μ² + σ_w⁴E_q[φ'²]/(K − O_T)."""
    th = cs.derive(cs.Transpose() >> cs.Transpose() >> cs.channel_mixing())
    sw, sb, mu, K, OT = 1.3, 0.3, 0.9, 2.0, 0.6
    q = sw**2 + sb**2
    hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
    assert th.offset_maps(K, O_T=OT, **hp)[0] == pytest.approx(mu**2 * OT, rel=1e-12)
    chi = mu**2 + sw**4 * gauss(lambda z: dgelu(z) ** 2, q) / (K - OT)
    assert th.chi_J(K, O_T=OT, **hp) == pytest.approx(chi, rel=1e-9)


def test_mixer_monte_carlo_matches_theory():
    """24² and 48² (tokens × channels) Mixers, 3 blocks (6 sub-blocks), 16 networks each: K,
    O_T and J^{0,l} extrapolated linearly in 1/N (critsym.validate's rule: the O(1/N) and
    row-variance effects the two-variable recursion leaves out are removed, not tolerated;
    docs/theory.md#mlp-mixer-block), |z| ≤ 4."""
    arch = cs.mixer_block()
    hp = dict(sigma_w=math.sqrt(2), sigma_b=0.0, mu=1.0)
    widths = (24, 48)
    sims = [cs.simulate_maps(arch, (w, w), 3, n_nets=16, n_probes=4, seed=2 + i, **hp)
            for i, w in enumerate(widths)]
    th = cs.derive(arch).run(3, K0=1.0, **hp)
    for q in ("K", "J", "O_T"):
        for layer in range(1, 4):
            a, sa, _ = extrapolate(widths, [getattr(s, q)[layer] for s in sims],
                                   [getattr(s, q + "_se")[layer] for s in sims])
            ref = getattr(th, q)[layer]
            assert abs(a - ref) <= 4 * sa, (q, layer, a, sa, ref)
    # the per-token offset is really there (an i.i.d. input starts at O_T ≈ 0)
    sim = sims[-1]
    assert sim.O_T[-1] > 10 * sim.O_T_se[-1] and sim.O_T[0] < 0.1


def test_mixer_errors():
    th = cs.derive(cs.mixer_block())
    with pytest.raises(cs.errors.HyperparameterError, match="K12 must be finite"):
        th.covariance_map(K=1.0, K12=1.5, sigma_w=1.0, sigma_b=0.1, mu=1.0)
    with pytest.raises(cs.errors.HyperparameterError, match="O_T12"):
        th.covariance_map(K=1.0, K12=0.5, O_T=0.2, O_T12=0.3, sigma_w=1.0, sigma_b=0.1, mu=1.0)
    with pytest.raises(cs.errors.HyperparameterError, match="c0"):
        th.run(2, c0=1.5, sigma_w=1.0, sigma_b=0.1, mu=1.0)
    with pytest.raises(cs.errors.HyperparameterError, match="cannot exceed K"):
        th.chi_J(1.0, O_T=2.0, sigma_w=1.0, sigma_b=0.0, mu=1.0)
    with pytest.raises(SimulationError, match="two axes"):
        cs.simulate(cs.Transpose() >> cs.Linear(), 8, 1, n_nets=2, sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(DerivationError, match="per-row offsets"):
        # LayerNorm of a nonlinear function of a variable that carries a per-token offset
        cs.derive(cs.Transpose() >> cs.Residual(cs.Transpose() >> cs.Linear(), 1)
                  >> cs.Act("tanh") >> cs.LayerNorm() >> cs.Linear())


@pytest.mark.slow
def test_deep_mixer_exponent():
    """μ = 1, gelu (2, 0): J^{0,l} ~ l^p with p = A/(B − Δ_T/2) per sub-block at leading order
    (docs/theory.md#mlp-mixer-block: 1.1998); A = σ_w⁴E_q φ'², B = σ_w²E_q φ² + σ_b²,
    q = σ_w² + σ_b²."""
    sw2 = 2.0
    A = sw2**2 * gauss(lambda z: dgelu(z) ** 2, sw2)
    B = sw2 * gauss(lambda z: gelu(z) ** 2, sw2)
    p = A / (B - delta_T(math.sqrt(sw2), 0.0) / 2)
    assert p == pytest.approx(1.1998, abs=1e-4)
    r = cs.derive(cs.mixer_block()).run(400, sigma_w=math.sqrt(sw2), sigma_b=0.0, mu=1.0)
    local = math.log(r.J[400] / r.J[300]) / math.log(400 / 300)
    assert local == pytest.approx(p, abs=0.01)
