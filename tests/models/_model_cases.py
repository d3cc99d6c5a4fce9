"""Shared pieces of the model acceptance tests: the tiny models of
:mod:`critsym.repro.models`, their body read by the import readers, and the skip used where a
part's theory is not available in this installation (the reason is the library's own error)."""

import math

import pytest

from critsym.errors import CritsymError
from critsym.repro import models as M


def body(name: str, seed: int = 0):
    """(case, model, example input, the body's blocks, approximations, the Body) of model
    ``name``, its layers imported one by one."""
    case = M.CASES[name]
    model, x = case.build(seed)
    b = M.read_body(model, x, case)
    return case, model, x, [blk.arch for blk in b.blocks], b.approximations, b


def theory_or_skip(body) -> float:
    """J^{0,L} of the theory across ``body``; skipped (with the library's reason) when a
    block's theory is not available here."""
    try:
        return M.body_theory(body)
    except CritsymError as e:
        pytest.skip(f"theory not available: {e}")


def sigma_hat(w) -> tuple[float, float]:
    """(σ̂, SE) of a weight with rows = outputs, σ̂² = fan_in · mean(W²) (Gaussian SE)."""
    w = w.detach().double()
    s = math.sqrt(float((w * w).mean()) * w.shape[1])
    return s, s / math.sqrt(2 * w.numel())


def attention_or_skip():
    return pytest.importorskip("critsym.ops.attention", reason="no Attention operator here")


def regimes(blocks) -> set[str]:
    """The attention regimes the import chose in ``blocks``."""
    out = set()

    def walk(op):
        if type(op).__name__ == "Attention":
            out.add(op.regime)
        for c in op.children():
            walk(c)

    for b in blocks:
        walk(b)
    return out


def extrapolated(name: str, widths=(32, 64), seeds: int = 8):
    """measured/theory of J^{0,L} of model ``name`` extrapolated in 1/width: (r_∞, SE, slope)
    and the comparisons."""
    comps = [M.compare(M.CASES[name], seeds, width=w) for w in widths]
    return M.extrapolated_ratio(widths, comps), comps
