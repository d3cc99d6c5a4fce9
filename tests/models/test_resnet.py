"""Hugging Face ResNet (BatchNorm, activation after the residual sum) from a tiny config: the
body is read through every stage (post-activation blocks, the stride-2 projection block), the
stem (strided 7×7 conv, BatchNorm → ReLU, max-pool) is skipped with its reasons."""

import warnings

import numpy as np

import critsym as cs
from critsym.interop.padded import POSITION_NOTE
from critsym.interop.stream import post_activation
from critsym.repro import models as M


def _import():
    model, x = M.resnet(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Kaiming fan_out: the σ's differ between layers
        return cs.from_torch(model, x)


def test_import_reads_every_stage_and_names_what_it_skips():
    res = _import()
    assert [b.path for b in res.blocks] == ["encoder.stages.0.layers.0",
                                           "encoder.stages.0.layers.1",
                                           "encoder.stages.1.layers.0"]
    assert all(post_activation(b.block) is not None for b in res.blocks)
    stem = {s.path: s.reason for s in res.skipped if s.part == "stem"}
    assert "max_pool2d" in stem["embedder.pooler"]
    assert "separates it from the body" in stem["embedder.embedder.convolution"]
    J = res.J_theory()
    assert len(J) == 4 and np.all(np.isfinite(J)) and J[-1] > 1


def test_body_layers_read_one_by_one():
    model, x = M.resnet(0)
    b = M.read_body(model, x, M.CASES["ResNet (HF)"])
    assert len(b.blocks) == 2
    assert all(post_activation(blk.arch) is not None for blk in b.blocks)
    # zero padding: each layer runs the position-resolved theory, one note per layer
    assert b.approximations == {p: POSITION_NOTE for p in ("encoder.stages.0.layers.0",
                                                           "encoder.stages.0.layers.1")}
