r"""The torchvision BasicBlock with BatchNorm at infinite width and infinite batch.

Block (torchvision order, with a residual weight μ):

    x^{l+1} = relu(u^{l+1}),   u^{l+1} = μ x^l + y^l,   y^l = BN(W_2 relu(BN(W_1 x^l + b_1)) + b_2),

``basic_block(mu)`` = ``Residual(Linear() >> BatchNorm() >> Act("relu") >> Linear() >>
BatchNorm(), mu) >> Act("relu")``.  The fold cannot repeat this block: the stream
u = μ relu(u_prev) + y is not Gaussian (a relu of a Gaussian plus a Gaussian), so the state is a
*law*, not (K, O_C).  What is Gaussian is the branch, and the fold derives it:

* the branch Linear → BN → relu → Linear → BN sees its input only through E[x²] = m_2, the
  variance of its per-neuron (sample-shared) component O = E_N[E[x|N]²], and the input's APJN;
  so the fold of the branch on a Gaussian input with (K, O_C) = (m_2, O) is exact for it:
  y ~ N(0, 1) with no per-neuron offset, independent of the stream, and branch APJN factor
  g(m_2, O) = χ_branch(K = m_2, O_C = O) (the fold gives 1/((1 − 1/π)(m_2 − O)));
* with i.i.d. examples (no per-neuron offset at the input) the stream never acquires a random
  per-neuron component (y has none, relu acts per example), so O = (E x)²: the sample-axis
  offset carried through the stream is the squared mean of the activations.

The stream's law and the tangent then follow a one-dimensional recursion (exact at infinite width
and batch): with p_l the density of u^l and w_l(u) = E[t_l² | u^l = u] p_l(u) (t the forward
tangent of u; the tangent of x is relu'(u) t),

    p_{l+1}(u') = ∫ p_l(u) N(u' − μ relu(u); 0, 1) du,
    w_{l+1}(u') = μ² ∫_{u>0} w_l(u) N(u' − μ u; 0, 1) du + g_l J_x^l p_{l+1}(u'),

J_x^l = ∫_{u>0} w_l (the APJN of x^l), K^l = E[(x^l)²] = ∫ relu(u)² p_l, g_l = g(K^l, (E x^l)²).
The tangent is *not* independent of u (the skip path keeps relu'(u_prev) t_prev, correlated with
u), which is why w_l must be carried as a function.  The first block from a Gaussian input x^0
of variance K_0 (no per-neuron offset, isotropic tangent): p_1 = N(0, μ²K_0 + 1),
w_1 = (μ² + g(K_0, 0)) p_1.

Numerics: densities on a uniform grid (spacing ``h``) by trapezoid convolution with a node at 0;
the result at h and h/2 differ by < 1e-4 relative (checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import HyperparameterError
from ..ops import Act, Linear, Residual
from ..ops.base import Op
from ..ops.batchnorm import BatchNorm
from ..symbols import mu as _mu
from ..theory import RunResult


def basic_block(mu: object = _mu) -> Op:
    """torchvision's BasicBlock order with BatchNorm and residual weight μ (module doc)."""
    return Residual(Linear() >> BatchNorm() >> Act("relu") >> Linear() >> BatchNorm(), mu) \
        >> Act("relu")


