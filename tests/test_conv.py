"""Conv, pooling and the ResNet block: theory vs independent formulas and
Monte Carlo of real (circular-padded) conv nets."""

import math

import pytest
import torch

import critsym as cs
from critsym.errors import ArchitectureError, DerivationError, SimulationError
from critsym.torch.conv import StackedConv
from critsym.torch.modules import BuildContext
from critsym.torch.validate import extrapolate


def resnet_formula(K, sw, sb, mu):
    """docs/theory.md#one-block-recursions: LN→relu→W→LN→relu→W (+μ)."""
    a = sw**2 / 2
    return mu**2 * K + a + sb**2, mu**2 + (a / K) * a / (a + sb**2)


@pytest.mark.parametrize("sw,sb,mu,K", [(1.4, 0.0, 1.0, 1.0), (1.1, 0.3, 0.9, 2.5),
                                        (2.0, 0.7, 0.0, 0.4)])
def test_resnet_block_matches_closed_form(sw, sb, mu, K):
    th = cs.derive(cs.resnet_block())
    F, chi = resnet_formula(K, sw, sb, mu)
    hp = dict(sigma_w=sw, sigma_b=sb, mu=mu)
    assert th.variance_map(K, **hp) == pytest.approx(F, rel=1e-12)
    assert th.chi_J(K, **hp) == pytest.approx(chi, rel=1e-12)


def test_stacked_conv_equals_torch_conv2d_circular():
    g = [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)]
    ctx = BuildContext(n_nets=2, width=5, values={}, generators=g)
    conv = StackedConv.init(ctx, 4, 5, 3, 2, 1.3, 0.2, "circular")
    x = torch.randn(2, 3, 6, 7, 4, dtype=torch.float64)  # (nets, batch, H, W, C)
    y = conv(x)
    for i in range(2):
        ref = torch.nn.functional.conv2d(
            torch.nn.functional.pad(x[i].permute(0, 3, 1, 2), [1, 1, 1, 1], mode="circular"),
            conv.weight[i], conv.bias[i])
        assert torch.allclose(y[i], ref.permute(0, 2, 3, 1), atol=1e-12)
    # initialization scale: fan_in = C_in * k^2
    w = conv.weight
    assert float((w**2).mean() * 4 * 9) == pytest.approx(1.3**2, rel=0.35)


def within_one_over_n(widths, est, se, ref, z_max: float = 4.0):
    """critsym.validate's rule: the Monte Carlo means at two or more widths, extrapolated
    linearly in 1/N to N → ∞ with propagated standard errors, within ``z_max`` of the theory."""
    a, sa, _ = extrapolate(widths, est, se)
    assert abs(a - ref) <= z_max * sa, (widths, est, se, ref, a, sa)


def test_resnet_monte_carlo_matches_theory():
    """6×6 maps at 32 and 64 channels, 3 blocks, 24 networks each: K^l and J^{0,l}
    extrapolated in 1/C (the O(1/C) corrections of the two-layer LN branch removed, not
    tolerated), |z| ≤ 4."""
    arch = cs.resnet_block()
    hp = dict(sigma_w=1.2, sigma_b=0.2, mu=1.0)
    widths = (32, 64)
    sims = [cs.simulate_maps(arch, (6, 6, C), 3, n_nets=24, n_probes=4, seed=1 + i, **hp)
            for i, C in enumerate(widths)]
    th = cs.derive(arch).run(3, K0=1.0, **hp)
    for q in ("K", "J"):
        for layer in range(1, 4):
            within_one_over_n(widths, [getattr(s, q)[layer] for s in sims],
                              [getattr(s, q + "_se")[layer] for s in sims],
                              getattr(th, q)[layer])


