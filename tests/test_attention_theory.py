"""Token states and the two-part tangent (j, k) of attention blocks, against closed forms and
explicit matrix computations written here independently of the fold."""

import numpy as np
import pytest
import sympy as sp

import critsym as cs
from critsym.errors import ArchitectureError, DerivationError, HyperparameterError


def pre_ln_attention(n, regime="uniform", mu=1, **kw):
    return cs.Residual(cs.LayerNorm() >> cs.Attention(n, regime, **kw), mu)


def pre_ln_relu_mlp():
    return cs.Residual(cs.LayerNorm() >> cs.Linear("sigma_1", 0) >> cs.Act("relu")
                       >> cs.Linear("sigma_2", 0), 1)


def kappa_relu(rho):
    """E[relu(u) relu(v)] for unit Gaussians of correlation rho (arc-cosine kernel)."""
    return (np.sqrt(1 - rho**2) + rho * (np.pi - np.arccos(rho))) / (2 * np.pi)


def uniform_tangent(n, s2, qhat, phat):
    """The finite-n map of uniform attention with residual behind a per-token norm (written out
    by hand)."""
    return np.array([[1 + s2 * qhat / n, s2 * phat],
                     [s2 * qhat * (n - 1) / n**2, 1 + s2 * phat * (n - 1) / n]])


@pytest.fixture(scope="module")
def uniform8():
    return cs.derive(pre_ln_attention(8))


def test_uniform_attention_forward_and_tangent(uniform8):
    th = uniform8
    assert th.token_state and th.token_mixing and th.n_tokens == 8
    assert th.hyperparameter_names == ("sigma_o", "sigma_v")
    n, sv, so = 8, 1.3, 0.7
    s2 = (sv * so) ** 2
    for q, p in [(1.0, 0.2), (2.5, 1.9), (0.7, 0.05)]:
        rho = p / q
        nu = 1 / n + (1 - 1 / n) * rho  # variance of the token mean after LN
        st = th.state_map(K=q, O_C=p, sigma_v=sv, sigma_o=so)
        assert st["K"] == pytest.approx(q + s2 * nu, rel=1e-12)
        assert st["O_C"] == pytest.approx(p + s2 * nu, rel=1e-12)
        assert st["O_T"] == 0
        M = th.tangent_map(K=q, O_C=p, sigma_v=sv, sigma_o=so)
        np.testing.assert_allclose(M, uniform_tangent(n, s2, 1 / q, 1 / q), rtol=1e-12)


def test_token_offset_enters_through_the_layernorm_scale(uniform8):
    """With a per-token offset O_T the LayerNorm scale is s² = K − O_T."""
    q, ot, p = 2.0, 0.5, 0.3
    M = uniform8.tangent_map(K=q, O_T=ot, O_C=p, sigma_v=1.0, sigma_o=1.0)
    np.testing.assert_allclose(M, uniform_tangent(8, 1.0, 1 / (q - ot), 1 / (q - ot)),
                               rtol=1e-12)


def test_chi_is_the_perron_root(uniform8):
    hp = dict(sigma_v=1.0, sigma_o=1.0)
    M = uniform8.tangent_map(K=1.4, O_C=0.3, **hp)
    lam = max(abs(np.linalg.eigvals(M)))
    assert float(uniform8.chi_J(K=1.4, O_C=0.3, **hp)) == pytest.approx(lam, rel=1e-12)
    assert lam > M[0, 0]


def test_naive_product_misses_the_two_part_tangent():
    """n = 8, σ_OV = 1: the naive product of M_jj differs from the true J (the (j, k)
    recursion, iterated here with the closed-form matrices)."""
    n, depth = 8, 12
    th = cs.derive(pre_ln_attention(n))
    r = th.run(depth, K0=1.0, O_C0=0.0, sigma_v=1.0, sigma_o=1.0)
    q, p, jk, naive = 1.0, 0.0, np.array([1.0, 0.0]), 1.0
    for layer in range(depth):
        M = uniform_tangent(n, 1.0, 1 / q, 1 / q)
        jk = M @ jk
        naive *= M[0, 0]
        nu = 1 / n + (1 - 1 / n) * p / q
        q, p = q + nu, p + nu
        assert r.K[layer + 1] == pytest.approx(q, rel=1e-12)
        assert r.J[layer + 1] == pytest.approx(jk[0], rel=1e-12)
        assert r.k[layer + 1] == pytest.approx(jk[1], rel=1e-12)
    np.testing.assert_allclose(r.chi, r.J[1:] / r.J[:-1], rtol=1e-12)
    assert r.J[-1] / naive > 1.3  # the coupling through k adds 30 % and more here


