r"""Torch networks for any abc-parameterization, and one-step width-scaling measurements.

``ABCNet``: h_0 = m^{-a_0} W^0 xi, h_l = m^{-a_l} W^l relu(h_{l-1}), f = h_L (scalar output),
trainable W^l initialised N(0, sigma^2 m^{-2 b_l}), SGD rate of layer l = eta m^{-c_l}
(``c_first`` for the first step).  ``simulate_one_step`` takes one SGD step on the loss l = f
(so dl/df = 1) for each (width, seed), and fits log RMS against log m.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from critsym.errors import HyperparameterError, SimulationError
from critsym.parameterization.abc_parameterization import ABCParameterization
from critsym.stats import regress

QUANTITIES = ("h", "dh", "dW", "delta_h", "delta_f")


class ABCNet(nn.Module):
    """An (L+1)-layer MLP of hidden width m in the abc-parameterization ``param``; φ = ``act``
    (a name or :class:`~critsym.Act`, relu by default: the exponent calculus assumes it).

    Layer l is the critsym architecture ``[Act(φ) >>] Linear(σ m^{-b_l} √fan_in, 0) >>
    Scale(m^{-a_l})`` (:meth:`layer_ops`), built by :func:`critsym.torch.build.build_stack`
    for one network from ``generator``; its Linear weight (shape (1, fan_out, fan_in)) is the
    trained parameter, the multiplier is fixed.
    """

    def __init__(self, param: ABCParameterization, width: int, d_in: int = 8, sigma: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", act: object = "relu") -> None:
        super().__init__()
        from critsym.ops.activation import Act
        from critsym.torch.build import build_stack
        from critsym.torch.modules import BuildContext, StackedLinear

        self.act = act if isinstance(act, Act) else Act(act)
        if isinstance(width, bool) or int(width) < 1 or int(d_in) < 1:
            raise HyperparameterError(f"width and d_in must be positive integers ({width}, {d_in})")
        if not sigma > 0:
            raise HyperparameterError(f"sigma must be > 0, got {sigma}")
        self.param, self.width, self.d_in, self.sigma = param, int(width), int(d_in), float(sigma)
        dev = torch.device(device)
        if generator is None:  # a draw of torch's global generator seeds this network
            generator = torch.Generator(device=dev).manual_seed(
                int(torch.randint(2**62, (1,))))
        ctx = BuildContext(n_nets=1, width=self.width, values={}, generators=[generator],
                           dtype=dtype, device=dev)
        dims = [self.d_in] + [self.width] * param.L + [1]
        layers, _ = build_stack(self.layer_ops(), dims[1:], ctx, (self.d_in,))
        self.layers = nn.ModuleList(layers)
        self.weights = []
        for layer in self.layers:
            (lin,) = [m for m in layer.modules() if isinstance(m, StackedLinear)]
            lin.weight.requires_grad_(True)
            self.weights.append(lin.weight)

    def layer_ops(self) -> list:
        """The critsym architecture of each layer l = 0..L (see the class docstring)."""
        from critsym.ops.linear import Linear
        from critsym.ops.scale import Scale

        m = float(self.width)
        fans = [self.d_in] + [self.width] * self.param.L
        ops = []
        for l in range(self.param.n_layers):
            lin = Linear(self.sigma * m ** (-float(self.param.b[l])) * fans[l] ** 0.5, 0)
            op = lin >> Scale(m ** (-float(self.param.a[l])))
            ops.append(op if l == 0 else self.act >> op)
        return ops

    def forward_all(self, xi: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations h_0..h_L (h_L = f) for one input vector xi."""
        h = xi.reshape(-1)
        hs = []
        for layer in self.layers:  # on (n_nets = 1, batch = 1, features)
            h = layer(h.reshape(1, 1, -1)).reshape(-1)
            hs.append(h)
        return hs

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        return self.forward_all(xi)[-1]

    def learning_rates(self, eta: float, first_step: bool = True) -> list[float]:
        """eta m^{-c_l} per layer (``c_first`` on the first step)."""
        cs = self.param.step_c if first_step else self.param.c
        return [eta * float(self.width) ** (-float(x)) for x in cs]

    def optimizer(self, eta: float, first_step: bool = True) -> torch.optim.SGD:
        """Plain SGD with one parameter group per layer."""
        lrs = self.learning_rates(eta, first_step)
        groups = [{"params": [w], "lr": lr} for w, lr in zip(self.weights, lrs, strict=True)]
        return torch.optim.SGD(groups)


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().pow(2).mean().sqrt())


def one_step(net: ABCNet, xi: torch.Tensor, eta: float) -> dict[str, list[float]]:
    """RMS of h_l, dl/dh_l, Delta W^l, Delta h_l and |Delta f| for one SGD step on l = f."""
    hs = net.forward_all(xi)
    for h in hs:
        h.retain_grad()
    hs[-1].sum().backward()
    out = {"h": [_rms(h) for h in hs], "dh": [_rms(h.grad) for h in hs[:-1]]}
    lrs = net.learning_rates(eta, first_step=True)
    with torch.no_grad():
        deltas = [-lr * w.grad for w, lr in zip(net.weights, lrs, strict=True)]
        out["dW"] = [_rms(d) for d in deltas]
        for w, d in zip(net.weights, deltas, strict=True):
            w.add_(d)
        new = net.forward_all(xi)
    out["delta_h"] = [_rms(n - o.detach()) for n, o in zip(new[:-1], hs[:-1], strict=True)]
    out["delta_f"] = [_rms(new[-1] - hs[-1].detach())]
    return out


