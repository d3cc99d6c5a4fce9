"""Time of one transform solve, critsym vs the ``dks`` package, on the same problem.

For each activation / method / depth (dks's plain chain of L layers, subnet maximizing function
x ↦ r^{∘L}(x)), both solves run in this process; both solutions' invariants are evaluated by
critsym's accurate quadrature and the targeted ones compared.  Prints the ratio
t_dks / t_critsym (goal >= 10) and the largest invariant difference.  Each solve is timed as the
best of repeated calls within 0.3 s (one call when a call is longer); critsym's first call per
problem (which builds the lambdified activation) is excluded, dks's ~20-minute one-off Legendre
root cache is assumed built (it ships with the package).

    PYTHONPATH=. python benchmarks/bench_shaping.py            # all 30 problems (minutes)
    PYTHONPATH=. python benchmarks/bench_shaping.py --quick    # depth 16 only, fewer problems
    PYTHONPATH=. python benchmarks/bench_shaping.py --beyond   # architectures dks cannot express

``--beyond`` times solves for biased, LN-pre + residual architectures (no dks baseline exists:
dks cannot express them), with the achieved network invariant.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from critsym.errors import ShapingError
from critsym.shaping import local_maps, transform
from critsym.shaping.transforms import leaky_relu_cmap

DKS_NAME = {"gelu": "gelu_exact"}  # dks's "gelu" is the tanh approximation
PROBLEMS = ([(a, m) for a in ("tanh", "softplus", "swish", "elu", "erf", "gelu")
             for m in ("DKS", "TAT")] + [("relu", "DKS"), ("leaky_relu", "TReLU")])


def timed(fn, budget: float = 0.3):
    """(result, seconds per call): the best of repeated calls while they fit in ``budget``
    seconds (a single call when one call takes longer)."""
    best, total, out = float("inf"), 0.0, None
    while total < budget:
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best, total = min(best, dt), total + dt
        if dt > budget:
            break
    return out, best


def dks_solve(name: str, method: str, depth: int) -> tuple[dict, float]:
    from dks.base import activation_transform as at

    def subnet_max(x, r_fn):
        for _ in range(depth):
            x = r_fn(x)
        return x

    params, dt = timed(lambda: at._get_activations_params(
        [DKS_NAME.get(name, name)], method="TAT" if method == "TReLU" else method,
        subnet_max_func=subnet_max))
    return params[DKS_NAME.get(name, name)], dt


def invariants_of(name: str, method: str, depth: int, p: dict) -> dict:
    """The targeted invariants of a parameter set, evaluated by critsym."""
    if method == "TReLU":
        s = p["negative_slope"]
        c = 0.0
        for _ in range(depth):
            c = float(leaky_relu_cmap(c, s))
        g = p["output_scale"]
        return {"Q(1)": g * g * (1 + s * s) / 2, "C_f(0)": c}
    lm = local_maps(name, p.get("input_scale", 1.0), p.get("input_shift", 0.0),
                    p.get("output_shift", 0.0), p.get("output_scale", 1.0))
    inv = lm.invariants()
    out = {"Q(1)": inv["Q(1)"]}
    if method == "DKS":
        out["C(0)"] = inv["C(0)"]
        out["C_f'(1)"] = inv["C'(1)"] ** depth
        if name != "relu":
            out["Q'(1)"] = inv["Q'(1)"]
    else:
        out.update({"Q'(1)": inv["Q'(1)"], "C'(1)": inv["C'(1)"],
                    "C_f''(1)": depth * inv["C''(1)"]})
    return out


def beyond() -> int:
    import critsym as cs

    archs = {
        "bias 0.2": cs.mlp_block("tanh", sigma_w=1.0, sigma_b=0.2),
        "LN-pre+res 0.9": cs.mlp_block("tanh", layernorm="pre", residual_mu=0.9, sigma_w=1.0,
                                       sigma_b=0.1),
    }
    print(f"{'architecture':<16}{'method':<7}{'L':>4}{'critsym s':>11}  network invariant")
    for label, arch in archs.items():
        for method, key, act in (("DKS", "C_f'(1)", "tanh"), ("TAT", "C_f''(1)", "tanh"),
                                 ("TReLU", "C_f(0)", "leaky_relu")):
            for eta in (0.9, 0.5) if method == "TReLU" else (0.9,):
                t = time.perf_counter()
                try:
                    s = transform(act, arch=arch, depth=16, method=method, eta=eta)
                except ShapingError as err:
                    print(f"{label:<16}{method:<7}{16:>4}{'-':>11}  ShapingError: {err}")
                    continue
                dt = time.perf_counter() - t
                print(f"{label:<16}{method:<7}{16:>4}{dt:>11.2f}  {key} = {s.network[key]:.12f}"
                      + (f" (eta = {eta})" if method == "TReLU" else ""), flush=True)
                break
    return 0


def main(argv: list[str]) -> int:
    logging.disable(logging.WARNING)
    if "--beyond" in argv:
        return beyond()
    quick = "--quick" in argv
    depths = (16,) if quick else (16, 50)
    probs = PROBLEMS[::3] + [("relu", "DKS")] if quick else PROBLEMS
    print(f"{'activation':<11}{'method':<7}{'L':>4}{'critsym s':>11}{'dks s':>9}{'ratio':>8}"
          f"{'max |Δinv|':>12}  critsym-vs-target")
    ratios = []
    for name, method in probs:
        for L in depths:
            transform(name, depth=L, method=method)  # warm caches (lambdify, Legendre nodes)
            s, tc = timed(lambda: transform(name, depth=L, method=method))  # noqa: B023
            p_dks, td = dks_solve(name, method, L)
            mine = {"input_scale": s.input_scale, "input_shift": s.input_shift,
                    "output_shift": s.output_shift, "output_scale": s.output_scale,
                    "negative_slope": s.negative_slope}
            a, b = invariants_of(name, method, L, mine), invariants_of(name, method, L, p_dks)
            diff = max(abs(a[k] - b[k]) for k in a)
            target = {"Q(1)": 1.0, "Q'(1)": 1.0, "C(0)": 0.0, "C'(1)": 1.0, "C_f'(1)": 1.5,
                      "C_f''(1)": 0.3, "C_f(0)": 0.9}
            dev = max(abs(a[k] - target[k]) for k in a)
            ratios.append(td / tc)
            print(f"{name:<11}{method:<7}{L:>4}{tc:>11.4f}{td:>9.2f}{td / tc:>8.0f}{diff:>12.2e}"
                  f"  {dev:.1e}", flush=True)
    print(f"geometric-mean speed-up {np.exp(np.mean(np.log(ratios))):.0f}x, "
          f"min {min(ratios):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