def _normal(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


@dataclass(frozen=True)
class BasicBlockTheory:
    """K^l = E[(x^l)²] and J^{0,l} of the BatchNorm BasicBlock stack (module doc)."""

    h: float = 0.01
    #: grid half-width beyond the stream's range, in units of the branch std (= 1)
    pad: float = 12.0

    @cached_property
    def branch(self):
        """The fold's theory of the branch Linear → BN → relu → Linear → BN (multi-axis)."""
        from ..derive import derive

        return derive(Linear() >> BatchNorm() >> Act("relu") >> Linear() >> BatchNorm())

    def gain(self, m2: float, offset: float, sigma_w: float, sigma_b: float) -> float:
        """The branch's APJN factor for an input with E x² = m2 and per-neuron offset O."""
        return float(self.branch.chi_J(K=m2, O_T=0.0, O_C=offset, sigma_w=sigma_w,
                                       sigma_b=sigma_b))

    def branch_variance(self, m2: float, offset: float, sigma_w: float, sigma_b: float) -> float:
        return float(self.branch.variance_map(K=m2, O_T=0.0, O_C=offset, sigma_w=sigma_w,
                                              sigma_b=sigma_b))

    def run(self, depth: int, K0: float = 1.0, *, sigma_w: float, sigma_b: float,
            mu: float) -> RunResult:
        """K^l, J^{0,l} (l = 0..depth) from a Gaussian input batch x^0 of variance K0."""
        if not isinstance(depth, (int, np.integer)) or depth < 0:
            raise HyperparameterError(f"depth must be an integer >= 0, got {depth!r}")
        for name, v in (("K0", K0), ("sigma_w", sigma_w)):
            if not (np.isfinite(v) and v > 0):
                raise HyperparameterError(f"{name} must be a finite number > 0, got {v!r}")
        for name, v in (("sigma_b", sigma_b), ("mu", mu)):
            if not (np.isfinite(v) and v >= 0):
                raise HyperparameterError(f"{name} must be finite and >= 0, got {v!r}")
        vy = self.branch_variance(K0, 0.0, sigma_w, sigma_b)  # = 1 (BN output)
        h = self.h
        if depth == 0:
            return RunResult(K=np.array([K0]), J=np.array([1.0]), chi=np.zeros(0))
        # grid: u ranges below -pad and above mu^depth-scaled drift; positive side grows
        top = self.pad * np.sqrt(vy) * (1 + mu * np.sqrt(max(depth, 1))) + mu**2 * np.sqrt(K0)
        top = top * max(1.0, mu) ** depth
        n_lo, n_hi = int(np.ceil(self.pad * np.sqrt(mu**2 * K0 + vy) / h)), int(np.ceil(top / h))
        u = h * np.arange(-n_lo, n_hi + 1)
        trap = np.full(u.shape, h)
        trap[[0, -1]] = h / 2
        step = np.where(u > 0, 1.0, np.where(u == 0, 0.5, 0.0))  # 1{u>0}, 1/2 at the jump
        wpos, wneg = trap * step, trap * (1 - step)
        relu = np.maximum(u, 0)
        sd = np.sqrt(mu**2 * K0 + vy)
        p = _normal(u / sd) / sd
        w = (mu**2 + self.gain(K0, 0.0, sigma_w, sigma_b)) * p
        Ks, Js = [K0, float(np.sum(trap * relu**2 * p))], [1.0, float(np.sum(wpos * w))]
        sy = np.sqrt(vy)
        keep = wpos > 0
        kern = _normal((u[:, None] - mu * u[None, keep]) / sy) / sy  # N(u' - mu u), u >= 0
        base = _normal(u / sy) / sy
        for _ in range(1, depth):
            m1 = float(np.sum(trap * relu * p))
            m2 = float(np.sum(trap * relu**2 * p))
            g = self.gain(m2, m1 * m1, sigma_w, sigma_b)
            # p' = P(u <= 0) N(u') + ∫_{u>0} p(u) N(u' - mu u) du
            p_new = float(np.sum(wneg * p)) * base + kern @ (wpos * p)[keep]
            w = mu**2 * (kern @ (wpos * w)[keep]) + g * Js[-1] * p_new
            p = p_new
            Ks.append(float(np.sum(trap * relu**2 * p)))
            Js.append(float(np.sum(wpos * w)))
        chis = [Js[i + 1] / Js[i] for i in range(depth)]
        return RunResult(K=np.array(Ks[:depth + 1]), J=np.array(Js[:depth + 1]),
                         chi=np.array(chis[:depth]))
