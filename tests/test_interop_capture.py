"""Graph capture: what a forward writes (functions, methods, sums, scalings, transposes,
reshapes) is read as what it is; torch.export where fx cannot trace; the example input reaches
every call with its own arguments; the model is left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _torch_models import RankDependent
from torch import nn

import critsym as cs
from critsym.errors import UnsupportedModuleError
from critsym.ops.contract import graph_claims

# layers of different fan-in carry different default biases: the refusal to pool is expected
pytestmark = pytest.mark.filterwarnings("ignore::critsym.importer.PoolingWarning")


class Lambda(nn.Module):
    """A residual-free module whose forward is ``fn(self, x)``, with two Linear layers."""

    def __init__(self, fn, d: int = 6):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.fn = fn

    def forward(self, x):
        return self.fn(self, x)


def body_ops(model, x=None):
    imp = cs.from_torch(model, x)
    return [b.arch.symbolic() for b in imp.blocks], imp


def test_operators_claim_functions_and_methods():
    claims = graph_claims()
    assert claims[F.relu].__name__ == "Act" and claims["Tensor.tanh"].__name__ == "Act"
    assert claims[F.linear].__name__ == "Linear"
    assert claims[torch.ops.aten.linear.default].__name__ == "Linear"
    assert claims[F.layer_norm].__name__ == "LayerNorm"
    assert claims["Tensor.transpose"].__name__ == "Transpose"


def test_every_graph_target_names_a_torch_function_or_method():
    from critsym.ops.base import operators
    from critsym.ops.contract import resolve_target

    for cls in operators().values():
        for dotted in cls.__dict__.get("graph_targets", ()):
            if dotted.startswith("Tensor."):
                assert hasattr(torch.Tensor, dotted[len("Tensor."):]), (cls.__name__, dotted)
            else:
                assert callable(resolve_target(dotted)), (cls.__name__, dotted)


@pytest.mark.parametrize("fn,expected", [
    (lambda m, x: m.fc2(torch.tanh(m.fc1(x))), cs.Act("tanh") >> cs.Linear()),
    (lambda m, x: m.fc2(m.fc1(x).relu()), cs.Act("relu") >> cs.Linear()),
    (lambda m, x: F.linear(F.gelu(F.layer_norm(m.fc1(x), (6,))), m.fc2.weight, m.fc2.bias),
     cs.LayerNorm() >> cs.Act("gelu") >> cs.Linear()),
    (lambda m, x: m.fc2(F.leaky_relu(m.fc1(x), 0.2)), cs.Act("leaky_relu", alpha=0.2)
     >> cs.Linear()),
], ids=["torch.tanh", "Tensor.relu", "functional", "leaky_relu"])
def test_functions_in_forward(fn, expected):
    torch.manual_seed(0)
    ops, imp = body_ops(Lambda(fn))
    assert ops == [cs.Linear(), expected] and not imp.skipped


@pytest.mark.parametrize("fn,op", [
    (lambda m, x: 0.5 * x + m.fc2(torch.tanh(m.fc1(x))), "Residual(0.5)"),
    (lambda m, x: m.fc2(torch.tanh(m.fc1(x))) + x * 0.25, "Residual(0.25)"),
    (lambda m, x: torch.add(x, m.fc2(torch.tanh(m.fc1(x)))), "Residual(1)"),
    (lambda m, x: m.fc1(x) + m.fc2(torch.relu(x)), "Parallel"),
])
def test_sums_in_forward(fn, op):
    torch.manual_seed(0)
    (got,), _ = body_ops(Lambda(fn))
    branch = cs.Linear() >> cs.Act("tanh") >> cs.Linear()
    expected = {"Residual(0.5)": cs.Residual(branch, 0.5),
                "Residual(0.25)": cs.Residual(branch, 0.25),
                "Residual(1)": cs.Residual(branch, 1),
                "Parallel": cs.Parallel(cs.Linear(), cs.Act("relu") >> cs.Linear())}[op]
    assert got == expected


@pytest.mark.parametrize("fn,match", [
    (lambda m, x: x + 2.0 * m.fc2(torch.tanh(m.fc1(x))), "branch scaled by 2"),
    (lambda m, x: m.fc2(torch.tanh(m.fc1(x))) * 3.0, "scaling by 3"),
    (lambda m, x: m.fc2(m.fc1(x) * torch.sigmoid(m.fc1(x))), "two different signals"),
    (lambda m, x: m.fc2(x) + 1.0, "constant"),
])
def test_what_has_no_operator_is_refused_with_the_reason(fn, match):
    torch.manual_seed(0)
    with pytest.raises(UnsupportedModuleError, match=match):
        model = nn.Sequential(Lambda(fn))
        imp = cs.from_torch(model)
        raise UnsupportedModuleError("; ".join(s.reason for s in imp.skipped))


class Swap(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.fc2(self.how(self.fc1(x)))


def test_transposes_and_reshapes():
    x = torch.randn(2, 4, 4)
    last_two = [lambda x: x.transpose(1, 2), lambda x: x.transpose(-1, -2),
                lambda x: torch.transpose(x, 2, 1), lambda x: x.permute(0, 2, 1),
                lambda x: x.mT]
    for how in last_two:
        ops, _ = body_ops(Swap(how), x)
        assert ops == [cs.Linear(), cs.Transpose() >> cs.Linear()]
    # without an example input a transpose of two non-negative axes has no known rank
    imp = cs.from_torch(Swap(lambda x: x.transpose(1, 2)))
    assert "unknown rank" in imp.skipped[0].reason and "example_input" in imp.skipped[0].reason
    imp = cs.from_torch(Swap(lambda x: x.permute(1, 0, 2)), x)
    assert "order [1, 0, 2]" in imp.skipped[0].reason
    # reshapes that keep the batch and the features are the identity, others are reported
    ops, imp = body_ops(Swap(lambda x: x.reshape(2, 2, 2, 4).flatten(1, 2).contiguous()), x)
    assert ops == [cs.Linear(), cs.Linear()] and not imp.skipped
    imp = cs.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), x)
    assert "regroups the features (2, 4, 4) -> (2, 16)" in imp.skipped[0].reason


class OpaqueRearrange(nn.Module):
    """An einops-style layer fx cannot trace (it branches on the input's rank)."""

    def forward(self, x):
        if x.dim() != 3:
            raise ValueError("expected (b, t, c)")
        return x.permute(0, 2, 1)


def test_opaque_rearrange_layer():
    """Captured by torch.export from its call with an example input, and recognised by the
    Transpose probe without one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), OpaqueRearrange(), nn.Linear(4, 4))
    for x in (torch.randn(2, 4, 4), None):
        ops, imp = body_ops(model, x)
        assert ops == [cs.Linear(), cs.Transpose() >> cs.Linear()] and not imp.skipped


class KeywordBlock(nn.Module):
    """A block called with a keyword argument (an attention-style signature)."""

    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, mask=None, scale: float = 1.0):
        return x + self.fc(torch.tanh(x))


class Shared(nn.Module):
    """One block applied twice, and a keyword-argument call."""

    def __init__(self, block, d: int = 8):
        super().__init__()
        self.block = block
        self.kw = KeywordBlock(d)

    def forward(self, x):
        return self.kw(self.block(self.block(x)), mask=None, scale=2.0)


def test_each_call_gets_its_own_inputs():
    """A module called twice is read twice (and is no hook point); fx cannot trace
    RankDependent, so each call is exported from that call's own input; keyword arguments
    are left to the module."""
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    imp = cs.from_torch(Shared(RankDependent(8)), x)
    res = cs.Residual(cs.Act("tanh") >> cs.Linear(), 0.5)
    assert [b.block for b in imp.blocks] == [res, res, cs.Residual(cs.Act("tanh")
                                                                   >> cs.Linear(), 1)]
    assert imp.outputs == [None, None, "kw"]
    assert imp.capture["block"].startswith("torch.export")
    assert imp.body_input.K.value == pytest.approx(float((x * x).mean()))
    imp = cs.from_torch(Shared(RankDependent(8)))  # fx alone reads only the last block
    assert [b.path for b in imp.blocks] == ["kw"]
    assert all("pass example_input" in s.reason for s in imp.skipped)


def test_capture_leaves_the_model_as_it_was():
    """The example input runs through the captured graph once; BatchNorm running statistics
    are restored and no hook stays registered."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cs.from_torch(model, torch.randn(16, 6) + 3.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unclaimed_torch_modules_are_named_not_traced():
    """An nn.TransformerEncoder (fx cannot trace its forward: torch.export) whose attention
    no operator claims: the attention is named in the skipped part; its feed-forward
    sub-blocks are read."""
    from critsym.ops.contract import claimant, contains

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                       norm_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    imp = cs.from_torch(enc, torch.randn(3, 5, 8))
    assert imp.capture[""] == "torch.export"
    if claimant(layer) is None and claimant(layer.self_attn) is None:
        assert any("layers.0.self_attn" in s.reason and "MultiheadAttention" in s.reason
                   for s in imp.skipped)
    assert any(contains(b.block, lambda o: isinstance(o, cs.Residual)) for b in imp.blocks)
