"""Sample statistics: Monte Carlo means with standard errors, and the one (weighted) linear
regression with standard errors used by every fit in critsym."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def mean_se(samples, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``axis`` and its standard error std(ddof=1)/√n (NaN where n = 1)."""
    a = np.moveaxis(np.asarray(samples, dtype=float), axis, -1)
    n = a.shape[-1]
    m = a.mean(axis=-1)
    se = a.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(m.shape, np.nan)
    return m, se


@dataclass(frozen=True)
class Regression:
    r"""Least-squares coefficients β of y ≈ A β with their covariance.

    With known errors σ_i (weights w = 1/σ²): β = (AᵀWA)⁻¹AᵀWy, Cov β = (AᵀWA)⁻¹.  Without:
    ordinary least squares with the residual variance s² = |y − Aβ|²/(n − p), Cov β = s²(AᵀA)⁻¹
    (NaN when n <= p: no residual degrees of freedom).
    """

    coef: np.ndarray
    cov: np.ndarray = field(repr=False)
    dof: int

    @property
    def se(self) -> np.ndarray:
        """Standard errors of the coefficients, sqrt(diag Cov β)."""
        return np.sqrt(np.diag(self.cov))

    def __repr__(self) -> str:
        terms = ", ".join(f"{c:.6g} ± {s:.2g}" for c, s in zip(self.coef, self.se, strict=True))
        return f"Regression([{terms}], dof={self.dof})"


def regress(A, y, sigma=None) -> Regression:
    """Fit y ≈ A β (columns of ``A`` are the regressors); ``sigma``: known standard errors of
    y (weighted fit), else the residual variance sets the errors (see :class:`Regression`)."""
    A = np.asarray(A, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = A.shape
    if sigma is not None:
        w = 1.0 / np.asarray(sigma, dtype=float) ** 2
        cov = np.linalg.pinv(A.T @ (A * w[:, None]))
        return Regression(cov @ (A.T @ (w * y)), cov, n - p)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = n - p
    r = y - A @ coef
    s2 = float(r @ r) / dof if dof > 0 else np.nan
    return Regression(coef, np.linalg.pinv(A.T @ A) * s2, dof)


def line_fit(x, y, sigma=None, extra=()) -> Regression:
    """y ≈ β₀ + β₁ x (+ β₂ extra₀ + …): :func:`regress` with the columns [1, x, *extra]."""
    x = np.asarray(x, dtype=float)
    A = np.column_stack([np.ones_like(x), x, *[np.asarray(e, dtype=float) for e in extra]])
    return regress(A, y, sigma)
