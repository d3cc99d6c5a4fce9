"""Sample statistics shared by the Monte Carlo estimators."""

from __future__ import annotations

import math

import numpy as np


def mean_se(samples, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``axis`` and its standard error std(ddof=1)/√n (NaN where n = 1)."""
    a = np.moveaxis(np.asarray(samples, dtype=float), axis, -1)
    n = a.shape[-1]
    m = a.mean(axis=-1)
    se = a.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.full(m.shape, np.nan)
    return m, se
