"""BatchNorm theory: the infinite-batch fold against scipy quadrature, the finite-batch theory
against closed forms and an independent sphere Monte Carlo, the torch map against
torch.nn.BatchNorm, the import, and the error messages."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from torch import nn

import critsym as cs
from critsym.batchnorm import batch_moments, growth_rate, sphere_expect1, sphere_expect2
from critsym.errors import (
    ArchitectureError,
    DerivationError,
    HyperparameterError,
    SimulationError,
)

ACT_NP = {"relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
          "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}


def gauss(f):
    """E f(z), z ~ N(0,1), by scipy quad split at 0."""
    g = lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return quad(g, -np.inf, 0, epsabs=1e-13)[0] + quad(g, 0, np.inf, epsabs=1e-13)[0]


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_infinite_batch_growth_is_eprime2_over_var(act):
    phi, dphi = ACT_NP[act]
    ref = gauss(lambda z: dphi(z) ** 2) / (gauss(lambda z: phi(z) ** 2) - gauss(phi) ** 2)
    paper = {"relu": math.pi / (math.pi - 1), "tanh": 1.177807}[act]
    assert ref == pytest.approx(paper, abs=1e-6)
    th = cs.derive(cs.BatchNorm() >> cs.Act(act) >> cs.Linear())
    sw, sb = np.meshgrid([0.3, 1.0, 2.5], [0.0, 0.4, 1.5])
    r = th.run(4, K0=1.3, O_C0=0.2, sigma_w=sw, sigma_b=sb)
    # first block: sigma_w^2 E phi'^2 / (K0 - O_C0); later blocks: E phi'^2 / Var phi
    assert np.allclose(r.chi[0], sw**2 * gauss(lambda z: dphi(z) ** 2) / 1.1, rtol=1e-9)
    assert np.allclose(r.chi[1:], ref, rtol=1e-9)
    # the carried per-neuron (sample-shared) offset: O_C' = sigma_w^2 (E phi)^2 + sigma_b^2
    assert np.allclose(r.O_C[1:], sw**2 * gauss(phi) ** 2 + sb**2, rtol=1e-9)
    assert np.allclose(r.K[1:], sw**2 * gauss(lambda z: phi(z) ** 2) + sb**2, rtol=1e-9)


def test_batchnorm_is_layernorm_along_the_sample_axis():
    bn = cs.derive(cs.BatchNorm() >> cs.Act("tanh") >> cs.Linear())
    tr = cs.derive(cs.Transpose() >> cs.LayerNorm() >> cs.Transpose() >> cs.Act("tanh")
                   >> cs.Linear())
    assert bn.F == tr.F and bn.chi == tr.chi and bn.F_C == tr.F_C


def test_preactivation_resnet_carries_the_offset_through_the_stream():
    """Residual(BN -> relu -> W -> BN -> relu -> W, mu): an independent recursion for
    O_C' = mu^2 O_C + sigma_w^2/(2 pi) + sigma_b^2, K' = mu^2 K + sigma_w^2/2 + sigma_b^2,
    chi = mu^2 + pi/(2 (pi - 1)) sigma_w^2/(K - O_C)."""
    blk = cs.Residual(cs.BatchNorm() >> cs.Act("relu") >> cs.Linear() >> cs.BatchNorm()
                      >> cs.Act("relu") >> cs.Linear(), cs.mu)
    sw, sb, mu = 1.3, 0.4, 0.9
    r = cs.derive(blk).run(6, K0=1.0, O_C0=0.1, sigma_w=sw, sigma_b=sb, mu=mu)
    K, O = 1.0, 0.1
    for layer in range(6):
        chi = mu**2 + math.pi / (2 * (math.pi - 1)) * sw**2 / (K - O)
        assert r.chi[layer] == pytest.approx(chi, rel=1e-10)
        K, O = mu**2 * K + sw**2 / 2 + sb**2, mu**2 * O + sw**2 / (2 * math.pi) + sb**2
        assert r.K[layer + 1] == pytest.approx(K, rel=1e-10)
        assert r.O_C[layer + 1] == pytest.approx(O, rel=1e-10)


def test_torchvision_order_is_refused_with_a_reason():
    blk = cs.Act("relu") >> cs.Residual(cs.Linear() >> cs.BatchNorm() >> cs.Act("relu")
                                        >> cs.Linear() >> cs.BatchNorm(), cs.mu)
    with pytest.raises(DerivationError, match="not a Gaussian"):
        cs.derive(blk)


# ----------------------------------------------------------------- sphere expectations
@pytest.mark.parametrize("B", [4, 5, 9, 64, 500])
def test_sphere_moments_closed_forms(B):
    assert sphere_expect1(lambda y: y**2, B)[0] == pytest.approx(1.0, abs=1e-10)
    assert sphere_expect1(lambda y: y**4, B)[0] == pytest.approx(3 * (B - 1) / (B + 1), abs=1e-9)
    assert sphere_expect2(lambda a, b: a * b, B)[0] == pytest.approx(-1 / (B - 1), abs=1e-10)
    assert sphere_expect2(lambda a, b: a * a * b * b, B)[0] == pytest.approx(
        # E y1^2 y2^2 for y = sqrt(B) u, u uniform on S^{B-2}, p1.p2 = -1/B, |p|^2 = 1 - 1/B
        B**2 * ((1 - 1 / B) ** 2 + 2 / B**2) / ((B - 1) * (B + 1)), abs=1e-9)
    # orthant probability of a spherically symmetric pair: 1/4 + asin(rho)/(2 pi)
    p = sphere_expect2(lambda a, b: (a > 0) * (b > 0) * 1.0, B)[0]
    assert p == pytest.approx(0.25 + math.asin(-1 / (B - 1)) / (2 * math.pi), abs=1e-10)


@pytest.mark.parametrize("act,B", [("relu", 4), ("tanh", 6), ("relu", 16)])
def test_sphere_moments_against_sampling(act, B):
    """Independent check: y = centred, scaled Gaussian batch vectors (1e6 samples)."""
    rng = np.random.default_rng(1)
    h = rng.standard_normal((400_000, B))
    g = h - h.mean(1, keepdims=True)
    y = g / np.sqrt((g * g).mean(1, keepdims=True))
    phi, dphi = ACT_NP[act]
    mo = batch_moments(cs.Act(act), B)
    samples = {
        "q": phi(y[:, 0]) ** 2, "qc": phi(y[:, 0]) * phi(y[:, 1]),
        "d": dphi(y[:, 0]) ** 2 * (1 - 1 / B - y[:, 0] ** 2 / B),
        "alpha": dphi(y[:, 0]) ** 2 * (1 - 1 / B - y[:, 0] ** 2 / B)
        + dphi(y[:, 0]) * dphi(y[:, 1]) * (1 / B + y[:, 0] * y[:, 1] / B),
    }
    for k, s in samples.items():
        se = s.std() / math.sqrt(len(s))
        assert abs(getattr(mo, k) - s.mean()) < 4 * se, k


@pytest.mark.parametrize("B", [4, 5, 8, 16, 64, 300])
def test_linear_batchnorm_growth_is_exact(B):
    assert growth_rate("identity", B) == pytest.approx((B - 2) / (B - 3), rel=1e-10)


@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
def test_finite_batch_growth_tends_to_infinite_batch(act):
    lim = growth_rate(act, None)
    gaps = [abs(growth_rate(act, B) - lim) for B in (16, 64, 256, 4096)]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 2e-3 * lim
    # the gap is O(1/B): B * gap settles
    assert 4096 * gaps[-1] == pytest.approx(256 * gaps[-2], rel=0.1)


def test_batchnorm_jacobian_identity():
    """J_BN J_BN^T = (1/v)(I - 11^T/B - yy^T/B) for one neuron's batch vector."""
    B = 7
    h = torch.randn(B, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def bn(x):
        c = x - x.mean()
        return c / torch.sqrt((c * c).mean())

    J = torch.autograd.functional.jacobian(bn, h)
    y = bn(h)
    v = ((h - h.mean()) ** 2).mean()
    one = torch.ones(B, dtype=torch.float64)
    ref = (torch.eye(B, dtype=torch.float64) - torch.outer(one, one) / B
           - torch.outer(y, y) / B) / v
    assert torch.allclose(J @ J.T, ref, atol=1e-12)


def test_finite_batch_theory_run():
    th = cs.derive(cs.BatchNorm(8) >> cs.Act("identity") >> cs.Linear())
    r = th.run(5, K0=2.0, sigma_w=np.array([0.5, 2.0]), sigma_b=0.3)
    lam = 6 / 5
    # linear: q = E y1^2 = 1, J^{0,1} = sigma_w^2 B d/((B-3) K0), d = 1 - 2/B
    assert np.allclose(r.J[1], np.array([0.25, 4.0]) * 8 * (1 - 2 / 8) / (5 * 2.0))
    assert np.allclose(r.J[2:] / r.J[1:-1], lam)
    assert np.allclose(r.K[1:], np.array([0.25, 4.0]) + 0.09)
    assert "no critical point" in th.summary() and "every sigma_w" in th.summary()
    with pytest.raises(HyperparameterError, match="missing"):
        th.run(3, sigma_w=1.0)
    with pytest.raises(DerivationError, match="whole batch"):
        th.covariance_map()
    # the criticality tools: chaotic for every sigma_w, and no critical point
    out = cs.summary(th, sigma_w=0.7, sigma_b=0.1)
    assert out["phase"] == "chaotic" and out["chi_star"] == pytest.approx(lam)
    with pytest.raises(cs.errors.NoCriticalPointError):
        cs.critical_point(th, sigma_b=0.1)


def test_errors():
    with pytest.raises(ArchitectureError, match=">= 4"):
        cs.BatchNorm(3)
    with pytest.raises(DerivationError, match="finite-batch theory covers"):
        cs.derive(cs.Residual(cs.BatchNorm(8) >> cs.Act("relu") >> cs.Linear(), 1.0))
    with pytest.raises(HyperparameterError, match=">= 4"):
        sphere_expect1(np.cos, 3)
    # simulate() pairs two inputs: far too few examples for batch statistics
    with pytest.raises(SimulationError, match="at least 4"):
        cs.simulate(cs.BatchNorm() >> cs.Act("relu") >> cs.Linear(), 16, 1, n_nets=1,
                    sigma_w=1.0, sigma_b=0.0)
    assert cs.from_dict(cs.BatchNorm(16).to_dict()) == cs.BatchNorm(16)
    assert cs.from_json(cs.BatchNorm().to_json()) == cs.BatchNorm()


@pytest.mark.parametrize("dims", [1, 2])
def test_torch_map_matches_torch_batchnorm(dims):
    """Stacked map on channels-last (n_nets, B, *spatial, C) vs nn.BatchNorm in train mode."""
    g = torch.Generator().manual_seed(0)
    shape = (5,) if dims == 1 else (4, 3, 5)
    x = torch.randn(2, 6, *shape, generator=g, dtype=torch.float64) * 2 + 0.7
    ctx = cs.torch.modules.BuildContext(n_nets=2, width=5, values={}, generators=[g, g])
    mod, out = cs.BatchNorm().to_torch(ctx, shape)
    assert out == shape
    ref_mod = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(5, eps=ctx.ln_eps).double()
    for n in range(2):
        xn = x[n] if dims == 1 else x[n].permute(0, 3, 1, 2)
        ref = ref_mod.train()(xn)
        ref = ref if dims == 1 else ref.permute(0, 2, 3, 1)
        assert torch.allclose(mod(x)[n], ref, atol=1e-10)


def test_import_from_torch():
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8))
    res = cs.from_torch(model.train())
    assert cs.BatchNorm() in res.arch.ops
    # a refused BatchNorm is reported as skipped with its reason, never analysed
    for prepare, reason in ((lambda m: m.eval(), "evaluation mode"),
                            (_trained_affine, "affine")):
        res = cs.from_torch(prepare(model))
        assert any(reason in s.reason and "'1'" in s.reason for s in res.skipped), res.skipped
        assert all(cs.BatchNorm() not in b.arch.ops for b in res.blocks if hasattr(b.arch, "ops"))
        model.train()


