"""Token-state fixed points that the orbit approaches very slowly (a Jacobian eigenvalue
within 1e-4 of 1), where plain iteration does not get there and Newton's step heads for a
repelling root: the drift search along the orbit's direction, checked against closed forms.

The model case is a BERT-like post-LN block at small weights: the tokens collapse onto the
boundary O_C = K (by ~2e-5 per block), and there χ_J* has a closed form (below)."""

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import erf

import critsym as cs
from critsym.criticality.state_fixed_point import drift_search
from critsym.errors import HyperparameterError

FREE = np.array([False, False, True])  # K and O_T conserved, O_C free


def _oc_map(f):
    """A (K, O_T, O_C) state map with K' = K, O_T' = O_T and O_C' = f(O_C), per column."""
    def step(x, cols):
        y = x.copy()
        y[2] = f(x[2])
        return y
    return step


def test_drift_search_finds_the_attracting_root_newton_misses():
    # O_C' = O_C + eps (a - O_C)(O_C + c): repelling root -c, attracting root a; at O_C ~ 0
    # the map expands (slope 1 + eps(a - c) > 1), so Newton's step heads for -c
    eps, a, c = 1e-5, 0.37, 0.05
    step = _oc_map(lambda o: o + eps * (a - o) * (o + c))
    x0 = np.array([[1.0, 1.0], [0.0, 0.1], [0.001, 0.01]])
    out = drift_search(step, x0, FREE)
    # the drift M(x) − x is known to one rounding of O_C (2.2e-16), the root to that over the
    # drift's slope |1 − M'(a)| = eps (a + c)
    assert np.allclose(out[2], a, rtol=0, atol=np.finfo(float).eps / (eps * (a + c)))
    assert np.array_equal(out[:2], x0[:2])


def test_drift_search_stops_on_the_collapse_boundary():
    # O_C' = O_C + eps (K - O_C)(1 + O_C): no root inside, the orbit creeps to O_C = K
    eps = 1e-5
    step = _oc_map(lambda o: o + eps * (2.0 - o) * (1 + o))
    out = drift_search(step, np.array([[2.0], [0.0], [0.3]]), FREE)
    assert out[2, 0] == pytest.approx(2.0, abs=1e-12)


def test_drift_search_leaves_a_point_whose_map_has_no_value():
    def step(x, cols):
        raise HyperparameterError("beyond the supported range")

    x0 = np.array([[1.0], [0.0], [0.2]])
    assert np.array_equal(drift_search(step, x0, FREE), x0)


def _gelu_moments(sw: float) -> tuple[float, float]:
    """(E φ(z)², E φ'(z)²), z ~ N(0, σ_w²), φ = GELU (erf form), by scipy quadrature."""
    def phi(z):
        return z * 0.5 * (1 + erf(z / math.sqrt(2)))

    def dphi(z):
        return 0.5 * (1 + erf(z / math.sqrt(2))) + z * math.exp(-z * z / 2) / math.sqrt(
            2 * math.pi)

    def E(f):
        return integrate.quad(lambda z: f(z) * stats.norm.pdf(z, scale=sw), -12 * sw,
                              12 * sw, epsabs=0, epsrel=1e-13)[0]

    return E(lambda z: phi(z) ** 2), E(lambda z: dphi(z) ** 2)


@pytest.fixture(scope="module")
def bert_like():
    """BERT's post-LN block at its width-32 weight scales (σ_V, σ_O ≈ 0.02·√32), σ_w and
    σ_QK free."""
    att = cs.Attention(8, "standard", sigma_v=0.114, sigma_o=0.113)
    return cs.derive(cs.transformer_block(att, mlp_act="gelu", norm="post", mu=1))


@pytest.mark.parametrize("sw", [0.05, 0.139])
def test_post_ln_block_at_small_weights_collapses_with_the_closed_form_chi(bert_like, sw):
    """At collapsed tokens (K = O_C = 1) the logits are constant, attention averages equal
    tokens, and its residual and LayerNorm leave the common direction unchanged (χ = 1 there);
    the MLP residual and LayerNorm give, with z ~ N(0, σ_w²),
    χ_J* = (1 + σ_w⁴ E φ'(z)²) / (1 + σ_w² E φ(z)²) = 1 + σ_w⁶/(2π) + O(σ_w⁸)."""
    th = bert_like
    assert set(th.hyperparameter_names) == {"sigma_w", "sigma_qk"}
    fp = cs.fixed_point(th, K0=1.0, sigma_w=sw, sigma_qk=0.0125)
    assert str(fp.status) == "finite"
    assert float(fp.K_star) == pytest.approx(1.0, abs=1e-12)
    assert float(fp.O_C_star) == pytest.approx(1.0, abs=1e-9)
    e2, d2 = _gelu_moments(sw)
    chi = (1 + sw**4 * d2) / (1 + sw**2 * e2)
    assert float(fp.chi_star) - 1 == pytest.approx(chi - 1, rel=1e-6, abs=1e-14)
    # the orbit's attractor is the boundary: the drift of O_C is positive inside (no interior
    # root on a grid) and the map contracts towards O_C = 1 (slope < 1 there)
    V = [np.full(7, float(v)) for v in th.values(dict(sigma_w=sw, sigma_qk=0.0125))]
    step = th.state_kernel(V, th.state_constants(V))[0]
    oc = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
    drift = step(np.vstack([np.ones(7), np.zeros(7), oc]))[2] - oc
    assert np.all(drift > 0)
    assert drift[-1] < drift[-2]


def test_logits_beyond_the_quadrature_range_are_refused_by_name(bert_like):
    """Where the theory has no support (σ_QK = 30: logit variance 900 at the LayerNorm's
    K = 1, beyond v <= 400), the error says so; it is not an "unconverged" orbit."""
    with pytest.raises(HyperparameterError, match="beyond the supported range v <= 400"):
        cs.fixed_point(bert_like, K0=1.0, sigma_w=0.139, sigma_qk=30.0)


def test_growth_probe_beyond_the_quadrature_range_leaves_the_point_unconverged(bert_like):
    """The growth law of an orbit that did not converge is read from the map at K = 1e8, where
    this block's logit variance (σ_QK² K² ~ 1.6e12) has no quadrature: the point is reported
    "unconverged" (χ_J* NaN), not as the quadrature's range error."""
    from critsym.criticality.state_fixed_point import state_fixed_point

    fp = state_fixed_point(bert_like, 1.0, iterations=1, newton=0, sigma_w=0.139,
                           sigma_qk=0.0125)
    assert str(fp.status) == "unconverged" and math.isnan(float(fp.chi_star))
