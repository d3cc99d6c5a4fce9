"""Criticality analysis: fixed points, correlation map, critical manifold, phase diagrams,
critical exponents (analytic and fitted), everywhere-critical detection and a summary."""

from .correlation import Correlation, chi_c, correlation
from .critical import (
    CriticalLine,
    FirstOrderTransition,
    FirstOrderTransitionError,
    critical_line,
    critical_point,
    transitions,
)
from .everywhere import EverywhereReport, everywhere_critical
from .exponents import (
    Exponents,
    Fit,
    GrowthLaw,
    analytic_exponents,
    fit_nu,
    fit_p,
    j_growth,
    measured_xi,
)
from .fixed_point import FixedPoint, fixed_point
from .phase import PhaseGrid, phase_grid, plot_phase
from .summary import summary
from .trivial import trivial_chi

__all__ = [
    "Correlation", "CriticalLine", "EverywhereReport", "Exponents", "Fit", "FirstOrderTransition",
    "FirstOrderTransitionError", "FixedPoint",
    "PhaseGrid", "analytic_exponents", "chi_c", "correlation", "critical_line", "critical_point",
    "everywhere_critical", "fit_nu", "fit_p", "fixed_point", "measured_xi", "phase_grid",
    "GrowthLaw", "j_growth",
    "plot_phase", "summary", "transitions", "trivial_chi",
]