def test_relu_mlp_sub_block_factors():
    th = cs.derive(pre_ln_relu_mlp(), tokens=True)
    assert th.token_state and not th.token_mixing
    s1, s2 = 0.8, 1.3
    mlp = (s1 * s2) ** 2
    for q, p in [(1.0, 0.2), (3.0, 2.4), (1.5, 0.1)]:
        rho = p / q
        st = th.state_map(K=q, O_C=p, sigma_1=s1, sigma_2=s2)
        assert st["K"] == pytest.approx(q + mlp / 2, rel=1e-12)
        assert st["O_C"] == pytest.approx(p + mlp * kappa_relu(rho), rel=1e-12)
        M = th.tangent_map(K=q, O_C=p, sigma_1=s1, sigma_2=s2)
        cross = 0.25 + np.arcsin(rho) / (2 * np.pi)
        np.testing.assert_allclose(M, [[1 + mlp / (2 * q), 0], [0, 1 + mlp * cross / q]],
                                   rtol=1e-12, atol=1e-15)


def test_relu_cross_factor_against_numeric_integration():
    """E[relu'(u) relu'(v)] = P(u > 0, v > 0) = 1/4 + asin(ρ)/(2π), checked against scipy's
    numeric bivariate normal CDF."""
    from scipy.stats import multivariate_normal

    th = cs.derive(cs.Act("relu") >> cs.Linear(1.0, 0), tokens=True)
    for rho in (0.0, 0.1, 0.7):
        orthant = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([0, 0])
        M = th.tangent_map(K=1.0, O_C=rho)
        assert M[1, 1] == pytest.approx(orthant, abs=1e-5)
        assert M[1, 1] == pytest.approx(0.25 + np.arcsin(rho) / (2 * np.pi), rel=1e-12)


