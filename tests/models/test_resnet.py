"""Hugging Face ResNet (BatchNorm, post-activation basic layers) from a tiny config: what the
import says about it — imported, or refused naming the submodule with what to do."""

import warnings

import critsym as cs
from critsym.errors import CritsymError
from critsym.repro import models as M


def test_import_names_the_submodule_it_refuses():
    model, x = M.resnet(0)
    names = {n for n, _ in model.named_modules() if n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = cs.from_torch(model, example_input=x)
        except CritsymError as e:
            msg = str(e)
            assert any(f"'{n}'" in msg for n in names), msg
            return
    assert res.arch is not None


def test_body_layer_refusal_says_what_to_do():
    model, x = M.resnet(0)
    try:
        b = M.read_body(model, x, M.CASES["ResNet (HF)"])
    except CritsymError as e:
        msg = str(e)
        assert "layers.0" in msg or "layer" in msg, msg
        assert any(w in msg for w in ("Supported", "register", "example_input", "Rotate")), msg
        return
    assert len(b.blocks) >= 2