def _trained_affine(model):
    model.train()
    with torch.no_grad():
        model[1].weight.fill_(2.0)
    return model


# ----------------------------------------------------------------- BasicBlock (torchvision order)
def test_basic_block_theory_limits_and_grid():
    from critsym.batchnorm.resnet import BasicBlockTheory

    th = BasicBlockTheory()
    # mu = 0: x = relu(y), y ~ N(0, 1): K = 1/2, and every later block multiplies J by
    # P(y > 0) * pi/((pi - 1) Var relu(y)) = pi^2/(pi - 1)^2
    r = th.run(4, 1.7, sigma_w=0.8, sigma_b=0.5, mu=0.0)
    assert np.allclose(r.K[1:], 0.5, rtol=1e-6)
    assert np.allclose(r.chi[1:], math.pi**2 / (math.pi - 1) ** 2, rtol=5e-5)  # grid h = 0.01
    # first block from a Gaussian input of variance K0: (mu^2 + pi/((pi - 1) K0)) / 2
    r = th.run(3, 1.7, sigma_w=0.8, sigma_b=0.5, mu=0.9)
    assert r.J[1] == pytest.approx((0.81 + math.pi / ((math.pi - 1) * 1.7)) / 2, rel=1e-6)
    assert r.K[1] == pytest.approx((0.81 * 1.7 + 1) / 2, rel=1e-6)
    # the grid: spacing h against h/2
    fine = BasicBlockTheory(h=0.005).run(3, 1.7, sigma_w=0.8, sigma_b=0.5, mu=0.9)
    assert np.allclose(fine.J, r.J, rtol=1e-4) and np.allclose(fine.K, r.K, rtol=1e-4)
    # the branch factor comes from the fold: 1/((1 - 1/pi)(m2 - O)), whatever sigma_w, sigma_b
    assert th.gain(2.0, 0.5, 0.7, 1.1) == pytest.approx(math.pi / ((math.pi - 1) * 1.5))


