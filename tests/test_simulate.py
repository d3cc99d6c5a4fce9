"""Monte Carlo estimators: unbiased against the exact Jacobian, forward and reverse mode
consistent, inputs and chunking handled, bad input rejected with SimulationError."""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
import torch

import critsym as cs
from critsym.errors import SimulationError
from critsym.torch.estimators import jvp_norms, jvp_norms_folded, make_probes

sim_mod = importlib.import_module("critsym.torch.simulate")
HP = dict(sigma_w=1.2, sigma_b=0.3)
ARCH = cs.mlp_block("tanh", layernorm="pre", residual_mu=0.8)


def _exact_frobenius(net, h0, layer):
    """‖∂h^layer/∂h^0‖_F² per network by torch.autograd.functional.jacobian (independent)."""
    out = []
    for i in range(net.n_nets):
        def f(z, i=i):
            full = h0.clone()
            full[i] = z
            return net.trajectory(full.unsqueeze(1))[layer][i, 0]
        J = torch.autograd.functional.jacobian(f, h0[i])
        out.append(float((J**2).sum()))
    return np.array(out)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher", "sphere"])
def test_hutchinson_unbiased_against_full_jacobian(probe):
    N, L, n = 12, 4, 3
    net = cs.build(ARCH, N, L, n_nets=n, seed=2, **HP)
    h0 = torch.randn(n, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    P = 3000
    V = make_probes(probe, P, h0.shape, generator=torch.Generator().manual_seed(7))
    sq = jvp_norms_folded(lambda z: net.trajectory(z), h0, V)  # (P, L+1, n)
    for layer in (1, L):
        exact = _exact_frobenius(net, h0, layer)
        est = sq[:, layer].mean(0).numpy()
        se = sq[:, layer].std(0).numpy() / math.sqrt(P)
        assert np.all(np.abs(est - exact) <= 4 * se), (probe, layer, est, exact, se)
    ex = jvp_norms_folded(lambda z: net.trajectory(z), h0,
                          make_probes("exact", 0, h0.shape)).mean(0)
    np.testing.assert_allclose(ex[L].numpy(), _exact_frobenius(net, h0, L), rtol=1e-10)


def test_vmap_and_folded_forward_mode_agree():
    net = cs.build(ARCH, 10, 3, n_nets=2, seed=4, **HP)
    h0 = torch.randn(2, 10, dtype=torch.float64)
    V = make_probes("gaussian", 5, h0.shape, generator=torch.Generator().manual_seed(3))
    a = jvp_norms_folded(lambda z: net.trajectory(z), h0, V)
    b = jvp_norms(lambda z: net.trajectory(z), h0, V)
    torch.testing.assert_close(a, b)


def test_forward_and_reverse_mode_agree_exactly():
    L = 5
    r = cs.simulate(ARCH, 10, L, n_nets=3, exact=True, l=L, l0=2, seed=5, **HP)
    r0 = cs.simulate(ARCH, 10, L, n_nets=3, exact=True, l=L, l0=0, seed=5, **HP)
    # J^{2,L} forward == J^{2,L} reverse; J^{0,L} forward == J^{0,L} reverse
    np.testing.assert_allclose(r.J_nets[L], r.J_to_nets[2], rtol=1e-10)
    np.testing.assert_allclose(r0.J_nets[L], r0.J_to_nets[0], rtol=1e-10)
    np.testing.assert_allclose(r.J_nets[2], 1.0, rtol=1e-12)
    assert np.all(np.isnan(r.J_nets[:2]))


def test_reverse_mode_estimate_unbiased():
    L = 4
    ex = cs.simulate(ARCH, 16, L, n_nets=2, exact=True, l=L, seed=6, **HP)
    mc = cs.simulate(ARCH, 16, L, n_nets=2, n_probes=2000, l=L, seed=6, **HP)
    # identical networks and inputs, so only probe noise: for Gaussian u,
    # Var ‖Jᵀu‖² = 2‖J Jᵀ‖_F² ≤ 2‖J‖_F⁴, so the relative standard error is ≤ √(2/P)
    rel = np.abs(mc.J_to_nets / ex.J_to_nets - 1)
    assert np.all(rel < 4 * math.sqrt(2 / 2000))


def test_given_inputs_fix_K0_and_c0():
    x = np.random.default_rng(0).normal(size=(2, 20))
    r = cs.simulate(cs.mlp_block("relu"), 20, 3, n_nets=4, inputs=x, sigma_w=1.4, sigma_b=0.1)
    assert r.K[0] == pytest.approx(np.mean(x[0] ** 2))
    c0 = x[0] @ x[1] / np.linalg.norm(x[0]) / np.linalg.norm(x[1])
    assert r.c[0] == pytest.approx(c0) and r.c0 == pytest.approx(c0)
    one = cs.simulate(cs.mlp_block("relu"), 20, 3, n_nets=4, inputs=x[0], sigma_w=1.4,
                      sigma_b=0.1)
    assert one.c is None


def test_default_inputs_exact_K0_c0_and_theory():
    r = cs.simulate(cs.mlp_block("erf"), 32, 3, n_nets=4, K0=2.0, c0=0.3, sigma_w=1.0,
                    sigma_b=0.2)
    np.testing.assert_allclose(r.K_nets[0], 2.0, rtol=1e-12)
    np.testing.assert_allclose(r.c_nets[0], 0.3, rtol=1e-12)
    th = r.theory()
    assert th.K[0] == pytest.approx(2.0)


def test_chunking_does_not_change_results_and_oom_falls_back(monkeypatch):
    kw = dict(n_nets=5, n_probes=2, seed=9, **HP)
    a = cs.simulate(ARCH, 8, 3, **kw)
    b = cs.simulate(ARCH, 8, 3, chunk_size=2, **kw)
    np.testing.assert_allclose(a.K_nets, b.K_nets, rtol=1e-12)
    np.testing.assert_allclose(a.J_nets, b.J_nets, rtol=1e-12)
    assert b.chunks == [2, 2, 1]
    real = sim_mod._run_chunk
    calls = []

    def flaky(*args, **kw2):
        calls.append(args[3])
        if args[3] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate ...")
        return real(*args, **kw2)

    monkeypatch.setattr(sim_mod, "_run_chunk", flaky)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = cs.simulate(ARCH, 8, 3, **kw)
    assert any("out of memory" in str(x.message) for x in w)
    assert max(c.chunks) <= 2 and sum(c.chunks) == 5
    np.testing.assert_allclose(a.J_nets, c.J_nets, rtol=1e-12)


def test_float32_and_progress(capsys):
    r = cs.simulate(cs.mlp_block("gelu"), 16, 3, n_nets=4, dtype=torch.float32, chunk_size=2,
                    progress=True, sigma_w=1.4, sigma_b=0.1)
    assert r.dtype == "torch.float32"
    assert "4/4" in capsys.readouterr().err


@pytest.mark.parametrize("kw,match", [
    (dict(width=0), "width"),
    (dict(depth=0), "depth"),
    (dict(n_probes=0), "n_probes"),
    (dict(n_nets=-1), "n_nets"),
    (dict(inputs=np.zeros((3, 8))), "shape"),
    (dict(inputs=np.ones(7)), "shape"),
    (dict(inputs=np.full(8, np.nan)), "non-finite"),
    (dict(inputs=np.zeros(8)), "zero"),
    (dict(l0=5), "l0"),
    (dict(l=-1), "l must"),
    (dict(c0=1.5), "c0"),
    (dict(K0=-1.0), "K0"),
    (dict(probe="cauchy"), "probe"),
])
def test_simulate_bad_input(kw, match):
    args = dict(width=8, depth=3, n_nets=2, sigma_w=1.0, sigma_b=0.1)
    args.update(kw)
    with pytest.raises(SimulationError, match=match):
        cs.simulate(cs.mlp_block("tanh"), **args)


def test_non_finite_values_in_a_run():
    with pytest.raises(SimulationError, match="non-finite"):
        cs.simulate(cs.mlp_block("relu"), 16, 20, n_nets=2, dtype=torch.float32,
                    sigma_w=40.0, sigma_b=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu_networks():
    kw = dict(n_nets=8, n_probes=2, seed=3, exact=True, **HP)
    a = cs.simulate(ARCH, 32, 6, device="cpu", **kw)
    b = cs.simulate(ARCH, 32, 6, device="cuda", **kw)
    assert b.device.startswith("cuda")
    # same seeds give different networks on different devices (different generators), so
    # compare statistics: both against the theory at 4 standard errors of their difference
    th = a.theory()
    for r in (a, b):
        assert np.all(np.abs(r.K[1:] - th.K[1:]) < 4 * r.K_se[1:] + 0.1 * th.K[1:])
