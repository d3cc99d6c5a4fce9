"""A person-readable criticality report for one hyperparameter point."""

from __future__ import annotations

import numpy as np

from ..errors import CritsymError
from .correlation import correlation
from .critical import FirstOrderTransitionError, critical_point
from .exponents import CRIT_TOL, analytic_exponents
from .fixed_point import fixed_point


def summary(theory, K0: float = 1.0, *, show: bool = False, tol: float = CRIT_TOL,
            **hp) -> dict:
    """Fixed point(s), phase, depth scales, correlation map, critical σ_w at the other values
    and the universality class with its exponents, as a dict; ``show=True`` also prints it.
    ``summary(...)["text"]`` is the printable report.  One tolerance ``tol`` on |χ_J* − 1|
    decides "critical" for the phase and for the universality class; the critical σ_w is a
    verified continuous root, and a first-order transition is reported as such."""
    fp = fixed_point(theory, K0=K0, **hp)
    st = str(fp.status)
    chi = float(fp.chi_star)
    out: dict = {
        "architecture": repr(theory.arch), "hyperparameters": dict(hp), "K0": K0,
        "status": st, "K_star": float(fp.K_star), "dF_dK": float(fp.dF_dK), "chi_star": chi,
        "xi_J": float(fp.xi_J), "phase": str(fp.phase(tol)), "growth": str(fp.growth),
        "growth_rate": float(fp.growth_rate), "growth_power": float(fp.growth_power),
    }
    if fp.roots_K is not None:
        fin = np.isfinite(fp.roots_K)
        out["fixed_points"] = [
            {"K": float(k), "stable": bool(s), "dF_dK": float(d), "chi_J": float(c)}
            for k, s, d, c in zip(fp.roots_K[fin], fp.roots_stable[fin], fp.roots_dF[fin],
                                  fp.roots_chi[fin], strict=True)]
        out["attractors"] = int(fp.attractors)
        out["bistable"] = bool(fp.bistable)
    for extra in ("O_T_star", "O_C_star", "rho_T"):  # multi-axis states
        if getattr(fp, extra, None) is not None:
            out[extra] = float(getattr(fp, extra))
    try:
        co = correlation(theory, K0=K0, **hp)
        out.update(c_star=float(co.c_star), chi_c=float(co.chi_c), chi_c1=float(co.chi_c1),
                   xi_c=float(co.xi_c))
    except CritsymError as e:  # pragma: no cover - reported, not raised
        out["correlation_error"] = str(e)
    if "sigma_w" in theory.hyperparameter_names:
        others = {k: v for k, v in hp.items() if k != "sigma_w"}
        try:
            out["critical_sigma_w"] = float(critical_point(theory, "sigma_w", K0=K0, **others))
        except FirstOrderTransitionError as e:
            t = e.transitions[0]
            out["critical_sigma_w"] = None
            out["first_order_sigma_w"] = float(t.at)
            out["saddle_node_sigma_w"] = float(t.saddle_node)
            out["critical_sigma_w_note"] = (
                f"none (continuous); first-order transition at sigma_w = {t.at:.10g}: chi_J* "
                f"jumps {t.chi_below:.6g} -> {t.chi_above:.6g}; the low-side attractor ends at "
                f"a saddle-node at sigma_w = {t.saddle_node:.10g} (chi_J = "
                f"{t.saddle_node_chi:.6g})")
        except CritsymError as e:
            out["critical_sigma_w"] = None
            out["critical_sigma_w_note"] = str(e).split(";")[0]
    ex = analytic_exponents(theory, K0=K0, tol=tol, **hp)
    out.update(universality=ex.universality, p=ex.p, zeta=ex.zeta, K_law=ex.K_law,
               nu=ex.nu, exponent_note=ex.note)

    def f(x):
        return f"{x:.6g}" if isinstance(x, float) and np.isfinite(x) else str(x)

    lines = [
        f"architecture: {out['architecture']}",
        f"hyperparameters: {hp}   (K0 = {K0})",
        f"fixed point: status {st}, K* = {f(out['K_star'])}, F'(K*) = {f(out['dF_dK'])}",
    ]
    if "O_T_star" in out:
        lines.append(f"  offsets: O_T* = {f(out['O_T_star'])}, O_C* = {f(out['O_C_star'])}"
                     f" (growth ray O_T/K -> {f(out['rho_T'])})")
    if st == "unbounded":
        lines.append(f"  growth: {out['growth']} (rate {f(out['growth_rate'])}, "
                     f"power {f(out['growth_power'])})")
    if out.get("fixed_points"):
        fps = ", ".join(f"K = {f(d['K'])} ({'stable' if d['stable'] else 'unstable'}, "
                        f"chi_J = {f(d['chi_J'])})" for d in out["fixed_points"])
        lines.append(f"  all fixed points: {fps}")
    if out.get("bistable"):
        lines.append(f"  {out['attractors']} attractors (bistable): the fixed point reached "
                     "depends on K0")
    lines += [
        f"chi_J* = {f(chi)}  ->  phase: {out['phase']},  xi_J = {f(out['xi_J'])} layers",
    ]
    if "c_star" in out:
        lines.append(f"correlation map: c* = {f(out['c_star'])}, chi_c(c*) = {f(out['chi_c'])}, "
                     f"chi_c(1) = {f(out['chi_c1'])}, xi_c = {f(out['xi_c'])}")
    if "critical_sigma_w" in out:
        cs_ = out["critical_sigma_w"]
        lines.append("critical sigma_w at these other values: "
                     + (f(cs_) if cs_ is not None else out.get("critical_sigma_w_note", "none")))
    lines.append(f"universality class: {ex.universality}")
    if ex.p is not None:
        lines.append(f"  J^(l0,l) ~ (l/l0)^p with p = {ex.p}  (zeta = {ex.zeta}); {ex.K_law}")
    if ex.nu:
        lines.append(f"  nu: {ex.nu}")
    if ex.note:
        lines.append(f"  note: {ex.note}")
    out["text"] = "\n".join(lines)
    if show:
        print(out["text"])
    return out