def fit_slope(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
              ) -> tuple[float, float]:
    """OLS slope of y on x with its standard error sqrt(s^2 / Sxx).

    With ``groups`` (e.g. the seed of each point) the fit is within groups (a fixed offset per
    group), so a per-seed scale shared by all widths (the input norm) does not inflate the error.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3 or np.ptp(x) == 0:
        raise SimulationError("need at least 3 points at 2+ distinct widths to fit a slope")
    labels = np.unique(np.asarray(groups)) if groups is not None else np.zeros(1)
    # one intercept per group (indicator columns) and the common slope
    offsets = (np.asarray(groups)[:, None] == labels[None, :] if groups is not None
               else np.ones((x.size, 1)))
    A = np.column_stack([x, offsets.astype(float)])
    if x.size <= A.shape[1] or np.linalg.matrix_rank(A) < A.shape[1]:
        raise SimulationError("not enough distinct widths per seed to fit a slope")
    fit = regress(A, y)
    return float(fit.coef[0]), float(fit.se[0])


@dataclass
class OneStepResult:
    """Measured RMS values, fitted exponents and the calculus' predictions."""

    param: ABCParameterization
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    values: dict[str, np.ndarray]  # name -> (n_seeds, n_widths, n_entries)
    slopes: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_entries, 2)
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # linear response
    predicted_nonlinear: dict[str, np.ndarray] = field(default_factory=dict)  # relu-coherent

    def slope(self, name: str, layer: int) -> tuple[float, float]:
        s = self.slopes[name][layer]
        return float(s[0]), float(s[1])

    def table(self) -> str:
        lines = [f"{self.param.name}: measured exponent +- s.e. (predicted; nl = relu-coherent "
                 f"term where it differs), widths {self.widths}"]
        for name in QUANTITIES:
            nl = self.predicted_nonlinear.get(name, self.predicted[name])
            cells = [f"{s:+.3f}+-{se:.3f} ({p:+.2f}" + (f"; nl {q:+.2f})" if q != p else ")")
                     for (s, se), p, q in zip(self.slopes[name], self.predicted[name], nl,
                                              strict=True)]
            lines.append(f"{name:>8}: " + "  ".join(cells))
        return "\n".join(lines)


def simulate_one_step(param: ABCParameterization, widths: Sequence[int] = (128, 256, 512, 1024),
                      seeds: Sequence[int] | int = 8, eta: float = 0.1, d_in: int = 8,
                      sigma: float = 1.0, device: str | torch.device | None = None,
                      dtype: torch.dtype = torch.float64) -> OneStepResult:
    """Measure width exponents of h, dh, Delta W, Delta h, Delta f after one SGD step.

    The input xi ~ N(0, I/d_in) depends on the seed only (shared across widths); weights on
    (seed, width).  Exponents are OLS slopes of log RMS vs log m over all (seed, width) points,
    with one offset
    per seed (within-seed fit; same slope as fitting the geometric mean over seeds).
    """
    widths = tuple(int(w) for w in widths)
    if len(set(widths)) < 2 or min(widths) < 1:
        raise SimulationError(f"need at least two distinct positive widths, got {widths}")
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if len(seeds) < 1:
        raise SimulationError("need at least one seed")
    if not eta > 0:
        raise HyperparameterError(f"eta must be > 0, got {eta}")
    dev = torch.device(device if device is not None
                       else ("cuda" if torch.cuda.is_available() else "cpu"))
    raw: dict[str, list] = {q: [] for q in QUANTITIES}
    for s in seeds:
        per_w: dict[str, list] = {q: [] for q in QUANTITIES}
        gx = torch.Generator(device="cpu").manual_seed(10_007 * s + 1)
        xi = (torch.randn(d_in, generator=gx, dtype=dtype) / d_in**0.5).to(dev)
        for w in widths:
            gen = torch.Generator(device=dev).manual_seed(1_000_003 * s + w)
            net = ABCNet(param, w, d_in, sigma, gen, dtype, dev)
            vals = one_step(net, xi, eta)
            for q in QUANTITIES:
                per_w[q].append(vals[q])
        for q in QUANTITIES:
            raw[q].append(per_w[q])
    values = {q: np.array(v) for q, v in raw.items()}
    res = OneStepResult(param, widths, seeds, values)
    logm = np.log(np.array(widths, float))
    for q, arr in values.items():
        if np.any(arr <= 0) or not np.all(np.isfinite(arr)):
            raise SimulationError(f"non-positive or non-finite RMS of {q}: cannot take logs")
        x = np.broadcast_to(logm[None, :], arr.shape[:2]).ravel()
        grp = np.broadcast_to(np.arange(arr.shape[0])[:, None], arr.shape[:2]).ravel()
        res.slopes[q] = np.array([fit_slope(x, np.log(arr[:, :, j]).ravel(), grp)
                                  for j in range(arr.shape[2])])
    for target, nonlinear in ((res.predicted, False), (res.predicted_nonlinear, True)):
        e = param.exponents(nonlinear=nonlinear)
        target.update({"h": np.array(e.h, float), "dh": np.array(e.dh[:-1], float),
                       "dW": np.array(e.dW, float), "delta_h": np.array(e.delta_h, float),
                       "delta_f": np.array([e.delta_f], float)})
    return res
