"""Log-norm laws against Monte Carlo: the exact-in-law samplers and explicit-weight torch networks.

Tolerances: 4 measured standard errors, plus, for the standard ResNet's 1/n expansion, the stated
O(1/n) accuracy (relative 10/n on the variance, 3/n on the lag-1 correlation, 2d/n^2 on the mean;
finite_width.md: ~10 % at n = 64, a few % at n = 256)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from critsym.errors import HyperparameterError, SimulationError
from critsym.finite_width import ModelSpec, log_norm, plot_log_norm, simulate_log_norm

pytestmark = pytest.mark.usefixtures("single_thread")


def _assert_moments(sample, law, mean_extra=0.0, var_rel_extra=0.0):
    dm = abs(sample.mean() - law.mean)
    dv = abs(sample.var() - law.var)
    assert dm <= 4 * sample.se_mean() + mean_extra, (sample.mean(), law.mean, sample.se_mean())
    assert dv <= 4 * sample.se_var() + var_rel_extra * law.var, (sample.var(), law.var,
                                                                 sample.se_var())


def _assert_gaussian_quantiles(sample, law, skew_allowance=0.003):
    z = (sample.log_norm - law.mean) / law.sd
    n = z.size
    for zz in np.linspace(-3.5, 3.5, 15):
        p = stats.norm.cdf(zz)
        emp = np.mean(z <= zz)
        assert abs(emp - p) <= 4 * np.sqrt(p * (1 - p) / n) + skew_allowance, (zz, emp, p)


@pytest.mark.parametrize("spec", [ModelSpec("mlp", 2.0), ModelSpec("mlp", 2 / 1.09, 0.3),
                                  ModelSpec("balanced", 2.0), ModelSpec("balanced", 0.5)],
                         ids=["relu", "leaky0.3", "balanced2", "balanced0.5"])
def test_exact_law_against_exact_sampler(spec):
    n, d = 64, 64
    law = log_norm(spec, d, n, order="exact")
    s = simulate_log_norm(spec, d, n, n_nets=100_000, seed=1, method="exact")
    _assert_moments(s, law)
    _assert_gaussian_quantiles(s, law)


@pytest.mark.parametrize("spec,n_nets", [(ModelSpec("mlp", 2.0), 2000),
                                         (ModelSpec("mlp", 1.6, 0.5), 2000),
                                         (ModelSpec("balanced", 2.0), 1200)],
                         ids=["relu", "leaky0.5", "balanced"])
def test_explicit_torch_networks_follow_exact_law(spec, n_nets):
    n, d = 32, 16
    law = log_norm(spec, d, n, order="exact")
    s = simulate_log_norm(spec, d, n, n_nets=n_nets, seed=2, method="torch")
    assert s.log_norm.dtype == np.float64
    _assert_moments(s, law)


def test_explicit_torch_resnet_agrees_with_conditional_sampler_and_law():
    spec, n, d = ModelSpec("resnet", 2.0), 48, 24
    a = simulate_log_norm(spec, d, n, n_nets=1500, seed=3, method="torch")
    b = simulate_log_norm(spec, d, n, n_nets=20_000, seed=4, method="conditional")
    se = np.hypot(a.se_mean(), b.se_mean())
    assert abs(a.mean() - b.mean()) <= 4 * se
    assert abs(a.var() - b.var()) <= 4 * np.hypot(a.se_var(), b.se_var())
    law = log_norm(spec, d, n, order="1/n")
    _assert_moments(a, law, mean_extra=2 * d / n**2, var_rel_extra=10 / n)


@pytest.mark.parametrize("c", [1.0, 2.0])
def test_resnet_1n_law_fast(c):
    n, d = 128, 64
    law = log_norm(ModelSpec("resnet", c), d, n, order="1/n")
    s = simulate_log_norm(ModelSpec("resnet", c), d, n, n_nets=5000, seed=5, method="exact")
    _assert_moments(s, law, mean_extra=2 * d / n**2, var_rel_extra=10 / n)


def test_resnet_hypoactivation_and_lag1():
    n, d = 64, 48
    spec = ModelSpec("resnet", 1.0)
    law = log_norm(spec, d, n, order="1/n")
    s = simulate_log_norm(spec, d, n, n_nets=6000, seed=6, method="conditional")
    h, h_se = s.hypoactivation(burn_in=16)
    assert h < -4 * h_se  # fewer than half of the units are active
    assert abs(h - law.hypoactivation) <= 4 * h_se + 3 / n * abs(law.hypoactivation)
    r, r_se = s.lag1(burn_in=16)
    assert abs(r - law.lag1) <= 4 * r_se + 3 / n * law.lag1


@pytest.mark.parametrize("spec", [ModelSpec("balanced", 2.0), ModelSpec("mlp", 2.0)],
                         ids=["balanced", "mlp"])
def test_no_hypoactivation_no_correlation(spec):
    n, d = 64, 48
    s = simulate_log_norm(spec, d, n, n_nets=6000, seed=7, method="conditional")
    h, h_se = s.hypoactivation(burn_in=16)
    r, r_se = s.lag1(burn_in=16)
    law = log_norm(spec, d, n, order="exact")
    assert law.hypoactivation == 0 and law.lag1 == 0
    assert abs(h) <= 4 * h_se and abs(r) <= 4 * r_se
    # and the standard ResNet at the same size is clearly hypoactive (the contrast has power)
    res = simulate_log_norm(ModelSpec("resnet", 2.0), d, n, n_nets=6000, seed=8,
                            method="conditional")
    hr, hr_se = res.hypoactivation(burn_in=16)
    assert hr < h - 4 * np.hypot(h_se, hr_se)


def test_depth_scaled_contrast():
    # branch variance c/(n d): Var L_d stays O(1/n) as d grows; unscaled it grows ~ d/n
    n, c = 64, 2.0
    spec = ModelSpec("resnet", c)
    v = {}
    for scaled in (False, True):
        for d in (8, 64):
            s = simulate_log_norm(spec, d, n, n_nets=4000, seed=9 + d, method="conditional",
                                  depth_scaled=scaled, record=False)
            v[scaled, d] = (s.var(), s.se_var())
    ratio_scaled = v[True, 64][0] / v[True, 8][0]
    ratio_plain = v[False, 64][0] / v[False, 8][0]
    assert 0.7 < ratio_scaled < 1.4
    assert ratio_plain > 5.0
    assert v[True, 64][0] * n < 2 * (2 * c + 3)  # O(1/n), not O(d/n)


def test_simulation_input_validation(tmp_path):
    spec = ModelSpec("mlp", 2.0)
    with pytest.raises(SimulationError):
        simulate_log_norm(spec, 4, 8, n_nets=1)
    with pytest.raises(SimulationError):
        simulate_log_norm(spec, 4, 8, method="magic")
    with pytest.raises(HyperparameterError, match="max_chunk"):  # not silently dropped
        simulate_log_norm(spec, 4, 8, max_chunk_elements=64)
    s = simulate_log_norm(spec, 8, 16, n_nets=500, method="exact")
    with pytest.raises(SimulationError):
        s.hypoactivation()  # the scalar sampler records no active fractions
    if not torch.cuda.is_available():
        with pytest.raises(SimulationError):
            simulate_log_norm(spec, 4, 8, device="cuda")
    out = plot_log_norm(s, log_norm(spec, 8, 16, order="exact"), tmp_path / "fig.png")
    assert out.exists() and out.stat().st_size > 5000


@pytest.mark.slow
@pytest.mark.parametrize("c", [1.0, 2.0])
def test_resnet_n256_d128_slow(c):
    n, d = 256, 128
    law = log_norm(ModelSpec("resnet", c), d, n, order="1/n")
    s = simulate_log_norm(ModelSpec("resnet", c), d, n, n_nets=20_000, seed=11, method="exact")
    _assert_moments(s, law, mean_extra=2 * d / n**2, var_rel_extra=10 / n)
    h, h_se = s.hypoactivation(burn_in=32)
    assert abs(h - law.hypoactivation) <= 4 * h_se + 3 / n * abs(law.hypoactivation)
    r, r_se = s.lag1(burn_in=32)
    assert abs(r - law.lag1) <= 4 * r_se + 3 / n * law.lag1


@pytest.mark.slow
def test_explicit_torch_resnet_n128_slow():
    n, d = 128, 64
    spec = ModelSpec("resnet", 1.0)
    law = log_norm(spec, d, n, order="1/n")
    s = simulate_log_norm(spec, d, n, n_nets=2000, seed=12, method="torch")
    _assert_moments(s, law, mean_extra=2 * d / n**2, var_rel_extra=10 / n)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", [ModelSpec("mlp", 2.0), ModelSpec("balanced", 2.0),
                                  ModelSpec("resnet", 2.0)], ids=["mlp", "balanced", "resnet"])
def test_explicit_torch_gpu_n256_d128(spec):
    n, d = 256, 128
    order = "1/n" if spec.kind == "resnet" else "exact"
    law = log_norm(spec, d, n, order=order)
    s = simulate_log_norm(spec, d, n, n_nets=8000, seed=13, method="torch", device="cuda")
    assert s.device.startswith("cuda")
    extra = (2 * d / n**2, 10 / n) if spec.kind == "resnet" else (0.0, 0.0)
    _assert_moments(s, law, *extra)


@pytest.mark.parametrize("spec", [ModelSpec("mlp", 2.0), ModelSpec("balanced", 2.0)],
                         ids=["mlp", "balanced"])
def test_output_kurtosis_against_explicit_networks(spec):
    # y = w.x^d/sqrt(n) with w ~ N(0, I): E y^4/(E y^2)^2 = 3 E[R^2]/E[R]^2, R = |x^d|^2.
    # R = |x^0|^2 exp(L): L from explicit torch networks, |x^0|^2 ~ chi^2_n independently
    n, d = 16, 4
    law = log_norm(spec, d, n, order="exact")
    s = simulate_log_norm(spec, d, n, n_nets=20_000, seed=21, method="torch", record=False)
    rng = np.random.default_rng(22)
    r = rng.chisquare(n, s.n_nets) * np.exp(s.log_norm)
    m1, m2 = r.mean(), (r * r).mean()
    est = 3 * m2 / m1**2
    # delta-method standard error of 3 m2/m1^2
    grad = np.array([-6 * m2 / m1**3, 3 / m1**2])
    cov = np.cov(np.vstack([r, r * r])) / s.n_nets
    se = float(np.sqrt(grad @ cov @ grad))
    assert abs(est - law.kurtosis_exact) <= 4 * se, (est, se, law.kurtosis_exact)
    assert law.kurtosis_exact > 3.0


@pytest.mark.parametrize("spec", [ModelSpec("mlp", 2.0, 0.3), ModelSpec("resnet", 2.0),
                                  ModelSpec("balanced", 2.0)], ids=["leaky", "resnet", "balanced"])
def test_explicit_networks_are_the_built_architecture(spec):
    """method="torch" simulates the networks critsym.build makes of the spec's architecture:
    L_d equals ln(|h^d|²/|h^0|²) of the same (seed, network) networks run without
    renormalisation, whatever the chunking."""
    from critsym.finite_width.simulate import simulate_log_norm as simulate_spec
    from critsym.finite_width.simulate import spec_architecture, unit_inputs
    from critsym.torch.build import build

    n, d, nets, seed = 12, 5, 7, 4
    s = simulate_log_norm(spec, d, n, n_nets=nets, seed=seed, method="torch", device="cpu")
    chunked = simulate_spec(spec, d, n, n_nets=nets, seed=seed, method="torch", device="cpu",
                            max_chunk_elements=3 * n * n)  # chunks of 3 networks
    assert np.array_equal(s.log_norm, chunked.log_norm)
    net = build(spec_architecture(spec, d), n, d, n_nets=nets, seed=seed, device="cpu")
    x = unit_inputs(seed, 0, nets, n, torch.device("cpu"), torch.float64)
    with torch.no_grad():
        h = net(x.unsqueeze(1)).squeeze(1)
    direct = torch.log((h * h).sum(1)).numpy()  # |h^0| = 1
    np.testing.assert_allclose(s.log_norm, direct, rtol=1e-12, atol=1e-12)
