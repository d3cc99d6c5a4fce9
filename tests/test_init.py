"""critsym.init: critical gains against closed forms and scipy quadrature, critical_ on real
torch models checked by the APJN measured on them, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize
from torch import nn

import critsym as cs
import critsym.init as ci

# ----------------------------------------------------------------------------- references


def _gauss(f, q):
    """E[f(√q z)], z ~ N(0, 1), by adaptive quadrature (abs. error < 1e-12)."""
    s = math.sqrt(q)
    val, _ = integrate.quad(lambda z: f(s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                            -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)
    return val


def tanh_critical_sigma_w(sigma_b: float) -> float:
    """The tanh edge of chaos (Poole et al. 2016, Schoenholz et al. 2017): on the critical line
    σ_w² E[sech⁴(√q z)] = 1 and q = σ_w² E[tanh²(√q z)] + σ_b²; parametrised by q and
    solved for the given σ_b with brentq."""
    def sw2(q):
        return 1.0 / _gauss(lambda x: 1 / math.cosh(x) ** 4, q)

    def sb2(q):
        return q - sw2(q) * _gauss(lambda x: math.tanh(x) ** 2, q)

    q = optimize.brentq(lambda q: sb2(q) - sigma_b ** 2, 1e-8, 50.0, xtol=1e-14)
    return math.sqrt(sw2(q))


def tanh_fixed_point(sigma_w: float, sigma_b: float) -> float:
    return optimize.brentq(
        lambda q: sigma_w ** 2 * _gauss(lambda x: math.tanh(x) ** 2, q) + sigma_b ** 2 - q,
        1e-10, 100.0, xtol=1e-14)


# ----------------------------------------------------------------------------- critical_gain


@pytest.mark.parametrize("activation", ["relu", nn.ReLU(), torch.relu])
@pytest.mark.parametrize("sigma_b", [0.0, 0.3])
def test_relu_gain_is_sqrt2_at_every_sigma_b(activation, sigma_b):
    # χ_J = σ_w² E[1{h>0}] = σ_w²/2, independent of K
    assert ci.critical_gain(activation, sigma_b) == pytest.approx(math.sqrt(2), abs=1e-9)


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.3])
def test_leaky_relu_gain_closed_form(alpha):
    # χ_J = σ_w² (1 + α²)/2
    assert ci.critical_gain(nn.LeakyReLU(alpha)) == pytest.approx(
        math.sqrt(2 / (1 + alpha ** 2)), abs=1e-9)


def test_identity_gain_is_one():
    assert ci.critical_gain("identity") == pytest.approx(1.0, abs=1e-9)


def test_tanh_gain_at_zero_bias_is_one():
    assert ci.critical_gain(nn.Tanh()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("sigma_b", [0.05, 0.1, 0.3, 0.5, 1.0])
def test_tanh_gain_on_the_critical_line_matches_quadrature(sigma_b):
    assert ci.critical_gain(torch.tanh, sigma_b) == pytest.approx(
        tanh_critical_sigma_w(sigma_b), rel=1e-7)


def test_gelu_gain_refuses_a_first_order_transition():
    with pytest.raises(ci.DiscontinuousTransitionError, match="jump") as e:
        ci.critical_gain("gelu", 0.0)
    assert e.value.transitions and isinstance(e.value, cs.CritsymError)
    assert isinstance(e.value, ci.NoCriticalInitError)
    assert isinstance(e.value, cs.criticality.FirstOrderTransitionError)


def test_gain_of_an_unknown_activation_names_what_to_pass():
    with pytest.raises(cs.CritsymError, match="activation name"):
        ci.critical_gain(lambda x: x * 2)
    with pytest.raises(cs.CritsymError, match="Hardtanh"):
        ci.critical_gain(nn.Hardtanh())
    with pytest.raises(cs.CritsymError, match="sigma_b"):
        ci.critical_gain("tanh", -1.0)


# ----------------------------------------------------------------------------- critical_

WIDTH, BATCH, PROBES, NETS = 512, 32, 8, 8


def act_linear_mlp(act: type[nn.Module], depth: int, width: int = WIDTH) -> nn.Sequential:
    """Blocks act >> Linear, the form of the mean-field recursion (nested Sequentials)."""
    return nn.Sequential(*[nn.Sequential(act(), nn.Linear(width, width)) for _ in range(depth)])


def one_block_apjn(res, make, x, a: str, b: str, n_nets: int = NETS):
    """J^{a, b} between two block outputs, measured with cs.apjn on ``n_nets`` independent
    networks drawn at the point ``res`` set: (mean, SE over networks).  Inputs propagated
    through one network become correlated with depth, so the SE over one network's inputs and
    probes misses the network-to-network spread (e.g. relu's fraction of active units); the
    spread over networks has it."""
    Js = []
    for i in range(n_nets):
        model = make()
        res.apply_to(model, generator=torch.Generator().manual_seed(100 + i))
        Js.append(float(cs.apjn(model, x, [a, b], n_probes=PROBES, seed=i).J[1]))
    return float(np.mean(Js)), float(np.std(Js, ddof=1) / math.sqrt(n_nets))


def input_at(K: float, seed: int = 12345, shape=(BATCH, WIDTH)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * math.sqrt(K)


def _assert_unit(J, se):
    assert 0 < se < 0.02, se  # a measurement that can fail
    assert abs(J - 1) <= 4 * se, (J, se, (J - 1) / se)


def test_critical_tanh_mlp_has_unit_one_block_apjn():
    torch.manual_seed(0)

    def make():
        return act_linear_mlp(nn.Tanh, 8)

    res = ci.critical_(make())
    sb = res.hyperparameters["sigma_b"]
    assert res.value == pytest.approx(tanh_critical_sigma_w(sb), rel=1e-7)
    assert res.previous["sigma_w"] == pytest.approx(1 / math.sqrt(3), rel=0.02)  # torch default
    assert res.verified and res.point.chi_below < 1 < res.point.chi_above
    # started at the fixed point, every block is at χ_J(K*) = 1
    x = input_at(tanh_fixed_point(res.value, sb))
    _assert_unit(*one_block_apjn(res, make, x, "6", "7"))


def test_critical_relu_flat_mlp_has_unit_one_block_apjn():
    torch.manual_seed(1)

    def make():
        layers = [nn.Linear(64, WIDTH), nn.ReLU()]
        for _ in range(7):
            layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(WIDTH, 10))

    model = make()
    head = model[-1].weight.detach().clone()
    res = ci.critical_(model)
    assert res.value == pytest.approx(math.sqrt(2), abs=1e-9)
    assert torch.equal(model[-1].weight, head)  # the head is not part of the body
    assert ("15..16", "head: after the repeating body") in res.part.skipped
    x = input_at(1.0, shape=(BATCH, 64))
    # blocks run from one Linear output to the next: ReLU >> Linear
    _assert_unit(*one_block_apjn(res, make, x, "12", "14"))


def test_critical_gelu_mlp_at_a_given_sigma_b():
    torch.manual_seed(2)

    def make():
        return act_linear_mlp(nn.GELU, 6)

    res = ci.critical_(make(), sigma_b=0.5)
    assert res.hyperparameters["sigma_b"] == 0.5
    assert res.value == pytest.approx(ci.critical_gain("gelu", 0.5), rel=1e-10)
    assert all(p == (res.value, 0.5, WIDTH) for p in res.layers.values())
    K_star = float(cs.fixed_point(cs.derive(cs.mlp_block("gelu")), sigma_w=res.value,
                                  sigma_b=0.5).K_star)
    _assert_unit(*one_block_apjn(res, make, input_at(K_star), "4", "5"))


def test_gelu_at_the_default_bias_scale_is_refused_as_first_order():
    torch.manual_seed(3)
    model = act_linear_mlp(nn.GELU, 3, width=64)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ci.DiscontinuousTransitionError, match="sigma_b"):
        ci.critical_(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


class PreNormResidual(nn.Module):
    """x ↦ μ·x + Linear(tanh(LayerNorm(x))), written in forward."""

    def __init__(self, width: int, mu: float):
        super().__init__()
        self.norm, self.act, self.fc = nn.LayerNorm(width), nn.Tanh(), nn.Linear(width, width)
        self.mu = mu

    def forward(self, x):
        return self.mu * x + self.fc(self.act(self.norm(x)))


def test_critical_residual_layernorm_network_has_unit_one_block_apjn():
    torch.manual_seed(4)

    def make():
        return nn.Sequential(*[PreNormResidual(WIDTH, 0.5) for _ in range(8)])

    res = ci.critical_(make(), example_input=input_at(1.0), sigma_b=0.3)
    # K' = μ²K + σ_w² E[tanh²(z)] + σ_b², χ_J = μ² + σ_w² E[sech⁴(z)]/K (z ~ N(0,1) after
    # the LayerNorm): χ_J* = 1 ⇔ σ_w² (E[sech⁴] − E[tanh²]) = σ_b²
    e4, e2 = (_gauss(lambda t: 1 / math.cosh(t) ** 4, 1.0), _gauss(lambda t: math.tanh(t) ** 2,
                                                                      1.0))
    assert res.value == pytest.approx(0.3 / math.sqrt(e4 - e2), rel=1e-7)
    assert res.part.n_blocks == 8
    K_star = (res.value ** 2 * e2 + 0.09) / (1 - 0.25)
    _assert_unit(*one_block_apjn(res, make, input_at(K_star), "6", "7"))


def test_weights_and_biases_are_drawn_at_the_set_scales():
    torch.manual_seed(5)
    model = nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(256, 256)) for _ in range(3)])
    res = ci.critical_(model, sigma_b=0.0)
    for name, p in model.named_parameters():
        std = res.parameters[name]
        if name.endswith("bias"):
            assert std == 0 and torch.count_nonzero(p) == 0
        else:
            assert std == pytest.approx(1.0 / math.sqrt(256))  # tanh at σ_b = 0: σ_w = 1
            n = p.numel()
            # var of the sample variance of n Gaussians: 2σ⁴/n
            assert abs(float(p.detach().var()) - std ** 2) <= 4 * std ** 2 * math.sqrt(2 / n)


def test_solving_for_sigma_b_inverts_the_tanh_critical_line():
    torch.manual_seed(6)
    model = act_linear_mlp(nn.Tanh, 3, width=32)
    res = ci.critical_(model, solve_for="sigma_b", sigma_w=tanh_critical_sigma_w(0.3))
    assert res.value == pytest.approx(0.3, rel=1e-6)
    assert float(model[0][1].bias.detach().std()) > 0.1


def test_a_generator_makes_the_draw_reproducible():
    a, b = act_linear_mlp(nn.Tanh, 2, width=16), act_linear_mlp(nn.Tanh, 2, width=16)
    ci.critical_(a, generator=torch.Generator().manual_seed(7), sigma_b=0.1)
    ci.critical_(b, generator=torch.Generator().manual_seed(7), sigma_b=0.1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# ----------------------------------------------------------------------------- refusals


def test_batchnorm_stack_is_refused():
    model = nn.Sequential(*[nn.Sequential(nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32))
                            for _ in range(3)])
    with pytest.raises(ci.BatchNormStackError, match="LayerNorm") as e:
        ci.critical_(model)
    # relu after BatchNorm: χ_J* = π/(π − 1) at every σ_w (Yang et al. 2019)
    assert f"chi_J* = {math.pi / (math.pi - 1):.4g}" in str(e.value)
    model.eval()  # evaluation mode cannot even be imported: still a BatchNorm refusal
    with pytest.raises(ci.BatchNormStackError, match="'0.0'"):
        ci.critical_(model)


def test_everywhere_critical_pre_ln_residual_is_refused():
    model = nn.Sequential(*[PreNormResidual(32, 1.0) for _ in range(3)])
    with pytest.raises(ci.EverywhereCriticalError, match="every sigma_w"):
        ci.critical_(model, example_input=torch.randn(4, 32))


def test_no_crossing_is_refused_with_the_chi_range():
    class ReluRes(PreNormResidual):
        def __init__(self, width, mu):
            super().__init__(width, mu)
            self.act = nn.ReLU()

    model = nn.Sequential(*[ReluRes(32, 0.5) for _ in range(3)])
    with pytest.raises(ci.NoCriticalInitError, match="stays in") as e:
        ci.critical_(model, example_input=torch.randn(4, 32), sigma_b=0.3)
    assert type(e.value) is ci.NoCriticalInitError


def test_bad_requests_are_hyperparameter_errors():
    model = act_linear_mlp(nn.Tanh, 2, width=8)
    with pytest.raises(cs.errors.HyperparameterError, match="mu"):
        ci.critical_(model, solve_for="mu")
    with pytest.raises(cs.errors.HyperparameterError, match="unknown"):
        ci.critical_(model, gamma=1.0)
    with pytest.raises(cs.errors.UnsupportedModuleError, match="(?i)hardtanh"):
        ci.critical_(nn.Sequential(nn.Linear(4, 4), nn.Hardtanh()))


def test_a_critsym_net_is_refused_with_what_to_do():
    net = cs.build(cs.mlp_block("tanh"), width=8, depth=2, sigma_w=1.0, sigma_b=0.1)
    with pytest.raises(cs.errors.UnsupportedModuleError, match="to_torch_model"):
        ci.critical_(net)


def test_an_exported_residual_model_is_set_critical():
    blk = cs.mlp_block("tanh", layernorm="pre", residual_mu=0.5)
    model = cs.to_torch_model(blk, 16, 3, sigma_w=1.0, sigma_b=0.3, dtype=torch.float32)
    res = ci.critical_(model, sigma_b=0.3)
    assert res.value == pytest.approx(ci.solve_critical(cs.derive(blk), sigma_b=0.3).value)
    assert res.part.n_blocks == 3 and res.verified


def test_repr_is_one_short_line():
    model = act_linear_mlp(nn.Tanh, 2, width=8)
    text = repr(ci.critical_(model))
    assert "\n" not in text and len(text) < 200 and text.startswith("CriticalInit(sigma_w=")
    assert np.isfinite(ci.critical_(model).chi_star)
