"""RMSNorm: the theory against independent quadrature and Monte Carlo where it differs from
LayerNorm (after an activation, whose mean it keeps; on preactivations carrying a bias), the
same theory as LayerNorm-pre on zero-mean preactivations, and torch import."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import erf
from scipy.stats import norm

import critsym as cs
from critsym.errors import DerivationError, UnsupportedModuleError

SW, SB = 1.3, 0.4


def gelu(v):
    return v * 0.5 * (1 + math.erf(v / math.sqrt(2)))


def dgelu(v):
    return 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(
        2 * math.pi)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def dsigmoid(v):
    return sigmoid(v) * (1 - sigmoid(v))


def _e(f, K):
    """E f(h), h ~ N(0, K), by adaptive quadrature."""
    s = math.sqrt(K)
    return integrate.quad(lambda t: f(s * t) * norm.pdf(t), -12, 12, epsabs=1e-14,
                          limit=200)[0]


def _e2(f, K, c, n=160):
    """E f(a) f(b), (a, b) ~ N(0, K [[1, c], [c, 1]]), by a 160×160 Gauss–Hermite product rule
    over a = √K u, b = c a + √(K(1 − c²)) z (f smooth: converged to ~1e-13)."""
    u, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2 * math.pi)
    a = math.sqrt(K) * u[:, None]
    b = c * a + math.sqrt(K * (1 - c * c)) * u[None, :]
    fv = np.vectorize(f)
    return float(w @ (fv(a) * fv(b)) @ w)


POST = {"gelu": (gelu, dgelu), "sigmoid": (sigmoid, dsigmoid)}


@pytest.mark.parametrize("name", sorted(POST))
@pytest.mark.parametrize("K,c", [(0.6, 0.2), (2.0, 0.7)])
def test_rms_after_activation_keeps_the_mean(name, K, c):
    """φ >> RMSNorm >> Linear: RMS(φ) = φ/sqrt(E[φ²]) (mean kept), so
    K' = σ_w² + σ_b², χ_J = σ_w² E[φ'²]/E[φ²], K'_12 = σ_w² E[φ(a)φ(b)]/E[φ²] + σ_b²;
    LayerNorm-post divides by Var φ and removes the mean instead."""
    f, df = POST[name]
    th = cs.derive(cs.Act(name) >> cs.RMSNorm() >> cs.Linear())
    run = th.run(1, K0=K, c0=c, sigma_w=SW, sigma_b=SB)
    m2 = _e(lambda v: f(v) ** 2, K)
    assert run.K[1] == pytest.approx(SW**2 + SB**2, rel=1e-12)
    assert run.J[1] == pytest.approx(SW**2 * _e(lambda v: df(v) ** 2, K) / m2, rel=1e-9)
    k12 = SW**2 * _e2(f, K, c) / m2 + SB**2
    assert run.c[1] == pytest.approx(k12 / (SW**2 + SB**2), rel=1e-7)
    ln = cs.derive(cs.Act(name) >> cs.LayerNorm() >> cs.Linear())
    var = m2 - _e(f, K) ** 2
    assert ln.run(1, K0=K, sigma_w=SW, sigma_b=SB).J[1] == pytest.approx(
        SW**2 * _e(lambda v: df(v) ** 2, K) / var, rel=1e-9)  # differs by E[φ]² in the norm


BIASED = cs.Act("erf") >> cs.Linear() >> cs.RMSNorm() >> cs.Act("tanh") >> cs.Linear()


@pytest.mark.parametrize("K", [0.5, 3.0])
def test_rms_of_preactivations_with_bias(K):
    """erf >> Linear(σ_w, σ_b) >> RMSNorm >> tanh >> Linear: the bias enters the mean square,
    q = σ_w² E[erf(h)²] + σ_b², and RMS(g) = g/√q ~ N(0, 1):
    K' = σ_w² E[tanh(z)²] + σ_b², χ_J = σ_w² E[erf'(h)²] · σ_w² E[tanh'(z)²] / q."""
    th = cs.derive(BIASED)
    run = th.run(1, K0=K, sigma_w=SW, sigma_b=SB)
    q = SW**2 * _e(lambda v: erf(v) ** 2, K) + SB**2
    d_erf2 = _e(lambda v: (2 / math.sqrt(math.pi) * math.exp(-v * v)) ** 2, K)
    t2 = _e(lambda v: math.tanh(v) ** 2, 1.0)
    dt2 = _e(lambda v: (1 - math.tanh(v) ** 2) ** 2, 1.0)
    assert run.K[1] == pytest.approx(SW**2 * t2 + SB**2, rel=1e-9)
    assert run.J[1] == pytest.approx(SW**2 * d_erf2 * SW**2 * dt2 / q, rel=1e-9)


def test_rms_pre_equals_layernorm_pre_on_zero_mean_preactivations():
    for act in ("tanh", "relu"):
        rms = cs.derive(cs.RMSNorm() >> cs.Act(act) >> cs.Linear())
        ln = cs.derive(cs.LayerNorm() >> cs.Act(act) >> cs.Linear())
        assert rms.F == ln.F and rms.chi == ln.chi
        a = rms.run(4, K0=0.7, c0=0.3, sigma_w=SW, sigma_b=SB)
        b = ln.run(4, K0=0.7, c0=0.3, sigma_w=SW, sigma_b=SB)
        assert np.allclose(a.c, b.c, rtol=1e-12)


@pytest.mark.parametrize("arch,hp", [
    (cs.Act("sigmoid") >> cs.RMSNorm() >> cs.Linear(), dict(sigma_w=SW, sigma_b=SB)),
    (BIASED, dict(sigma_w=SW, sigma_b=SB)),
    (cs.Residual(cs.Act("gelu") >> cs.RMSNorm() >> cs.Linear()),
     dict(sigma_w=1.1, sigma_b=0.2, mu=0.9)),
], ids=["post-sigmoid", "biased-pre", "residual-post-gelu"])
def test_theory_against_monte_carlo(arch, hp, single_thread):
    res = cs.validate(arch, widths=(64, 128), depth=6, n_nets=32, n_probes=2, seed=2, **hp)
    assert len(res.scored) >= 15
    assert res.passed, res.to_text()


def test_torch_rmsnorm_imports():
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.RMSNorm(32), torch.nn.Tanh(),
                                                      torch.nn.Linear(32, 32))
                                  for _ in range(3)])
    imp = cs.from_torch(model)
    assert imp.block == cs.RMSNorm() >> cs.Act("tanh") >> cs.Linear() and imp.n_blocks == 3
    bad = torch.nn.RMSNorm(8)
    with torch.no_grad():
        bad.weight.fill_(2.0)
    # an RMSNorm without a theory is left out of the analysed body, named with the reason
    imp = cs.from_torch(torch.nn.Sequential(bad, torch.nn.Linear(8, 8)))
    assert imp.skipped[0].path == "0" and "weight" in imp.skipped[0].reason
    imp = cs.from_torch(torch.nn.Sequential(torch.nn.RMSNorm((4, 8)), torch.nn.Linear(8, 8)))
    assert imp.skipped[0].path == "0" and "last axis" in imp.skipped[0].reason
    with pytest.raises(UnsupportedModuleError, match="weight"):
        cs.from_torch(bad)


def test_stacked_rmsnorm_computes_rms():
    net = cs.build(cs.Act("relu") >> cs.RMSNorm() >> cs.Linear(), 16, 1, n_nets=2,
                   sigma_w=1.0, sigma_b=0.0)
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    y = net.blocks[0][1](x)
    assert torch.allclose((y * y).mean(-1), torch.ones(2, 3, dtype=torch.float64), rtol=1e-10)
    assert torch.allclose(y, x / x.pow(2).mean(-1, keepdim=True).sqrt(), rtol=1e-10)


def test_rmsnorm_with_row_offsets_is_refused():
    """In a Mixer state the per-token offset would make the mean square differ between rows."""
    with pytest.raises(DerivationError, match="per-row offsets"):
        cs.derive(cs.Residual(cs.RMSNorm() >> cs.Transpose() >> cs.Linear() >> cs.Act("gelu")
                              >> cs.Linear() >> cs.Transpose()))