def test_torch_model_round_trip():
    arch = cs.Conv(3) >> cs.BatchNorm() >> cs.Act("relu")
    model = cs.to_torch_model(arch, width=6, depth=2, sigma_w=1.1, sigma_b=0.2)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 2 and all(m.training and m.eps == 1e-12 for m in bns)
    x = torch.randn(5, 6, 7, 7, dtype=torch.float64)
    y = bns[0](x)  # channels-first, statistics over (N, H, W) like nn.BatchNorm2d
    assert torch.allclose(y, nn.BatchNorm2d(6, eps=1e-12).double()(x), atol=1e-10)
    assert torch.isfinite(model(x)).all()
    imp = cs.from_torch(model)
    # the body repeats in its derivable rotation: BatchNorm -> relu -> Conv (a block must end
    # in a Gaussian preactivation); the trailing BatchNorm -> relu is the head
    last = imp.blocks[-1].arch
    conv = last.ops[-1]
    assert last == cs.BatchNorm() >> cs.Act("relu") >> cs.Conv(3, conv.sigma_w, conv.sigma_b)
    assert [s.part for s in imp.skipped] == ["head"]


def test_preactivation_resnet_power_law():
    """mu = 1: chi = 1 + p/l asymptotically with p = pi^2/(pi - 1)^2 for every sigma_w."""
    blk = cs.Residual(cs.BatchNorm() >> cs.Act("relu") >> cs.Linear() >> cs.BatchNorm()
                      >> cs.Act("relu") >> cs.Linear(), cs.mu)
    r = cs.derive(blk).run(4000, K0=1.0, O_C0=0.0, sigma_w=np.array([0.5, 3.0]), sigma_b=0.3,
                           mu=1.0)
    p = 4000 * (r.chi[-1] - 1)
    assert np.allclose(p, math.pi**2 / (math.pi - 1) ** 2, rtol=1e-2)  # O(1/l) corrections
