"""The analysed part of a torch model: the longest run of blocks of one structure in the body
the importer reads (stem, head and other blocks skipped with their reasons), each weight
layer with its role, and the theory run through blocks initialized differently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import critsym as cs
import critsym.init as ci
from critsym.body import analysed_part, role_block
from tests.test_report import quadrature_J


class StemBlocksHead(nn.Module):
    def __init__(self, width: int = 32, depth: int = 4):
        super().__init__()
        self.stem = nn.Linear(12, width)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(width, width))
                                      for _ in range(depth)])
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_role_form_names_each_hyperparameter_by_its_role():
    att = cs.Attention(8, "standard", sigma_qk=0.3, sigma_v=0.7, sigma_o=0.5)
    arch = cs.Residual(cs.LayerNorm() >> att, 1) >> cs.Residual(
        cs.Linear(sigma_w=0.6, sigma_b=0) >> cs.Act("relu") >> cs.Linear(sigma_w=0.9,
                                                                          sigma_b=0.1), 1)
    names = {s.name for s in role_block(arch).hyperparameters()}
    assert names == {"sigma_qk", "sigma_v", "sigma_o", "sigma_w", "sigma_b"}
    # a zero bias scale stays zero unless a layer holds a bias tensor of that role
    assert "sigma_b" in {s.name for s in role_block(cs.Linear(sigma_w=1.0, sigma_b=0),
                                                    {"sigma_b"}).hyperparameters()}
    assert role_block(cs.Linear(sigma_w=1.0, sigma_b=0)).hyperparameters() == \
        role_block(cs.Linear(sigma_w=2.0, sigma_b=0)).hyperparameters()


def test_stem_blocks_head_written_in_forward():
    torch.manual_seed(0)
    model = StemBlocksHead()
    x = torch.randn(16, 12)
    part = analysed_part(model, x)
    assert part.n_blocks == 4 and part.inputs == "stem"
    assert part.outputs == tuple(f"blocks.{i}.1" for i in range(4))
    assert [p for p, _ in part.skipped] == ["stem", "head"]
    with torch.no_grad():
        h0 = model.stem(x).double()
    assert part.K0 == pytest.approx(float((h0 ** 2).mean()), rel=1e-12)
    stem, head = model.stem.weight.detach().clone(), model.head.weight.detach().clone()
    res = ci.critical_(model, example_input=x)
    assert torch.equal(model.stem.weight, stem) and torch.equal(model.head.weight, head)
    assert set(res.layers) == {f"blocks.{i}.1" for i in range(4)}


def test_a_model_written_in_forward_without_example_input():
    torch.manual_seed(0)
    part = analysed_part(StemBlocksHead())  # the graph shows the blocks: no run needed
    assert part.inputs == "stem" and part.n_blocks == 4 and part.K0 is None
    assert part.outputs == tuple(f"blocks.{i}.1" for i in range(4))
    assert set(part.layers) == {f"blocks.{i}.1" for i in range(4)}


def test_a_sequential_body_inside_a_sequential_is_expanded():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 32),
                          nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(32, 32))
                                          for _ in range(3)]),
                          nn.Linear(32, 3))
    part = analysed_part(model)
    assert part.outputs == ("1.0.1", "1.1.1", "1.2.1") and part.inputs == "0"


def test_flat_linear_act_dropout_stack():
    # the layout of torchvision.ops.MLP: Linear, act, Dropout, …, Linear, Dropout
    layers = []
    for _ in range(4):
        layers += [nn.Linear(32, 32), nn.ReLU(), nn.Dropout(0.0)]
    model = nn.Sequential(*layers, nn.Linear(32, 5), nn.Dropout(0.0)).eval()
    part = analysed_part(model)
    # blocks run between the Linear outputs: ReLU >> (Dropout) >> Linear; the last one has
    # another width, so it is not one of them
    assert part.inputs == "0" and part.outputs == ("3", "6", "9")
    assert repr(part.block).startswith("Act('relu') >> Linear")
    assert ("10..12", "head: after the repeating body") in part.skipped


def test_theory_runs_through_each_block_at_its_own_sigmas():
    torch.manual_seed(2)
    width, depth = 256, 4
    model = nn.Sequential(*[nn.Sequential(nn.Tanh(), nn.Linear(width, width))
                            for _ in range(depth)])
    with torch.no_grad():
        for i, blk in enumerate(model):
            blk[1].weight.normal_(0, (0.8 + 0.3 * i) / math.sqrt(width))
    x = torch.randn(16, width)
    rep = cs.report(model, x, n_probes=2)
    assert not rep.part.pooled and any("own" in n for n in rep.notes)
    # reference: K, J by quadrature with σ̂ read from each layer's weights here
    K, J = float((x.double() ** 2).mean()), [1.0]
    for blk in model:
        w, b = blk[1].weight.detach().double(), blk[1].bias.detach().double()
        sw, sb = math.sqrt(width * float((w ** 2).mean())), math.sqrt(float((b ** 2).mean()))
        step = quadrature_J(sw, sb, K, 1)
        J.append(J[-1] * step[1])
        K = _next_K(sw, sb, K)
    assert np.allclose(rep.J_theory, J, rtol=1e-9)


def _next_K(sw, sb, K):
    from tests.test_init import _gauss

    return sw ** 2 * _gauss(lambda t: math.tanh(t) ** 2, K) + sb ** 2


def test_a_unit_that_cannot_repeat_is_refused_with_what_to_do():
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU())
    # the body is Linear, Tanh >> Linear (different blocks); the ReLU after the last Linear
    # is a head the importer says how to rotate
    with pytest.raises(cs.errors.UnsupportedModuleError, match="(?i)act >> Linear"):
        analysed_part(model)


class TwoDifferentBlocks(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.first, self.second = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        x = x + self.first(torch.tanh(x))
        return x + self.second(torch.relu(x))


def test_a_body_without_repeated_blocks_is_refused_naming_the_blocks():
    from critsym.body import NoRepeatedBlockError

    with pytest.raises(NoRepeatedBlockError, match="repeated") as e:
        ci.critical_(TwoDifferentBlocks(), example_input=torch.randn(4, 16))
    assert "tanh" in str(e.value) and "relu" in str(e.value)