def test_conv_theory_is_the_linear_rule_and_errors():
    assert cs.derive(cs.Act("tanh") >> cs.Conv(3)).F == cs.derive(cs.Act("tanh") >> cs.Linear()).F
    with pytest.raises(ArchitectureError, match="odd"):
        cs.Conv(2)
    with pytest.raises(ArchitectureError, match="padding"):
        cs.Conv(3, padding="reflect")
    with pytest.raises(SimulationError, match="smaller than the kernel"):
        cs.simulate_maps(cs.Act("relu") >> cs.Conv(5), (3, 3, 8), 1, n_nets=2,
                         sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(SimulationError, match="spatial"):
        cs.simulate_maps(cs.Act("relu") >> cs.Conv(3), (16,), 1, n_nets=2,
                         sigma_w=1.0, sigma_b=0.0)
    with pytest.raises(DerivationError, match="pool_theory"):
        cs.derive(cs.Conv(3) >> cs.AvgPool(2))
    with pytest.raises(DerivationError, match="readout"):
        cs.derive(cs.Conv(3) >> cs.GlobalAvgPool())


def test_global_pool_readout_matches_monte_carlo():
    """White input → 2 vanilla relu conv layers → global average pool, at 48 and 96 channels
    (1/C-extrapolated, |z| ≤ 4).  Theory: every spatial offset's correlation follows the c-map
    from 0, so K_pool = K(1+(P-1)c)/P and J_pool = J/P."""
    H, n_nets, sw, sb = 6, 24, 1.5, 0.3
    widths = (48, 96)
    P = H * H
    blk = cs.Act("relu") >> cs.Conv(3)
    hp = dict(sigma_w=sw, sigma_b=sb)

    def pooled(C, seed):
        """Per-network K and J of the pooled readout at C channels."""
        nets = cs.torch.feature_maps.build_maps(cs.Conv(3), (H, H, C), 1, n_nets=n_nets,
                                                seed=seed, **hp)
        body = cs.torch.feature_maps.build_maps(blk, (H, H, C), 1, n_nets=n_nets, seed=seed + 1,
                                                **hp)
        gen = torch.Generator().manual_seed(seed + 4)
        x = torch.randn(n_nets, 1, H, H, C, generator=gen, dtype=torch.float64)
        x = x / x.pow(2).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt()  # K0 = 1, white

        def f(z):
            return body[0](nets[0](z)).mean(dim=(2, 3))  # (n, 1, C)

        with torch.no_grad():
            y = f(x)
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        _, t = torch.func.jvp(f, (x,), (v,))
        return y.pow(2).mean(dim=(1, 2)).numpy(), (t.pow(2).sum(dim=(1, 2)) / C).numpy()

    runs = [pooled(C, 5 + 10 * i) for i, C in enumerate(widths)]
    # theory: input layer (identity -> Conv) then relu -> Conv; first map is a Linear of x
    K1 = sw**2 * 1.0 + sb**2
    c1 = sb**2 / K1  # positions of a white input are uncorrelated
    th = cs.derive(blk).run(1, K0=K1, c0=c1, **hp)
    K2, c2, J2 = th.K[-1], th.c[-1], sw**2 * th.J[-1]
    K_pool, factor = cs.pool_theory(K2, c2, P)
    for k, ref in ((0, K_pool), (1, J2 * factor)):
        est = [r[k].mean() for r in runs]
        se = [r[k].std(ddof=1) / math.sqrt(n_nets) for r in runs]
        within_one_over_n(widths, est, se, ref)


def test_resnet_criticality_through_the_public_api():
    """μ = 1 ResNet: K^l = K^0 + lB, χ = 1 + A/K (A = a²/(a+σ_b²), B = a+σ_b², a = σ_w²/2), so
    J^{0,l} ~ l^{A/B}; the critical μ (χ* = 1) at fixed σ's is 1."""
    th = cs.derive(cs.resnet_block())
    sw, sb = 1.4, 0.3
    a = sw**2 / 2
    p = a * a / (a + sb**2) / (a + sb**2)
    assert cs.fit_p(th, sigma_w=sw, sigma_b=sb, mu=1.0).value == pytest.approx(p, abs=1e-5)
    assert float(cs.critical_point(th, "mu", sigma_w=sw, sigma_b=sb)) == pytest.approx(1, abs=1e-9)


def test_new_operators_round_trip_json():
    for a in (cs.resnet_block(), cs.mixer_block(), cs.two_layer_block("conv", "tanh", "post"),
              cs.Conv(5, 1.2, 0, padding="zeros", dim=1, channels=7) >> cs.AvgPool(2)
              >> cs.GlobalAvgPool()):
        assert cs.from_json(a.to_json()) == a


def test_zero_padding_labelled_as_an_approximation():
    import warnings

    import torch
    from torch import nn

    import critsym as cs
    from critsym.interop.padded import CHAIN_NOTE

    x = torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = {}
    for mode in ("zeros", "circular"):
        torch.manual_seed(0)
        conv = [nn.Conv2d(8, 8, 3, padding=1, padding_mode=mode) for _ in range(3)]
        model = nn.Sequential(conv[0], nn.ReLU(), conv[1], nn.ReLU(), conv[2]).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels[mode] = cs.from_torch(model).approximations
            labels[mode, "maps"] = cs.from_torch(model, x).approximations
    assert labels["circular"] == labels["circular", "maps"] == {}
    # without the input maps: the bulk theory, each zero-padded conv labelled
    assert set(labels["zeros"]) == {"0", "2", "4"}
    assert all("zero padding" in v for v in labels["zeros"].values())
    # with them: the position-resolved theory, one note for the body
    assert labels["zeros", "maps"] == {"0 (zero padding)": CHAIN_NOTE}