def softmax_rows(G):
    e = np.exp(G - G.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_deterministic_attention_against_the_explicit_softmax():
    """A = softmax(β·Gram) built as an n × n matrix; forward and tangent of W_O A W_V LN(h)
    plus the residual from the matrix sums (no closed form used)."""
    n, sqk, tau, sv, so = 6, 1.4, 0.8, 1.1, 0.9
    th = cs.derive(pre_ln_attention(n, "deterministic", tau=tau))
    assert set(th.hyperparameter_names) == {"sigma_o", "sigma_qk", "sigma_v"}
    beta = sqk**2 / tau
    for q, p, ot in [(1.0, 0.2, 0.0), (2.0, 1.1, 0.3)]:
        s = q - ot
        gram = np.full((n, n), p / s) + np.eye(n) * (1 - p / s)  # LN'd tokens
        A = softmax_rows(beta * gram)
        assert A[0, 0] == pytest.approx(1 / (1 + (n - 1) * np.exp(-beta * (1 - p / s))))
        # values: V = σ_v² (token covariance of the LN output)
        C = sv**2 * gram
        Y = A @ C @ A.T
        hp = dict(sigma_v=sv, sigma_o=so, sigma_qk=sqk)
        st = th.state_map(K=q, O_T=ot, O_C=p, **hp)
        assert st["K"] == pytest.approx(q + so**2 * Y[0, 0], rel=1e-12)
        assert st["O_C"] == pytest.approx(p + so**2 * Y[0, 1], rel=1e-12)
        # tangent: T = j I + κ (11ᵀ − I) for the LN'd input, through A on both sides
        for j, kap in [(1.0, 0.0), (0.0, 1.0)]:
            T = (j * np.eye(n) + kap * (np.ones((n, n)) - np.eye(n))) / s
            TY = (sv * so) ** 2 * A @ T @ A.T
            jn, kn = j + TY[0, 0], kap + TY[0, 1]
            M = th.tangent_map(K=q, O_T=ot, O_C=p, **hp)
            k = kap * (n - 1) / n
            np.testing.assert_allclose(M @ [j, k], [jn, kn * (n - 1) / n], rtol=1e-12)


def test_two_inputs_mix_with_their_own_attention():
    """The covariance of two inputs with different laws uses each input's own A."""
    from critsym.fold import Offsets, input_signal, output_variable

    n, beta = 5, 1.7
    att = cs.Attention(n, "deterministic", sigma_qk=sp.sqrt(beta), sigma_v=1, sigma_o=1)
    qa, qb, k12, pa, pb, p12 = 1.0, 2.0, 0.6, 0.3, 0.9, 0.2
    s = input_signal(sp.Float(qa), sp.Float(qb), sp.Float(k12), tokens=True,
                     noff=Offsets(sp.Float(pa), sp.Float(pb), sp.Float(p12)))
    out = output_variable(att.apply(s))

    def A(q, p):
        return softmax_rows(beta * (np.full((n, n), p) + np.eye(n) * (q - p)))

    Aa, Ab = A(qa, pa), A(qb, pb)
    C12 = np.full((n, n), p12) + np.eye(n) * (k12 - p12)  # Cov(x^α_c, x^β_c')
    Y12 = Aa @ C12 @ Ab.T
    assert float(out.cov) == pytest.approx(Y12[0, 0], rel=1e-12)
    assert float(out.noff.ab) == pytest.approx(Y12[0, 1], rel=1e-12)
    Ya = Aa @ (np.full((n, n), pa) + np.eye(n) * (qa - pa)) @ Aa.T
    assert float(out.var_a) == pytest.approx(Ya[0, 0], rel=1e-12)


def vit_reference(depth, n, q0, p0, so, sv, s1, s2, finite_n=True):
    """Pre-LN ViT block (uniform attention, ReLU MLP), written out by hand.
    ``finite_n=False``: the n → ∞ form (ν = ρ, n − 1 ≈ n, 1/n terms kept in the tangent)."""
    a, m = (so * sv) ** 2, (s1 * s2) ** 2
    q, p, j, k = q0, p0, 1.0, 0.0
    c = (n - 1) / n if finite_n else 1.0
    for _ in range(depth):
        rho = p / q
        nu = 1 / n + (1 - 1 / n) * rho if finite_n else rho
        j, k = (1 + a / (q * n)) * j + a / q * k, (1 + a * c / q) * k + a * c / (q * n) * j
        q, p = q + a * nu, p + a * nu
        rho = p / q
        j, k = (1 + m / (2 * q)) * j, (1 + m * (0.25 + np.arcsin(rho) / (2 * np.pi)) / q) * k
        q, p = q + m / 2, p + m * kappa_relu(rho)
    return q, j


def vit_block(n):
    return pre_ln_attention(n) >> pre_ln_relu_mlp()


S = 0.64 * np.sqrt(768 / 1024)
VIT = dict(sigma_v=S, sigma_o=S, sigma_1=S, sigma_2=2 * S)


def test_vit_base_stack_finite_n():
    th = cs.derive(vit_block(196))
    r = th.run(64, K0=1.0, O_C0=0.2, **VIT)
    q, j = vit_reference(64, 196, 1.0, 0.2, S, S, S, 2 * S)
    assert r.K[-1] == pytest.approx(q, rel=1e-10)
    assert r.J[-1] == pytest.approx(j, rel=1e-10)


def test_vit_base_stack_matches_the_large_n_form():
    """At large n the finite-n recursion reaches the n → ∞ form's q^64 = 16.63923 (the peer's
    value); the peer's J^{0→64} = 9.633009 keeps 1/n = 1/196 terms that vanish here."""
    n = 10**9
    r = cs.derive(vit_block(n)).run(64, K0=1.0, O_C0=0.2, **VIT)
    q, j = vit_reference(64, n, 1.0, 0.2, S, S, S, 2 * S, finite_n=False)
    assert r.K[-1] == pytest.approx(16.63923, abs=1e-5)
    assert r.K[-1] == pytest.approx(q, rel=1e-8)
    assert r.J[-1] == pytest.approx(j, rel=1e-8)


def test_bad_attention_input_is_a_clear_error():
    with pytest.raises(ArchitectureError, match="n_tokens"):
        cs.Attention(1)
    with pytest.raises(ArchitectureError, match="regime"):
        cs.Attention(4, "softmax")
    with pytest.raises(HyperparameterError, match="uniform"):
        cs.Attention(4, sigma_qk=1.0)
    with pytest.raises(HyperparameterError, match="tau"):
        cs.Attention(4, "deterministic", tau=0)
    with pytest.raises(ArchitectureError, match="heads"):
        cs.Attention(4, heads=0)
    with pytest.raises(ArchitectureError, match="different numbers of tokens"):
        cs.derive(cs.Attention(4) >> cs.Attention(5))
    with pytest.raises(DerivationError, match="Transpose"):
        cs.derive(pre_ln_attention(4) >> cs.Transpose() >> cs.Linear() >> cs.Transpose())
    with pytest.raises(HyperparameterError, match="k0"):
        cs.derive(cs.Act("tanh") >> cs.Linear()).run(2, k0=0.5, sigma_w=1, sigma_b=0)


def test_attention_round_trips_and_has_latex(uniform8):
    for a in (cs.Attention(8), cs.Attention(6, "deterministic", sigma_qk=1.2, heads=2, tau=0.5,
                                           sigma_b_o=0.1)):
        assert cs.from_json(a.to_json()) == a
    text = uniform8.latex()
    assert "k^{l+1}" in text and "j^{l+1}" in text


def test_collapsing_tokens_never_give_nan():
    """Pre-LN blocks with μ < 1 collapse the tokens (ρ → 1), where the arc-cosine kernels lose
    digits; the run keeps p just below q and stays finite, with no NaN warning."""
    import warnings

    block = pre_ln_attention(17, mu="mu", sigma_v="sigma_w", sigma_o="sigma_w") >> cs.Residual(
        cs.LayerNorm() >> cs.Linear("sigma_w", 0) >> cs.Act("relu") >> cs.Linear("sigma_w", 0),
        "mu")
    mu = np.round(np.arange(0.1, 1.01, 0.1), 2)[:, None]
    sw = np.sqrt(np.round(np.arange(0.1, 4.11, 0.5), 2))[None, :]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = cs.derive(block).run(60, K0=1.0, O_C0=0.0, mu=mu, sigma_w=sw)
    assert np.all(np.isfinite(r.O_C)) and np.all(np.isfinite(r.J))
    assert np.all(r.O_C <= r.K) and np.max(r.O_C[-1] / r.K[-1]) > 1 - 1e-6  # collapsed
