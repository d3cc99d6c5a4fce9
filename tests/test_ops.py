"""The architecture language: composition, repr, equality, hashing, (de)serialization, errors."""

import json

import pytest
import sympy as sp

import critsym as cs
from critsym.errors import (
    ArchitectureError,
    DerivationError,
    HyperparameterError,
    UnknownActivationError,
)

x = sp.Symbol("x")

ARCHS = [
    cs.mlp_block("tanh"),
    cs.mlp_block("relu", layernorm="pre", residual_mu=True),
    cs.mlp_block("gelu", layernorm="post", residual_mu=0.5, sigma_w=1.2, sigma_b=0),
    cs.Residual(cs.LayerNorm() >> cs.Linear("sigma_w1") >> cs.Act("leaky_relu", alpha=0.2)
                >> cs.Linear("sigma_w2", "sigma_b2"), mu="mu"),
    cs.Act(x**3 + x) >> cs.Linear(),
]


@pytest.mark.parametrize("arch", ARCHS, ids=repr)
def test_roundtrip_dict_json(arch):
    d = arch.to_dict()
    assert cs.from_dict(json.loads(json.dumps(d))) == arch
    assert cs.from_json(arch.to_json()) == arch
    assert hash(cs.from_json(arch.to_json())) == hash(arch)
    assert cs.derive(cs.from_json(arch.to_json())).F == cs.derive(arch).F


def test_composition_and_repr():
    a = cs.Act("tanh") >> cs.Linear()
    b = cs.Sequential(cs.Act("tanh"), cs.Linear())
    assert a == b and hash(a) == hash(b)
    assert repr(a) == "Act('tanh') >> Linear(sigma_w=sigma_w, sigma_b=sigma_b)"
    assert (cs.LayerNorm() >> a).ops[0] == cs.LayerNorm()
    assert cs.Sequential(a, a).ops == a.ops + a.ops
    assert cs.Act("relu") != cs.Act("tanh")
    assert "mu" in repr(cs.Residual(a))


def test_hyperparameters_and_subs():
    arch = cs.mlp_block("relu", residual_mu=True)
    assert {s.name for s in arch.hyperparameters()} == {"sigma_w", "sigma_b", "mu"}
    num = arch.subs({"sigma_w": 2**0.5, "mu": 1})
    assert {s.name for s in num.hyperparameters()} == {"sigma_b"}
    th = cs.derive(num)
    assert float(th.chi_J(1.0, sigma_b=0.3)) == pytest.approx(2.0)


def test_errors():
    with pytest.raises(UnknownActivationError, match="built in are"):
        cs.Act("relu6")
    with pytest.raises(UnknownActivationError, match="parameters"):
        cs.Act("tanh", alpha=1)
    with pytest.raises(UnknownActivationError, match="one free variable"):
        cs.Act(x * sp.Symbol("y"))
    with pytest.raises(DerivationError, match="cannot differentiate"):
        cs.Act(sp.Function("f")(x))
    with pytest.raises(ArchitectureError, match="not a critsym operator"):
        cs.Act("tanh") >> "linear"
    with pytest.raises(ArchitectureError):
        cs.Sequential(cs.Act("tanh"), 3)
    with pytest.raises(ArchitectureError):
        cs.derive("Act >> Linear")
    with pytest.raises(HyperparameterError, match=">= 0"):
        cs.Linear(sigma_w=-1.0)
    with pytest.raises(HyperparameterError, match="finite"):
        cs.Linear(sigma_b=float("nan"))
    with pytest.raises(HyperparameterError, match="finite"):
        cs.Residual(cs.Linear(), mu=float("inf"))
    with pytest.raises(ArchitectureError, match="layernorm"):
        cs.mlp_block("relu", layernorm="middle")
    with pytest.raises(DerivationError, match="not a Gaussian preactivation"):
        cs.derive(cs.Linear() >> cs.Act("tanh"))
    with pytest.raises(ArchitectureError, match="unknown operator"):
        cs.from_dict({"op": "Dropout"})
    with pytest.raises(ArchitectureError, match="JSON"):
        cs.from_json("{not json")
    for err in (UnknownActivationError, DerivationError, ArchitectureError, HyperparameterError):
        assert issubclass(err, cs.CritsymError)
