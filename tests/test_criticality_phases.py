"""Phase structure with several fixed points, against a brute-force reference (numpy/scipy
quadrature of the one-block maps of docs/theory.md, tests/_phase_reference.py): all fixed
points and their stability, the attractor reached from K0, continuous critical points versus
first-order jumps with their saddle-nodes, on every built-in activation × block form."""

import numpy as np
import pytest
from _phase_reference import ACTS, Block, all_roots, attractor
from _phase_reference import transitions as ref_transitions
from scipy import optimize

import critsym as cs
from critsym.criticality import FirstOrderTransition, FirstOrderTransitionError, transitions
from critsym.criticality.fixed_point import classify_phase
from critsym.errors import HyperparameterError, NoCriticalPointError

ACTIVATIONS = sorted(ACTS)
# (form, layernorm, residual, sigma_b, mu) of the reference Block and of critsym.mlp_block
FORMS = {
    "vanilla": ("vanilla", None, None, 0.3, 0.0),
    "vanilla_sb0": ("vanilla", None, None, 0.0, 0.0),
    "residual": ("residual", None, True, 0.3, 0.5),
    "ln_pre": ("pre", "pre", True, 0.3, 0.5),
    "ln_post": ("post", "post", True, 0.3, 0.5),
}
BRACKET = (0.3, 3.0)


def theory_of(act, form):
    _, ln, res, _, _ = FORMS[form]
    return cs.derive(cs.mlp_block(act, layernorm=ln, residual_mu=res))


def hp_of(theory, form):
    _, _, _, sb, mu = FORMS[form]
    return {"sigma_b": sb, **({"mu": mu} if "mu" in theory.hyperparameter_names else {})}


# the vanilla and LN-pre forms in the default suite, the others (≈2 min) with -m slow
SLOW_FORMS = {"vanilla_sb0", "residual", "ln_post"}


