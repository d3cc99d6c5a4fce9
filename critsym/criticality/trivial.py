r"""The trivial fixed point K* = 0 of a block without biases.

Where φ(0) = 0 and no bias or normalisation lifts the state, K = 0 is a fixed point of the
variance map, F(K) = F'(0)·K + O(K²) (odd φ: O(K²) relative), and the network near it is
linear.  Its χ_J is the K → 0 limit of χ_J,

    χ_J(0) = lim_{K→0} χ_J(K)   (a plain MLP: σ_w² φ'(0)²; tanh: σ_w²),

taken at K = K_MIN (relative error O(K_MIN)).  In that linear regime the state map and the
tangent map are the same linear map, so χ_J(0) is also the rate F'(0) (the leading eigenvalue
of the linearised state map for a vector state) at which K shrinks near 0: K = 0 attracts
small states when χ_J(0) < 1.  A continuous transition out of K* = 0 (a supercritical
pitchfork: tanh without bias at σ_w = 1) therefore sits exactly where χ_J(0) = 1, which
:func:`critsym.criticality.critical_point` solves for directly: on the chaotic side χ_J* − 1
vanishes only quadratically in the distance to the transition, so a root search on χ_J*
itself stalls at ~√(rounding) away from it.
"""

from __future__ import annotations

import numpy as np

from .fixed_point_result import K_MIN

#: K = 0 is a fixed point when F(K_MIN) stays below this multiple of K_MIN
LINEAR_BOUND = 1e3


def trivial_chi(theory, **hp) -> np.ndarray:
    """χ_J at the trivial fixed point K = 0 (its K → 0 limit, offsets 0), broadcast over the
    hyperparameter arrays; NaN where K = 0 is not a fixed point (F(K)/K unbounded as K → 0:
    a bias, φ(0) ≠ 0, a normalisation)."""
    state = {"K": K_MIN}
    if theory.multi_axis:
        state.update(O_T=0.0, O_C=0.0)
    with np.errstate(all="ignore"):
        F = np.asarray(theory.variance_map(**state, **hp), dtype=float)
        chi = np.asarray(theory.chi_J(**state, **hp), dtype=float)
    F, chi = np.broadcast_arrays(F, chi)
    ok = np.isfinite(F) & (np.abs(F) <= LINEAR_BOUND * K_MIN)
    out = np.where(ok, chi, np.nan)
    return out[()] if out.ndim == 0 else out
