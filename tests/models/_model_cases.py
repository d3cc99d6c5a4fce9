"""Shared pieces of the model acceptance tests: the tiny models of
:mod:`critsym.repro.models` and their body read by the import readers."""

import math

from critsym.repro import models as M


def body(name: str, seed: int = 0):
    """(case, model, example input, the body's blocks, approximations, the Body) of model
    ``name``, its layers imported one by one."""
    case = M.CASES[name]
    model, x = case.build(seed)
    b = M.read_body(model, x, case)
    return case, model, x, [blk.arch for blk in b.blocks], b.approximations, b


def body_theory(body) -> float:
    """J^{0,L} of the theory across ``body`` (a block without a theory is a failure)."""
    return M.body_theory(body)


def sigma_hat(w) -> tuple[float, float]:
    """(σ̂, SE) of a weight with rows = outputs, σ̂² = fan_in · mean(W²) (Gaussian SE)."""
    w = w.detach().double()
    s = math.sqrt(float((w * w).mean()) * w.shape[1])
    return s, s / math.sqrt(2 * w.numel())


def extrapolated(name: str, widths=(32, 64), seeds: int = 8):
    """measured/theory of J^{0,L} of model ``name`` extrapolated in 1/width: (r_∞, SE, slope)
    and the comparisons."""
    comps = [M.compare(M.CASES[name], seeds, width=w) for w in widths]
    return M.extrapolated_ratio(widths, comps), comps
