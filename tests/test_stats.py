"""The one linear regression (critsym.stats) against numpy.polyfit and textbook formulas."""

import numpy as np
import pytest

from critsym.stats import line_fit, regress

rng = np.random.default_rng(3)


def test_known_errors_match_weighted_polyfit():
    x = np.linspace(0.1, 1.0, 7)
    sigma = rng.uniform(0.05, 0.2, x.size)
    y = 2.0 - 0.7 * x + sigma * rng.standard_normal(x.size)
    fit = line_fit(x, y, sigma=sigma)
    coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")  # [slope, intercept]
    np.testing.assert_allclose(fit.coef, coef[::-1], rtol=1e-12)
    np.testing.assert_allclose(fit.se, np.sqrt(np.diag(cov))[::-1], rtol=1e-10)


def test_unknown_errors_use_the_residual_variance():
    x = np.arange(10.0)
    y = 1.0 + 0.5 * x + 0.3 * rng.standard_normal(x.size)
    fit = line_fit(x, y)
    coef, cov = np.polyfit(x, y, 1, cov=True)  # scaled by the residual variance
    np.testing.assert_allclose(fit.coef, coef[::-1], rtol=1e-12)
    np.testing.assert_allclose(fit.se, np.sqrt(np.diag(cov))[::-1], rtol=1e-10)
    # textbook: SE(slope) = sqrt(s² / Sxx), s² = RSS / (n - 2)
    r = y - fit.coef[0] - fit.coef[1] * x
    se = np.sqrt(r @ r / (x.size - 2) / np.sum((x - x.mean()) ** 2))
    assert fit.se[1] == pytest.approx(se, rel=1e-12)
    # an unweighted fit's error scales with the noise (it ignored it before)
    assert line_fit(x, 1.0 + 0.5 * x + 3 * (y - 1.0 - 0.5 * x)).se[1] == pytest.approx(
        3 * fit.se[1], rel=1e-9)


def test_no_residual_dof_gives_nan_error():
    fit = line_fit([0.0, 1.0], [1.0, 3.0])
    assert fit.coef == pytest.approx([1.0, 2.0]) and np.all(np.isnan(fit.se))


def test_group_offsets_give_the_within_group_slope():
    groups = np.repeat([0, 1, 2], 4)
    x = np.tile([1.0, 2.0, 3.0, 5.0], 3)
    y = 0.8 * x + np.array([0.0, 5.0, -2.0])[groups] + 0.1 * rng.standard_normal(x.size)
    A = np.column_stack([x, groups[:, None] == np.arange(3)])
    fit = regress(A, y)
    xc = x - np.array([x[groups == g].mean() for g in range(3)])[groups]
    yc = y - np.array([y[groups == g].mean() for g in range(3)])[groups]
    slope = xc @ yc / (xc @ xc)
    res = yc - slope * xc
    se = np.sqrt(res @ res / (x.size - 4) / (xc @ xc))
    assert fit.coef[0] == pytest.approx(slope, rel=1e-12)
    assert fit.se[0] == pytest.approx(se, rel=1e-10)
