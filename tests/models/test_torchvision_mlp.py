"""``torchvision.ops.MLP`` (its structure — per layer Linear, activation, Dropout — when
torchvision does not import next to this torch): imported, analysed, theory against measured."""

import warnings

from _model_cases import body, body_theory

import critsym as cs
from critsym.repro import models as M


def test_imports_with_dropout_skipped():
    case, model, x, blocks, approx, b = body("torchvision.ops.MLP (structure)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.from_torch(model, example_input=x)
    assert not any(isinstance(o, cs.Act) and o.name == "identity" for o in res.arch.ops)
    assert [type(o).__name__ for o in blocks[0].ops] == ["Act", "Linear"]


def test_theory_against_measured_apjn():
    case, model, x, blocks, approx, b = body("torchvision.ops.MLP (structure)")
    body_theory(b)
    c = M.compare(case, seeds=12)
    assert abs(c.z) <= 4, c
