"""Classification of an abc-parameterization from its exponents (after one SGD step).

stable_init:       e(h_l) <= 0 for all l and e(f) <= 0
stable:            stable_init and e(Dh_l) <= 0 for all l and e(Df) <= 0
nontrivial:        e(Df) = 0 (the function moves by Theta(1))
feature_learning:  stable and e(Dh_{L-1}) = 0 (the last hidden features move by Theta(1))
kernel_regime:     stable, nontrivial and e(Dh_l) < 0 for every hidden l
stationary:        every Dh_l and Df vanish as m -> infinity (nothing learns in the limit)
integrable:        a_0 + b_0 = 0, a_l + b_l = 1 (l >= 1)

By default the exponents include the relu-coherent second-order term (``nonlinear=True``, see
:mod:`critsym.parameterization.calculus`): the large-width limit at fixed learning rate.  For
SP-lr/m,
NTK, muP and IP this equals linear response; it differs for SP (even more unstable) and IP-LLR
(every
layer learns, as Hajjar-Chizat-Giraud state), both measured in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from critsym.parameterization.protocol import Parameterization


@dataclass(frozen=True)
class Classification:
    stable_init: bool
    stable: bool
    nontrivial: bool
    feature_learning: bool
    kernel_regime: bool
    stationary: bool
    integrable: bool

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(k for k, v in asdict(self).items() if v) or "(none)"


def classify(p: Parameterization, nonlinear: bool = True) -> Classification:
    e = p.exponents(nonlinear=nonlinear)
    stable_init = all(x <= 0 for x in e.h)
    moves = list(e.delta_h) + [e.delta_f]
    stable = stable_init and all(x <= 0 for x in moves)
    nontrivial = e.delta_f == 0
    feature = stable and e.delta_h[-1] == 0
    kernel = stable and nontrivial and all(x < 0 for x in e.delta_h)
    stationary = all(x < 0 for x in moves)
    return Classification(stable_init, stable, nontrivial, feature, kernel, stationary,
                          p.is_integrable())