@pytest.mark.parametrize("form", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FORMS
                                  else f for f in sorted(FORMS)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_transitions_match_brute_force(act, form, single_thread):
    """Every crossing of χ_J* = 1 along σ_w: same kind (continuous / jump) and location as a
    dense scan of the independent χ_J*, jumps with the same χ_J* on both sides."""
    rform, _, _, sb, mu = FORMS[form]
    th = theory_of(act, form)
    got = transitions(th, "sigma_w", bracket=BRACKET, **hp_of(th, form))
    ref = ref_transitions(act, rform, sb, mu, *BRACKET)
    assert len(got) == len(ref), (got, ref)
    for g, r in zip(got, ref, strict=True):
        if r[0] == "continuous":
            assert isinstance(g, float), (g, r)
            # σ_b = 0: K* = 0 on one side, where χ_J* − 1 is quadratic (analytic φ) or
            # ∝ √K* (elu, selu): the root is ~1e-6 sharp
            assert g == pytest.approx(r[1], abs=5e-6 if sb == 0 else 1e-7)
            # continuous: |log χ_J*| of the independent maps vanishes towards the root from
            # both sides (at most ∝ √distance where K* runs off to infinity)
            for side in (-1.0, 1.0):
                far, near = (abs(np.log(attractor(Block(act, rform, g + side * d, sb, mu))[1]))
                             for d in (1e-6, 1e-8))
                assert near <= 1e-6 or near <= 0.3 * far, (side, far, near)
        else:
            assert isinstance(g, FirstOrderTransition), (g, r)
            assert g.at == pytest.approx(r[1], abs=1e-7)
            assert g.chi_below == pytest.approx(r[2], rel=1e-5)
            assert g.chi_above == pytest.approx(r[3], rel=1e-5)


def _slow_if(act, form):
    """elu/selu quadrature is ~10× slower: their non-vanilla forms run with -m slow."""
    slow = act in ("elu", "selu") and form != "vanilla"
    return pytest.param(act, form, marks=pytest.mark.slow) if slow else (act, form)


@pytest.mark.parametrize("act,form", [_slow_if(a, f) for a in ACTIVATIONS for f in sorted(FORMS)])
def test_fixed_points_match_brute_force(act, form, single_thread):
    """All fixed points in [1e-5, 1e3] with their stability, and the one K0 = 1 flows to
    (its χ_J*), at four σ_w across the bracket."""
    rform, _, _, sb, mu = FORMS[form]
    th = theory_of(act, form)
    sws = np.array([0.5, 1.2, 1.6, 2.4])
    fp = cs.fixed_point(th, sigma_w=sws, **hp_of(th, form))
    for i, sw in enumerate(sws):
        blk = Block(act, rform, sw, sb, mu)
        ref = all_roots(blk)
        got = [(K, st) for K, st in zip(fp.roots_K[i], fp.roots_stable[i], strict=True)
               if np.isfinite(K) and 1e-5 <= K <= 1e3]
        assert len(got) == len(ref), (sw, got, ref)
        for (Kg, sg), (Kr, sr) in zip(got, ref, strict=True):
            assert Kg == pytest.approx(Kr, rel=1e-9)
            assert sg == sr
        Kr, chir = attractor(blk)
        if np.isinf(Kr):
            assert fp.status[i] == "unbounded"
        elif Kr == 0:
            assert fp.status[i] == "zero"
        else:
            assert fp.K_star[i] == pytest.approx(Kr, rel=1e-9)
        assert fp.chi_star[i] == pytest.approx(chir, rel=1e-5, abs=1e-9)


def _iterate(blk, K0, n=4000):
    K = K0
    for _ in range(n):
        K = float(blk.F(K))
        if K > 1e30:
            return np.inf
    return K


@pytest.mark.parametrize("act", ["silu", "gelu", "swish", "tanh", "elu"])
def test_reached_fixed_point_by_iteration(act, single_thread):
    """The fixed point reported for K0 is where the plain recursion K ← F(K) goes (K0 on both
    sides of an unstable fixed point in the bistable region)."""
    th = theory_of(act, "vanilla")
    for K0 in (0.3, 3.0):
        fp = cs.fixed_point(th, K0=K0, sigma_w=1.55, sigma_b=0.3)
        K = _iterate(Block(act, "vanilla", 1.55, 0.3), K0)
        if np.isinf(K):
            assert fp.status == "unbounded"
        else:
            assert float(fp.K_star) == pytest.approx(K, rel=1e-8)


# ---------------------------------------------------------------- the reproducers


def _ref_saddle_node(act, sb, lo, hi, Kwin=(0.05, 5.0)):
    """σ_w where the stable and unstable fixed points merge: min_K (F(K) − K)/K = 0 (bounded
    minimisation between them), bisected in σ_w."""
    def m(sw):
        blk = Block(act, "vanilla", sw, sb)
        r = optimize.minimize_scalar(lambda k: float(blk.F(k)) / k - 1, bounds=Kwin,
                                     method="bounded", options={"xatol": 1e-12})
        return r.fun, r.x

    while hi - lo > 1e-11:
        c = 0.5 * (lo + hi)
        if m(c)[0] < 0:
            lo = c
        else:
            hi = c
    K = m(lo)[1]
    return lo, K, float(Block(act, "vanilla", lo, sb).chi(K))


@pytest.mark.parametrize("act,sb,at,below,above,sn", [
    ("silu", 0.3, 1.59931, 0.838, 1.279, 1.614),
    ("gelu", 0.3, 1.462895, 0.843, 1.070, None),
])
def test_critical_point_never_returns_a_jump(act, sb, at, below, above, sn, single_thread):
    """Small σ_b: χ_J* jumps across 1 where the unstable fixed point crosses K0 = 1; the
    stable branch ends at a saddle-node with χ_J < 1.  critical_point refuses, with the jump."""
    th = cs.derive(cs.mlp_block(act))
    with pytest.raises(FirstOrderTransitionError, match="first-order") as ei:
        cs.critical_point(th, "sigma_w", sigma_b=sb)
    t = ei.value.transitions[0]
    assert t.at == pytest.approx(at, abs=1e-5)
    assert t.chi_below == pytest.approx(below, abs=1e-3)
    assert t.chi_above == pytest.approx(above, abs=1e-3)
    assert (t.status_below, t.status_above) == ("finite", "unbounded")
    ref_sn, ref_K, ref_chi = _ref_saddle_node(act, sb, t.at, 2.0)
    assert t.saddle_node == pytest.approx(ref_sn, abs=1e-8)
    assert t.saddle_node_K == pytest.approx(ref_K, rel=1e-3)  # K ~ sqrt(x) at a saddle-node
    assert t.saddle_node_chi == pytest.approx(ref_chi, abs=1e-3)
    assert t.saddle_node_chi < 1
    if sn is not None:
        assert t.saddle_node == pytest.approx(sn, abs=1e-3)
    assert np.isnan(cs.critical_point(th, "sigma_w", sigma_b=sb, on_missing="nan"))
    line = cs.critical_line(th, "sigma_b", [sb], "sigma_w")
    assert np.isnan(line.y[0]) and line.first_order[0] == pytest.approx(t.at, abs=1e-9)


def test_gelu_sigma_b_zero_jump_and_transcritical_end(single_thread):
    """σ_b = 0: K = 0 is stable (χ_J* = σ_w²/4) up to σ_w = 2, K0 = 1 leaves it at 1.533530."""
    th = cs.derive(cs.mlp_block("gelu"))
    (t,) = transitions(th, "sigma_w", sigma_b=0.0)
    assert t.at == pytest.approx(1.533530, abs=1e-5)
    assert t.chi_below == pytest.approx(t.at**2 / 4, rel=1e-6)  # χ_J(0) = σ_w² φ'(0)²
    assert t.chi_above == pytest.approx(1.176, abs=1e-3)
    assert t.status_below == "zero" and t.saddle_node == pytest.approx(2.0, abs=1e-8)


def test_gelu_stable_critical_line_starts_at_the_cusp(single_thread):
    """docs/theory.md: a stable critical line exists only for σ_b² ≥ 0.1729224, from σ_w² =
    1.983058; below, the transition is first order."""
    th = cs.derive(cs.mlp_block("gelu"))
    above = cs.critical_point(th, "sigma_w", sigma_b=np.sqrt(0.1729224 + 1e-4))
    assert above**2 == pytest.approx(1.983058, abs=2e-3)
    with pytest.raises(FirstOrderTransitionError):
        cs.critical_point(th, "sigma_w", sigma_b=np.sqrt(0.1729224 - 1e-4))


def test_tanh_reference_critical_point(single_thread):
    th = cs.derive(cs.mlp_block("tanh"))
    assert cs.critical_point(th, "sigma_w", sigma_b=0.2) == pytest.approx(1.30414584, abs=1e-8)


def test_summary_does_not_contradict_itself(single_thread):
    th = cs.derive(cs.mlp_block("silu"))
    s = cs.summary(th, sigma_w=1.5993100458971592, sigma_b=0.3)
    assert s["critical_sigma_w"] is None
    assert s["first_order_sigma_w"] == pytest.approx(1.59931, abs=1e-5)
    assert s["bistable"] and s["attractors"] == 2
    assert s["phase"] == "ordered" and "off-critical (ordered" in s["universality"]
    assert "first-order transition" in s["text"]
    tanh = cs.derive(cs.mlp_block("tanh"))
    sw = cs.critical_point(tanh, "sigma_w", sigma_b=0.2)
    s = cs.summary(tanh, sigma_w=sw, sigma_b=0.2)
    assert s["phase"] == "critical" and s["universality"] == "K*>0 critical line"
    assert s["critical_sigma_w"] == pytest.approx(sw, abs=1e-12)


@pytest.mark.parametrize("branch", [
    lambda: cs.LayerNorm() >> cs.Act("relu") >> cs.Linear() >> cs.Act("relu") >> cs.Linear(),
    lambda: cs.LayerNorm() >> cs.Linear() >> cs.Act("gelu") >> cs.Linear(),
])
@pytest.mark.parametrize("sb", [0.0, 0.3])
def test_hand_written_pre_ln_residual_is_critical_everywhere(branch, sb, single_thread):
    """Two layers behind one LayerNorm, μ = 1: χ_J* = 1 for every σ_w.  The former solver
    returned the bracket edge σ_w = 0.001 here as a critical point."""
    th = cs.derive(cs.Residual(branch(), 1))
    with pytest.raises(NoCriticalPointError, match="critical everywhere"):
        cs.critical_point(th, "sigma_w", sigma_b=sb)
    fp = cs.fixed_point(th, sigma_w=np.array([0.5, 3.0]), sigma_b=sb)
    np.testing.assert_allclose(fp.chi_star, 1.0, atol=1e-12)


@pytest.mark.parametrize("block", [
    lambda: cs.resnet_block(),
    lambda: cs.two_layer_block("linear", "relu", layernorm="pre"),
    pytest.param(lambda: cs.two_layer_block("linear", "gelu", layernorm="pre"),
                 marks=pytest.mark.slow),
])
@pytest.mark.parametrize("sb", [0.0, 0.3])
def test_everywhere_critical_block_has_no_isolated_point(block, sb, single_thread):
    """A two-layer pre-LN residual block at μ = 1 is critical for every σ_w: no root, not the
    bracket edge."""
    th = cs.derive(block())
    with pytest.raises(NoCriticalPointError, match="critical everywhere"):
        cs.critical_point(th, "sigma_w", sigma_b=sb, mu=1.0)
    fp = cs.fixed_point(th, sigma_w=np.array([1e-3, 0.5, 3.0]), sigma_b=sb, mu=1.0)
    assert list(fp.status) == ["unbounded"] * 3 and list(fp.growth) == ["linear"] * 3
    np.testing.assert_allclose(fp.chi_star, 1.0, atol=1e-12)


@pytest.mark.parametrize("act,limit", [("elu", 1.5**2 / 2),
                                       ("selu", 1.5**2 * 1.0507009873554805**2 / 2)])
def test_elu_selu_large_K_chi_is_a_number(act, limit, single_thread):
    """χ_J → σ_w² λ²/2 at large K (φ' → λ on the positive side, → 0 on the negative side);
    the engine's quadrature is NaN above K ≈ 3e3, the limit is extrapolated."""
    th = cs.derive(cs.mlp_block(act))
    fp = cs.fixed_point(th, sigma_w=1.5, sigma_b=0.1)
    assert fp.status == "unbounded"
    assert float(fp.chi_star) == pytest.approx(limit, abs=2e-6)
    assert fp.phase() == "chaotic"


def test_nan_is_never_a_phase():
    assert list(classify_phase([np.nan, 1.0, 0.5, 2.0])) == [
        "undetermined", "critical", "ordered", "chaotic"]


def test_large_bias_fixed_point_is_not_capped(single_thread):
    """σ_b = 1e6 puts K* at 1e12: a finite fixed point, where the recursion converges."""
    th = cs.derive(cs.mlp_block("tanh"))
    fp = cs.fixed_point(th, sigma_w=1.0, sigma_b=1e6)
    run = th.run(20, sigma_w=1.0, sigma_b=1e6)
    assert fp.status == "finite" and fp.growth == "none"
    assert float(fp.K_star) == pytest.approx(float(run.K[-1]), rel=1e-14)
    relu = cs.derive(cs.mlp_block("relu"))
    fp = cs.fixed_point(relu, sigma_w=1.0, sigma_b=1e6)  # K* = σ_b²/(1 − σ_w²/2) = 2e12
    assert float(fp.K_star) == pytest.approx(2e12, rel=1e-12)


def test_selu_exponents_bounded_in_time(single_thread):
    """Symbolic work has a time budget: LN-pre + μ = 1 selu answers A/B, vanilla selu's K → 0
    series (a kink at 0) is refused symbolically and fitted numerically at a critical point."""
    import time

    ln = cs.derive(cs.mlp_block("selu", layernorm="pre", residual_mu=1))
    t0 = time.perf_counter()
    ex = cs.analytic_exponents(ln, sigma_w=1.0, sigma_b=0.0, budget=5)
    A = Block("selu", "pre", 1.0, 0.0, 1.0)
    assert ex.p == pytest.approx(A.D1 / A.E1, rel=1e-9)  # p = E φ'²/E φ² at σ_b = 0
    v = cs.derive(cs.mlp_block("selu"))
    with pytest.raises(HyperparameterError, match="numeric values"):
        cs.analytic_exponents(v, sigma_b=0, budget=5)
    sw = cs.critical_point(v, "sigma_w", sigma_b=0.0)
    ex = cs.analytic_exponents(v, sigma_w=sw, sigma_b=0.0, budget=5)
    assert "fitted" in ex.note and ex.p < 0
    assert time.perf_counter() - t0 < 120


def test_phase_grid_marks_bistable_and_first_order(single_thread):
    th = cs.derive(cs.mlp_block("silu"))
    sws = np.linspace(1.3, 1.7, 41)
    g = cs.phase_grid(th, "sigma_w", sws, "sigma_b", [0.3])
    # bistable between the onset of unbounded growth (σ_w² = 2) and the saddle-node 1.6141
    bi = g.bistable[0]
    assert not bi[sws < 1.41].any() and bi[(sws > 1.42) & (sws < 1.61)].all()
    assert not bi[sws > 1.62].any()
    j = np.nonzero(g.first_order[0])[0]
    assert j.size == 1 and sws[j[0]] < 1.59931 < sws[j[0] + 1]


def test_transitions_input_checks():
    th = cs.derive(cs.mlp_block("tanh"))
    with pytest.raises(HyperparameterError, match="scalar"):
        transitions(th, "sigma_w", sigma_b=[0.1, 0.2])
