"""The independent transformer reference reproduces the published n → ∞ numbers and obeys its
own exact limits."""

import math

import numpy as np
import pytest

from tests import _transformer_reference as ref

# ViT-base-like init of labofdoubt/transformers-apjn: σ = 0.64·√(768/1024) (≈ 0.554256), σ₂ = 2σ
S = 0.64 * math.sqrt(768 / 1024)
VIT = dict(sigma_o=S, sigma_v=S, sigma_1=S, sigma_2=2 * S, q0=1.0, p0=0.2, finite_n=False)


def test_published_pre_ln_numbers():
    r = ref.run(64, 196, norm="pre", **VIT)
    assert r.j[64] == pytest.approx(9.633009, rel=1e-6)
    assert r.q[64] == pytest.approx(16.63923, rel=1e-6)


def test_published_derf_number():
    r = ref.run(64, 196, norm="derf", alpha=1.0, **VIT)
    assert r.j[64] == pytest.approx(33.871406, rel=1e-6)


def test_finite_n_correction_is_order_one_over_n():
    """At n = 196 the finite-n form moves J^{0,64} by O(1/n), and the two forms meet as n grows."""
    kw = {k: v for k, v in VIT.items() if k != "finite_n"}
    gaps = []
    for n in (196, 1960, 19600):
        a = ref.run(64, n, norm="pre", finite_n=True, **kw).j[64]
        b = ref.run(64, n, norm="pre", finite_n=False, **kw).j[64]
        gaps.append(abs(a - b) / b)
    assert 0 < gaps[0] < 0.05
    assert gaps[1] == pytest.approx(gaps[0] / 10, rel=0.1)
    assert gaps[2] == pytest.approx(gaps[1] / 10, rel=0.1)


def test_uniform_attention_alone_closed_form():
    """With zero MLP weights the normalisation-free block is linear: h_a ← μ(μ h_a + W m), m the
    token mean.  The token-mean direction of a tangent (or of the input) grows by μ²(μ² + σ_OV²)
    per block and the n − 1 orthogonal directions by μ⁴; from j⁰ = 1, k⁰ = 0 (and q⁰ = 1, p⁰ = 0)
    the mean carries 1/n of the total: j^L = q^L = [μ^{2L}(μ² + σ²)^L + (n − 1) μ^{4L}]/n."""
    n, mu, s, L = 8, 0.9, 1.3, 5
    r = ref.run(L, n, norm="none", mu=mu, sigma_o=s, sigma_v=1.0, sigma_1=0.0, sigma_2=0.0)
    expect = (mu ** (2 * L) * (mu**2 + s**2) ** L + (n - 1) * mu ** (4 * L)) / n
    assert r.j[L] == pytest.approx(expect, rel=1e-12)
    assert r.q[L] == pytest.approx(expect, rel=1e-12)
    # cross-token parts: p = (g_mean − g_dev)/n and k = (n − 1)/n · p
    p = (mu ** (2 * L) * (mu**2 + s**2) ** L - mu ** (4 * L)) / n
    assert r.p[L] == pytest.approx(p, rel=1e-12)
    assert r.k[L] == pytest.approx((n - 1) / n * p, rel=1e-12)



def test_post_ln_state_is_normalised():
    r = ref.run(6, 17, norm="post", mu=0.5, sigma_o=1.2, sigma_v=1.1, sigma_1=1.5, sigma_2=0.9)
    assert np.allclose(r.q[1:], 1.0)
    assert np.all((r.p[1:] > 0) & (r.p[1:] < 1))


def test_two_independent_pre_ln_references_agree():
    """The general recursion (``run``) and the separately written pre-LN one (``pre_ln_run``)
    give the same trajectory for uniform attention."""
    a = ref.run(12, 8, norm="pre", sigma_o=1.3, sigma_v=0.8, sigma_1=1.2, sigma_2=0.9, q0=1.4,
                p0=0.3)
    b = ref.pre_ln_run(12, 8, sigma_ov=1.3 * 0.8, mlp=(1.2 * 0.9) ** 2, q0=1.4, p0=0.3)
    for x, y in ((a.q, b.K), (a.p, b.O_C), (a.j, b.J), (a.k, b.k)):
        np.testing.assert_allclose(x, y, rtol=1e-12)
