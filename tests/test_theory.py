"""Numeric evaluation: Theory.run on grids equals point-by-point evaluation; errors."""

import numpy as np
import pytest

import critsym as cs
from critsym.errors import HyperparameterError, NumericalError


@pytest.mark.parametrize("arch", [cs.mlp_block("tanh"), cs.mlp_block("relu", "pre", True),
                                  cs.mlp_block("erf", "post")], ids=repr)
def test_grid_equals_pointwise(arch):
    th = cs.derive(arch)
    sw, sb = np.meshgrid(np.linspace(0.6, 1.8, 4), np.linspace(0.0, 0.8, 3))
    hp = dict(sigma_w=sw, sigma_b=sb)
    if "mu" in th.hyperparameter_names:
        hp["mu"] = 0.9
    grid = th.run(8, K0=0.7, c0=0.3, **hp)
    assert grid.K.shape == (9, 3, 4) and grid.c.shape == (9, 3, 4)
    for i in range(3):
        for j in range(4):
            p = {k: (v[i, j] if np.ndim(v) else v) for k, v in hp.items()}
            pt = th.run(8, K0=0.7, c0=0.3, **p)
            np.testing.assert_allclose(grid.K[:, i, j], pt.K, rtol=1e-13)
            np.testing.assert_allclose(grid.J[:, i, j], pt.J, rtol=1e-13)
            np.testing.assert_allclose(grid.c[:, i, j], pt.c, rtol=1e-12)
            # and the recursion itself: K^{l+1} = F(K^l), J^{l+1} = χ(K^l) J^l
            for layer in range(8):
                assert pt.K[layer + 1] == pytest.approx(
                    float(th.variance_map(pt.K[layer], **p)), rel=1e-13)
                assert pt.J[layer + 1] == pytest.approx(
                    pt.J[layer] * float(th.chi_J(pt.K[layer], **p)), rel=1e-13)


def test_relu_closed_form_trajectory():
    th = cs.derive(cs.mlp_block("relu"))
    r = th.run(5, K0=1.0, sigma_w=1.5, sigma_b=0.0)
    np.testing.assert_allclose(r.K, (1.5**2 / 2) ** np.arange(6), rtol=1e-14)
    np.testing.assert_allclose(r.J, (1.5**2 / 2) ** np.arange(6), rtol=1e-14)
    np.testing.assert_allclose(r.J_from(2), (1.5**2 / 2) ** np.arange(4), rtol=1e-14)


def test_ln_pre_residual_exact_apjn():
    """LN-pre + μ=1 (docs/theory.md#everywhere-critical): K^l = K^0 + lB,
    J^{0,l} = Π (1 + A/K^m)."""
    th = cs.derive(cs.mlp_block("relu", "pre", 1))
    sw, sb, K0 = 1.3, 0.4, 0.5
    A, B = sw**2 / 2, sw**2 / 2 + sb**2
    r = th.run(20, K0=K0, sigma_w=sw, sigma_b=sb)
    Kl = K0 + B * np.arange(21)
    np.testing.assert_allclose(r.K, Kl, rtol=1e-13)
    np.testing.assert_allclose(r.J[1:], np.cumprod(1 + A / Kl[:-1]), rtol=1e-12)


def test_run_errors():
    th = cs.derive(cs.mlp_block("tanh"))
    with pytest.raises(HyperparameterError, match="missing values for \\['sigma_b'\\]"):
        th.run(3, sigma_w=1.0)
    with pytest.raises(HyperparameterError, match="unknown hyperparameters"):
        th.run(3, sigma_w=1.0, sigma_b=0.1, mu=1)
    with pytest.raises(HyperparameterError, match="incompatible shapes"):
        th.run(3, sigma_w=np.ones(3), sigma_b=np.ones(4))
    with pytest.raises(HyperparameterError, match=">= 0"):
        th.run(3, sigma_w=1.0, sigma_b=-0.1)
    with pytest.raises(HyperparameterError, match="non-finite"):
        th.run(3, sigma_w=np.nan, sigma_b=0.1)
    with pytest.raises(HyperparameterError, match="K0"):
        th.run(3, K0=-1, sigma_w=1.0, sigma_b=0.1)
    with pytest.raises(HyperparameterError, match="depth"):
        th.run(-2, sigma_w=1.0, sigma_b=0.1)
    with pytest.raises(HyperparameterError, match="c0"):
        th.run(2, c0=1.5, sigma_w=1.0, sigma_b=0.1)
    relu = cs.derive(cs.mlp_block("relu"))
    with pytest.raises(NumericalError, match="non-finite"):
        relu.run(1200, K0=1.0, sigma_w=3.0, sigma_b=0.0)
    r = relu.run(1200, K0=1.0, sigma_w=3.0, sigma_b=0.0, allow_nonfinite=True)
    assert np.isinf(r.K[-1])


def test_high_precision_on_request():
    th = cs.derive(cs.mlp_block("tanh"))
    hi = th.chi_J(0.5, precision=40, sigma_w=1.3, sigma_b=0.2)
    lo = th.chi_J(0.5, sigma_w=1.3, sigma_b=0.2)
    assert abs(float(hi) - float(lo)) < 1e-13


def test_symbolic_outputs():
    import sympy as sp

    th = cs.derive(cs.mlp_block("relu"))
    assert sp.simplify(th.F - (cs.sigma_w**2 * cs.K / 2 + cs.sigma_b**2)) == 0
    assert sp.simplify(th.chi - cs.sigma_w**2 / 2) == 0
    erf = cs.derive(cs.mlp_block("erf"))
    K = cs.K
    assert sp.simplify(erf.chi - 4 * cs.sigma_w**2 / (sp.pi * sp.sqrt(1 + 4 * K))) == 0
    assert sp.simplify(
        erf.F - (2 * cs.sigma_w**2 / sp.pi * sp.asin(2 * K / (1 + 2 * K)) + cs.sigma_b**2)) == 0
