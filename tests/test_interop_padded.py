"""Position-resolved theory of zero-padded conv bodies (critsym.interop.padded).

Closed forms for the stencils; Monte Carlo of hand-built torch conv stacks (plain conv → ReLU,
then conv → BatchNorm → ReLU) with zero padding on small maps, the APJN averaged over all
positions and channels, extrapolated in 1/width, |z| <= 4; and the bulk (circular-padding)
theory rejected on the same measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
from critsym.interop import padded as PD
from critsym.torch.validate import extrapolate

Z_MAX = 4.0


def test_stencil_counts_the_taps_inside_the_map():
    f = np.ones((4, 5))
    out = PD.stencil(f, 3)
    assert out[0, 0] == pytest.approx(4 / 9) and out[0, 2] == pytest.approx(6 / 9)
    assert out[1, 1] == pytest.approx(1.0)
    assert np.allclose(PD.stencil(f, 3, circular=True), 1.0)
    assert PD.stencil(f, 3, stride=2).shape == (2, 3)
    assert np.allclose(PD.stencil(f, 1, stride=2), 1.0)


def test_stencil2_diagonal_is_the_stencil_and_matches_an_explicit_sum():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 6, 4))            # per-channel means m_c(x), 4 channels
    M = np.einsum("ijc,klc->ijkl", g, g) / 4
    out = PD.stencil2(M, 3)
    want = np.zeros_like(M)
    for x in np.ndindex(5, 6):
        for y in np.ndindex(5, 6):
            for d in np.ndindex(3, 3):
                a = (x[0] + d[0] - 1, x[1] + d[1] - 1)
                b = (y[0] + d[0] - 1, y[1] + d[1] - 1)
                if min(a + b) >= 0 and a[0] < 5 and b[0] < 5 and a[1] < 6 and b[1] < 6:
                    want[x + y] += M[a + b] / 9
    assert np.allclose(out, want, atol=1e-14)
    diag = np.einsum("ijij->ij", out)
    assert np.allclose(diag, PD.stencil(np.einsum("ijij->ij", M), 3), atol=1e-14)


def test_circular_padding_gives_the_bulk_recursion():
    """With circular padding every position is alike (closed forms of the Linear recursion):
    conv → ReLU: K_l = (σ_w²K_{l−1} + σ_b²)/2, J_l = (σ_w²/2)^l; conv → BatchNorm → ReLU from
    an input without offsets: K_l = 1/2, J_l = ½·(π/(π−1))^{l−1} (BatchNorm divides by
    σ_w²(½ − 1/(2π)) once the ReLU's mean is there)."""
    sw, sb = 1.4, 0.2
    st = PD.run_maps(cs.Conv(3, sw, sb) >> cs.Act("relu"), np.ones((6, 6)), {}, depth=3)
    K = [1.0]
    for _ in range(3):
        K.append((sw ** 2 * K[-1] + sb ** 2) / 2)
    assert np.allclose([s.K for s in st], np.array(K)[:, None, None], rtol=1e-12)
    assert np.allclose([s.J for s in st], (sw ** 2 / 2) ** np.arange(4)[:, None, None])
    st = PD.run_maps(cs.Conv(3, sw, 0.0) >> cs.BatchNorm() >> cs.Act("relu"), np.ones((6, 6)),
                     {}, depth=3)
    assert np.allclose([s.K for s in st[1:]], 0.5, rtol=1e-10)
    want = 0.5 * (math.pi / (math.pi - 1)) ** np.arange(3)
    assert np.allclose([s.J for s in st[1:]], want[:, None, None], rtol=1e-10)


def test_zero_padding_lowers_the_border():
    st = PD.run_maps(cs.Conv(3, 1.4, 0.0, padding="zeros") >> cs.Act("relu"), np.ones((8, 8)),
                     {}, depth=3)[-1]
    assert st.K[0, 0] < st.K[0, 4] < st.K[4, 4]
    assert np.allclose(st.K, st.K.T) and np.allclose(st.K, st.K[::-1, ::-1])


def _stack(C: int, depth: int, bn: bool, sw: float, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    mods = [nn.Identity()]
    for _ in range(depth):
        c = nn.Conv2d(C, C, 3, 1, 1, bias=False)
        nn.init.normal_(c.weight, 0.0, sw / math.sqrt(9 * C))
        mods += [c] + ([nn.BatchNorm2d(C, track_running_stats=False)] if bn else [])
        mods.append(nn.ReLU())
    return nn.Sequential(*mods).double()


def _measure(widths, seeds, depth, bn, sw, side, offset):
    means, ses = [], []
    for C in widths:
        J = []
        for seed in seeds:
            model = _stack(C, depth, bn, sw, seed)
            g = torch.Generator().manual_seed(1000 + seed)
            x = torch.randn(16, C, side, side, generator=g, dtype=torch.float64)
            x = x + offset * torch.randn(1, C, 1, 1, generator=g, dtype=torch.float64)
            J.append(cs.apjn(model, x, ["0", str(len(model) - 1)], n_probes=4, seed=seed,
                             batch_axis=None).J[-1])
        means.append(float(np.mean(J)))
        ses.append(float(np.std(J, ddof=1) / math.sqrt(len(J))))
    return extrapolate(widths, means, ses)[:2]


def _op(sw: float, bn: bool, padding: str):
    conv = cs.Conv(3, sw, 0.0, padding=padding)
    return conv >> cs.BatchNorm() >> cs.Act("relu") if bn else conv >> cs.Act("relu")


@pytest.mark.parametrize("bn, offset", [(False, 0.0), (True, 1.2)])
def test_zero_padded_conv_stack_matches_monte_carlo(bn, offset):
    """6×6 maps, 2 layers (with BatchNorm: an input with per-channel offsets, which BatchNorm's
    centring over positions leaves at the border); the bulk theory (circular padding) is
    rejected by the same measurements."""
    sw, side, depth = 1.5, 6, 2
    K0 = np.full((side, side), 1.0 + offset ** 2)
    M0 = np.full((side,) * 4, offset ** 2)
    J = PD.run_maps(_op(sw, bn, "zeros"), K0, {}, M0=M0, depth=depth)[-1].J.mean()
    bulk = PD.run_maps(_op(sw, bn, "circular"), K0, {}, M0=M0, depth=depth)[-1].J.mean()
    ext, se = _measure((16, 64), range(6), depth, bn, sw, side, offset)
    assert abs(ext - J) <= Z_MAX * se, (ext, se, J)
    assert abs(ext - bulk) > Z_MAX * se, (ext, se, bulk)


@pytest.mark.parametrize("bn", [False, True])
def test_imported_zero_padded_stack_matches_monte_carlo(bn):
    """``cs.from_torch`` of a zero-padded Conv (→ BatchNorm) → ReLU stack on 6×6 maps runs the
    position-resolved theory (from the measured body input); measured/theory extrapolated in
    1/width is 1 within 4 SE, the bulk theory of the same imports is rejected."""
    ratios, bulk = [], []
    for C in (16, 64):
        r, rb = [], []
        for seed in range(6):
            model = _stack(C, 3, bn, 1.5, seed)
            g = torch.Generator().manual_seed(1000 + seed)
            x = torch.randn(16, C, 6, 6, generator=g, dtype=torch.float64)
            imp = cs.from_torch(model, x)
            assert list(imp.approximations) == [f"{imp.blocks[0].path} (zero padding)"]
            m = cs.apjn(model, x, ["0", imp.outputs[-1]], n_probes=4, seed=seed,
                        batch_axis=None).J[-1]
            r.append(m / imp.J_theory()[-1])
            st = imp.body_input.state()
            st["maps0"] = None
            rb.append(m / imp.network_run(**st).J[-1])
        ratios.append(r)
        bulk.append(rb)

    def fit(rs):
        return extrapolate((16, 64), [np.mean(r) for r in rs],
                           [np.std(r, ddof=1) / math.sqrt(len(r)) for r in rs])[:2]

    ext, se = fit(ratios)
    assert abs(ext - 1) <= Z_MAX * se, (ext, se)
    ext_b, se_b = fit(bulk)
    assert abs(ext_b - 1) > Z_MAX * se_b, (ext_b, se_b)


def test_offset_means_match_two_dimensional_quadrature():
    """E[g_1(c_1) g_2(c_2)] for ReLU, g_x(c) = E relu(m_x + c + ξ_x), (c_1, c_2) Gaussian:
    the Mehler series against scipy's dblquad (1e-7)."""
    from scipy import integrate

    mean = np.array([0.3, -0.2])
    Cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    T = np.array([2.0, 1.5])
    got = PD.offset_means(mean, Cov, T, cs.Act("relu"), {})
    sd = np.sqrt(T - np.diag(Cov))
    det = float(np.linalg.det(Cov))
    inv = np.linalg.inv(Cov)

    def g(c, x):
        a = mean[x] + c
        t = a / sd[x]
        return a * 0.5 * (1 + math.erf(t / math.sqrt(2))) + sd[x] * math.exp(-t * t / 2) / \
            math.sqrt(2 * math.pi)

    def pdf(a, b):
        q = inv[0, 0] * a * a + 2 * inv[0, 1] * a * b + inv[1, 1] * b * b
        return math.exp(-q / 2) / (2 * math.pi * math.sqrt(det))

    want, _ = integrate.dblquad(lambda b, a: g(a, 0) * g(b, 1) * pdf(a, b), -9, 9, -9, 9,
                                epsabs=1e-10, epsrel=1e-10)
    assert got[0, 1] == pytest.approx(want, rel=1e-7)
    want0, _ = integrate.quad(lambda a: g(a, 0) ** 2 * math.exp(-a * a / 2) /
                              math.sqrt(2 * math.pi), -12, 12, epsabs=1e-13)
    assert got[0, 0] == pytest.approx(want0, rel=1e-8)


def test_channel_draws_are_converged(monkeypatch):
    """BatchNorm's expectations over the channels by drawn channels: 2^12 and 2^14 draws agree
    to 0.5 % on a zero-padded conv → BatchNorm → ReLU stack with input offsets."""
    op = _op(1.5, True, "zeros")
    K0, M0 = np.full((6, 6), 2.0), np.full((6,) * 4, 1.0)
    fine = PD.run_maps(op, K0, {}, M0=M0, depth=3)[-1]
    monkeypatch.setattr(PD, "CHANNEL_DRAWS", 1 << 12)
    coarse = PD.run_maps(op, K0, {}, M0=M0, depth=3)[-1]
    assert coarse.J.mean() == pytest.approx(fine.J.mean(), rel=5e-3)
    assert coarse.K.mean() == pytest.approx(fine.K.mean(), rel=5e-3)


def test_resolvable_blocks():
    """Post-activation blocks whose branches are Conv / BatchNorm / activation chains run the
    position-resolved theory; a per-example normalised (GroupNorm → LayerNorm) branch does not."""
    conv = cs.Conv(3, padding="zeros")
    bn_branch = conv >> cs.BatchNorm() >> cs.Act("relu") >> conv >> cs.BatchNorm()
    ln_branch = conv >> cs.LayerNorm() >> cs.Act("relu") >> conv >> cs.LayerNorm()
    assert PD.resolvable(cs.Residual(bn_branch, 1) >> cs.Act("relu"))
    assert not PD.resolvable(cs.Residual(ln_branch, 1) >> cs.Act("relu"))
    assert PD.resolvable(conv >> cs.Act("relu")) and PD.zero_padded(bn_branch)
    assert PD.strides(cs.Parallel(cs.Conv(3, stride=2) >> cs.BatchNorm(),
                                  cs.Conv(1, stride=2)) >> cs.Act("relu")) == [2]
