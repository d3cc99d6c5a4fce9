r"""Monte Carlo of the log-norm L_d = ln(|x^d|^2/|x^0|^2), batched over many independent networks.

Two samplers of the same law:

* ``method="torch"``: explicit weights.  The networks are the architecture of the spec
  (:func:`spec_architecture`) built by :func:`critsym.torch.build`, the one builder that
  simulation and validation use (stacked weights, one ``bmm`` per layer; network i draws its
  weights and its input from generators seeded by (seed, i), so a network does not depend on how
  the networks are chunked; each block is drawn when the pass reaches it).  The state is
  renormalised after each layer and ln|x|^2 accumulated, so nothing over- or underflows at any
  depth.  float64 by default, CUDA when available.
* ``method="exact"``: exact in law and much faster.  MLP: i.i.d. increments ln((c/n)(chi^2_K +
  alpha^2 chi^2_{n-K})), K ~ Bin(n, 1/2); Balanced: ln((g/n) chi'^2_n(n/g)) (numpy, O(1) per
  layer); standard ResNet (no scalar law): the conditional Gaussian step x' = x + sqrt(c/n)
  |relu(x)| z, z ~ N(0, I_n), which has exactly the law of x + W relu(x) given x (O(n) per layer,
  torch).
* ``method="conditional"``: that conditional Gaussian step for every kind (records the active
  fraction for all kinds).

Each layer records the increment ln(|x^{l+1}|^2/|x^l|^2) and the fraction of positive coordinates of
x^l (the active fraction of relu(x^l)); increments and fractions are kept when ``record=True``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from critsym.errors import SimulationError
from critsym.finite_width.errors import check_width_depth
from critsym.finite_width.spec import ModelSpec
from critsym.ops import Act, BalancedResidual, Linear, Op, Residual
from critsym.stats import mean_se
from critsym.torch.build import build, network_generators

METHODS = ("torch", "exact", "conditional")


@dataclass
class LogNormSample:
    """Samples of L_d (one per network) and, when recorded, per-layer increments and active
    fractions."""

    spec: ModelSpec
    depth: int
    width: int
    method: str
    device: str
    log_norm: np.ndarray
    increments: np.ndarray | None = None
    active_fraction: np.ndarray | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def n_nets(self) -> int:
        return int(self.log_norm.shape[0])

    @property
    def n_dead(self) -> int:
        """Networks whose signal died (L = -inf: every relu unit of some layer inactive)."""
        return int(np.sum(~np.isfinite(self.log_norm)))

    @property
    def finite(self) -> np.ndarray:
        """L_d of the surviving networks: the law of log_norm() is conditional on survival."""
        return self.log_norm[np.isfinite(self.log_norm)]

    @property
    def throughput(self) -> float:
        """Networks x layers simulated per second."""
        return self.n_nets * self.depth / max(self.seconds, 1e-12)

    def mean(self) -> float:
        """Sample mean of L_d over surviving networks."""
        return float(np.mean(self.finite))

    def var(self) -> float:
        return float(np.var(self.finite, ddof=1))

    def se_mean(self) -> float:
        """Standard error of the sample mean."""
        return float(np.sqrt(self.var() / self.finite.size))

    def se_var(self) -> float:
        r"""Standard error of the sample variance, sqrt((m4 - s^4)/N)."""
        d = self.finite - self.finite.mean()
        m4 = np.mean(d**4)
        return float(np.sqrt(max(m4 - self.var() ** 2, 0.0) / self.finite.size))

    def lag1(self, burn_in: int = 0, groups: int = 20) -> tuple[float, float]:
        """Correlation of consecutive increments (layers >= burn_in), with a batch-means
        standard error."""
        inc = self._need(self.increments, "increments")
        inc = inc[np.all(np.isfinite(inc), axis=1), burn_in:]  # surviving networks
        if inc.shape[1] < 2:
            raise SimulationError("need at least two recorded layers after burn_in for lag-1")

        def est(block: np.ndarray) -> float:
            d = block - block.mean()
            return float(np.sum(d[:, :-1] * d[:, 1:]) / np.sqrt(
                np.sum(d[:, :-1] ** 2) * np.sum(d[:, 1:] ** 2)))

        return est(inc), _batch_se(inc, est, groups)

    def hypoactivation(self, burn_in: int = 0, groups: int = 20) -> tuple[float, float]:
        """E[active fraction] - 1/2 over layers >= burn_in, with its standard error."""
        act = self._need(self.active_fraction, "active_fraction")[:, burn_in:]

        def est(block: np.ndarray) -> float:
            return float(block.mean() - 0.5)

        return est(act), _batch_se(act, est, groups)

    @staticmethod
    def _need(arr: np.ndarray | None, name: str) -> np.ndarray:
        if arr is None:
            raise SimulationError(f"{name} were not recorded: simulate with record=True "
                                  "(method 'torch' or 'conditional' for active fractions)")
        return arr


def _batch_se(data: np.ndarray, est, groups: int) -> float:
    groups = min(groups, data.shape[0])
    vals = np.array([est(b) for b in np.array_split(data, groups)])
    return float(mean_se(vals)[1])


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SimulationError("device='cuda' requested but CUDA is not available")
    return dev


def spec_architecture(spec: ModelSpec, depth: int) -> Op:
    """The critsym block whose law ``spec`` describes (bias-free; ``depth_scaled`` puts the
    depth into the branch scale, σ_w² = c/d): what the explicit-weight sampler builds."""
    if spec.kind == "balanced":
        return BalancedResidual(math.sqrt(spec.c))
    if spec.kind == "resnet":
        c = spec.c / depth if spec.depth_scaled else spec.c
        return Residual(Act("relu") >> Linear(math.sqrt(c), 0), 1)
    act = Act("leaky_relu", alpha=spec.alpha) if spec.alpha else Act("relu")
    return act >> Linear(math.sqrt(spec.c), 0)


def unit_inputs(seed: int, start: int, stop: int, width: int, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """One Gaussian input direction per network i in [start, stop), from its own generator
    (seeded from (seed, i), so a network's input does not depend on the chunking)."""
    gens = network_generators(int(seed) + 31337, start, stop, device)
    x = torch.stack([torch.randn(width, generator=g, device=device, dtype=dtype) for g in gens])
    return x / x.norm(dim=1, keepdim=True)


def _record(inc: torch.Tensor, act: torch.Tensor, layer: int, x: torch.Tensor, y: torch.Tensor
            ) -> torch.Tensor:
    """Store layer ``layer``'s active fraction of x and ln(|y|²/|x|²) (|x| = 1); return y/|y|
    (a dead relu MLP, y = 0, keeps x: its increment is -inf, probability 2^-n per layer)."""
    act[:, layer] = (x > 0).to(x.dtype).mean(dim=1)
    r2 = (y * y).sum(dim=1)
    inc[:, layer] = torch.log(r2)
    alive = (r2 > 0).unsqueeze(1)
    return torch.where(alive, y / r2.sqrt().clamp_min(1e-300).unsqueeze(1), x)


def _explicit_chunk(spec: ModelSpec, depth: int, width: int, start: int, stop: int, seed: int,
                    device: torch.device, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Networks start..stop-1 built by :func:`critsym.torch.build` (streaming: each block's
    weights are drawn when the pass reaches it); the state is renormalised after every block."""
    net = build(spec_architecture(spec, depth), width, depth, n_nets=stop - start, seed=seed,
                first_net=start, dtype=dtype, device=device, stream=True)
    x = unit_inputs(seed, start, stop, width, device, dtype)
    inc = torch.empty(stop - start, depth, device=device, dtype=dtype)
    act = torch.empty_like(inc)
    for layer, block in enumerate(net.iter_blocks()):
        y = block(x.unsqueeze(1)).squeeze(1)  # (n_nets, batch = 1, width)
        x = _record(inc, act, layer, x, y)
    return inc.sum(dim=1), inc, act


def _conditional_chunk(spec: ModelSpec, depth: int, width: int, batch: int,
                       gen: torch.Generator, device: torch.device, dtype: torch.dtype
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The conditional Gaussian step (no weights): given x, W φ(x) ~ |φ(x)| sqrt(c/n) z."""
    n = width
    x = torch.randn(batch, n, generator=gen, device=device, dtype=dtype)
    x = x / x.norm(dim=1, keepdim=True)
    inc = torch.empty(batch, depth, device=device, dtype=dtype)
    act = torch.empty(batch, depth, device=device, dtype=dtype)
    var = spec.c / n
    if spec.depth_scaled:
        var /= depth
    if spec.kind == "balanced":
        var /= 2.0
    std = var**0.5
    for layer in range(depth):
        z = torch.randn(batch, n, generator=gen, device=device, dtype=dtype)
        if spec.kind == "mlp":
            phi = torch.where(x > 0, x, spec.alpha * x) if spec.alpha else torch.relu(x)
            y = phi.norm(dim=1, keepdim=True) * std * z
        elif spec.kind == "resnet":
            y = x + torch.relu(x).norm(dim=1, keepdim=True) * std * z
        else:  # |relu(x)|^2 + |relu(-x)|^2 = |x|^2 = 1
            y = x + std * z
        x = _record(inc, act, layer, x, y)
    return inc.sum(dim=1), inc, act


def _exact_scalar(spec: ModelSpec, depth: int, width: int, n_nets: int,
                  rng: np.random.Generator) -> np.ndarray:
    n = width
    shape = (n_nets, depth)
    if spec.kind == "mlp":
        k = rng.binomial(n, 0.5, size=shape)
        y = 2.0 * rng.standard_gamma(k / 2.0)
        if spec.alpha:
            y = y + spec.alpha**2 * 2.0 * rng.standard_gamma((n - k) / 2.0)
        with np.errstate(divide="ignore"):
            return np.log(spec.c / n * y)
    g = spec.c / 2.0
    return np.log(g / n * rng.noncentral_chisquare(n, n / g, size=shape))


def simulate_log_norm(spec: ModelSpec, depth: int, width: int, n_nets: int = 1000, seed: int = 0,
                      device: str | torch.device | None = None, method: str = "torch",
                      record: bool = True, dtype: torch.dtype = torch.float64,
                      max_chunk_elements: int | None = None) -> LogNormSample:
    """Simulate L_d for ``n_nets`` independent networks.

    ``spec`` is a :class:`ModelSpec` (or use :func:`critsym.finite_width.simulate_log_norm`,
    which also
    accepts an architecture).  ``max_chunk_elements`` bounds B*n^2 per weight draw (memory).
    """
    check_width_depth(depth, width)
    if method not in METHODS:
        raise SimulationError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n_nets, bool) or int(n_nets) < 2:
        raise SimulationError(f"n_nets must be an integer >= 2, got {n_nets!r}")
    n_nets, depth, width = int(n_nets), int(depth), int(width)
    t0 = time.perf_counter()
    if method == "exact" and spec.kind != "resnet" and not spec.depth_scaled:
        rng = np.random.default_rng(seed)
        inc = _exact_scalar(spec, depth, width, n_nets, rng)
        out = LogNormSample(spec, depth, width, method, "cpu(numpy)", inc.sum(axis=1),
                            increments=inc if record else None)
        out.seconds = time.perf_counter() - t0
        return out
    dev = _resolve_device(device)
    explicit = method == "torch"
    if max_chunk_elements is None:
        max_chunk_elements = 2**27 if dev.type == "cuda" else 2**22
    per_net = width * width if explicit else width
    chunk = max(1, min(n_nets, max_chunk_elements // per_net))
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    totals, incs, acts = [], [], []
    with torch.no_grad():
        for start in range(0, n_nets, chunk):
            stop = min(start + chunk, n_nets)
            if explicit:
                tot, inc, act = _explicit_chunk(spec, depth, width, start, stop, seed, dev, dtype)
            else:
                tot, inc, act = _conditional_chunk(spec, depth, width, stop - start, gen, dev,
                                                   dtype)
            totals.append(tot.cpu().numpy())
            if record:
                incs.append(inc.cpu().numpy())
                acts.append(act.cpu().numpy())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    out = LogNormSample(spec, depth, width, method, str(dev), np.concatenate(totals),
                        increments=np.concatenate(incs) if record else None,
                        active_fraction=np.concatenate(acts) if record else None)
    out.seconds = time.perf_counter() - t0
    return out
