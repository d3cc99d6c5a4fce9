"""cs.report on a causal decoder: the theory column, the phase and chi_J* are the causal token
Gram recursion (the exchangeable theory leaves the mask out), measured beside it."""

import warnings

import numpy as np
import pytest

import critsym as cs
from critsym.attention.causal import causal_run
from critsym.body import analysed_part
from critsym.report import causal_J, theory_J
from critsym.repro import models as M


def _part(name: str, seed: int = 0):
    model, x = M.CASES[name].build(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, x, analysed_part(model, x)


def test_causal_theory_only_for_causal_bodies():
    _, _, part = _part("GPT-2")
    res = part.result
    J = causal_J(part)
    gram = res.body_input.gram if res.body_input.gram is not None else \
        res.body_input.measured.gram
    direct = causal_run([b.arch for b in res.blocks[:part.n_blocks]], gram).J
    np.testing.assert_allclose(J, direct, rtol=1e-12)
    assert J[-1] > 1.0
    _, _, encoder = _part("TransformerEncoder pre-norm")
    assert causal_J(encoder) is None


@pytest.mark.slow
def test_report_on_gpt2_uses_the_causal_recursion():
    """Width 128 (where the mask matters: the exchangeable theory is 12 % low there), over 4
    initializations: the measured J^{0,2} agrees with the report's causal theory within 4 SE,
    and the exchangeable theory it replaces is rejected beyond 4 SE."""
    diff, exch = [], []
    for seed in range(4):
        model, x = M.gpt2(seed, width=128)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = cs.report(model, x, n_probes=16, seed=seed)
            part = analysed_part(model, x)
        assert any("theory J: the token Gram recursion (causal mask" in n for n in rep.notes)
        # phase and chi_J* from the Gram recursion: pre-LN, mu = 1, the state grows without
        # bound and the per-block ratio tends to 1
        assert rep.phase == "critical" and abs(rep.chi_star - 1) < 1e-3
        assert rep.exponent is not None and rep.exponent > 0
        diff.append(rep.J_measured[-1] - rep.J_theory[-1])
        exch.append(rep.J_measured[-1] - theory_J(part)[-1])
    d, se = np.mean(diff), np.std(diff, ddof=1) / np.sqrt(len(diff))
    e, se_e = np.mean(exch), np.std(exch, ddof=1) / np.sqrt(len(exch))
    assert abs(d) <= 4 * se, (d, se)
    assert abs(e) > 4 * se_e, (e, se_e)
