"""The operator contract, checked for every registered operator and built-in block.

The cases come from the registries (``Op.examples()`` of every registered operator class and
the ``builtin_block`` constructors), so a new operator receives every check by registering:

* JSON round trip (symbolic and numeric);
* build (stacked torch networks) and a forward pass of the right shape;
* export to plain torch modules → import → the same block, and the same theory;
* theory against Monte Carlo with the 1/N extrapolation of ``critsym.validate`` (vectors,
  feature maps and multi-axis states), and, where an example states a measured gap of the
  theory (``Example.band``), a characterisation of that gap;
* a clear ``CritsymError`` for a bad hyperparameter.
"""

import math

import pytest
import torch

import critsym as cs
from critsym.errors import CritsymError
from critsym.ops.attention import uses_tokens
from critsym.ops.axes import uses_axes
from critsym.ops.base import from_dict, operators
from critsym.ops.contract import builtin_blocks, torch_claims
from critsym.torch.build import build_blocks, network_generators
from critsym.torch.feature_maps import simulate_maps
from critsym.torch.modules import BuildContext
from critsym.torch.validate import extrapolate

#: registered classes exercised through other operators' examples, or never constructed
WITHOUT_EXAMPLES = {"Sequential", "BatchNorm"}
SIGMAS = ("sigma_w", "sigma_b")


def _cases():
    out = []
    for name, cls in sorted(operators().items()):
        for ex in cls.examples():
            out.append(pytest.param(ex, id=f"{name}:{ex.label()}"))
    for name, ex in sorted(builtin_blocks().items()):
        out.append(pytest.param(ex, id=f"block:{name}"))
    return out


CASES = _cases()


def _ops(arch):
    yield arch
    for c in arch.children():
        yield from _ops(c)


def test_every_operator_is_covered():
    """Each registered operator (other than the listed exceptions) brings its own examples
    and LaTeX name, and no two operators claim the same torch module type."""
    for name, cls in operators().items():
        if name in WITHOUT_EXAMPLES:
            continue
        assert cls.examples(), f"{name} registers no examples for the contract tests"
        assert cls.latex_name, f"{name} has no latex_name"
        for ex in cls.examples():
            assert any(type(o) is cls for o in _ops(ex.block)), (name, ex.block)
    claimed = [t for cls in operators().values() for t in cls.__dict__.get("torch_types", ())]
    assert len(claimed) == len(set(claimed)), "a torch module type is claimed twice"
    assert all(isinstance(t, type) for t in torch_claims())


@pytest.mark.parametrize("ex", CASES)
def test_latex(ex):
    text = ex.block.latex()
    assert isinstance(text, str) and text and "\n" not in text


@pytest.mark.parametrize("ex", CASES)
def test_json_round_trip(ex):
    for arch in (ex.block, ex.block.subs(ex.hp)):
        back = cs.from_json(arch.to_json())
        assert back == arch and repr(back) == repr(arch)
        assert back.hyperparameters() == arch.hyperparameters()


def _shape(ex):
    return ex.shape or (ex.width,)


@pytest.mark.parametrize("ex", CASES)
def test_build_and_forward_shape(ex):
    shape = _shape(ex)
    n_nets, batch = 2, 3
    ctx = BuildContext(n_nets=n_nets, width=shape[-1], values=dict(ex.hp),
                       generators=network_generators(0, 0, n_nets, torch.device("cpu")))
    mod, out = ex.block.to_torch(ctx, shape)
    x = torch.randn(n_nets, batch, *shape, dtype=torch.float64)
    y = mod(x)
    assert tuple(y.shape) == (n_nets, batch, *out)
    assert torch.isfinite(y).all()
    if ex.theory:  # a repeating block keeps its shape
        (blk,) = build_blocks(ex.block, ctx, shape, 1)
        net = cs.build(ex.block, shape[-1], 3, n_nets=n_nets, in_shape=ex.shape, **ex.hp)
        assert tuple(net(x).shape) == (n_nets, batch, *shape)


def _channels_first(shape):
    return (shape[-1], *shape[:-1])


def _reference(ex):
    """The block an import of its exported model gives: numeric values for every
    hyperparameter except the weight scales, which become the symbols σ_w, σ_b."""
    return ex.block.subs({k: v for k, v in ex.hp.items() if k not in SIGMAS}).symbolic()


@pytest.mark.parametrize("ex", CASES)
def test_export_import_same_theory(ex):
    shape = _shape(ex)
    depth = 2 if ex.theory else 1
    conv = any(type(o).channels_first for o in _ops(ex.block))
    model = cs.to_torch_model(ex.block, shape[-1], depth, seed=3, **ex.hp)
    x = torch.randn(4, *(_channels_first(shape) if conv else shape), dtype=torch.float64)
    assert torch.isfinite(model(x)).all()
    imp = cs.from_torch(model)
    ref = _reference(ex)
    if not ex.theory:
        assert imp.arch.symbolic() == ref
        return
    assert imp.block == ref and imp.n_blocks == depth
    for name in SIGMAS:
        if name in ex.hp and ex.hp[name] > 0:
            est = getattr(imp, name)
            assert abs(est.value - ex.hp[name]) <= 4 * est.se, (name, est)
    th, th_ref = imp.theory(), cs.derive(ref)
    assert th.F == th_ref.F and th.chi == th_ref.chi


MC_CASES = [pytest.param(c.values[0], id=c.id,
                         marks=[pytest.mark.slow] if c.values[0].slow else [])
            for c in CASES if c.values[0].theory and c.values[0].monte_carlo
            and c.values[0].shape is None]


@pytest.mark.parametrize("ex", MC_CASES)
def test_theory_against_monte_carlo(ex, single_thread):
    """K^l, J^{0,l}, c^l of the theory against the 1/N-extrapolated simulation (|z| <= 4)."""
    res = cs.validate(ex.block, widths=(32, 64), depth=4, n_nets=24, n_probes=2, seed=1,
                      **ex.hp)
    assert len(res.scored) >= 10
    assert res.passed, res.to_text()


def _distinct(cases):
    """One case per (block, hyperparameters, shape): an example registered twice (by an
    operator and as a built-in block) is simulated once."""
    seen, out = set(), []
    for c in cases:
        ex = c.values[0]
        key = (repr(ex.block), tuple(sorted(ex.hp.items())), ex.shape, ex.mc_depth, ex.band)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


SHAPED_MC_CASES = _distinct([c for c in CASES if c.values[0].theory
                             and c.values[0].shape is not None and c.values[0].monte_carlo])


def _maps_setup(ex):
    """Feature shapes, networks and depth of the check.  Multi-axis blocks (Transpose: rows
    and neurons both mix) scale every axis, N = 32, 64 (at N = 16 the O(1/N²) terms of the
    APJN still bend the extrapolation); token blocks (Attention) fix the number of tokens,
    which is part of the block, and scale the channels, C = 32, 64; blocks on spatial maps
    scale the channels, C = 16, 32."""
    if uses_tokens(ex.block):  # the number of tokens is part of the block: scale channels
        widths = (32, 64)
        return widths, [(*ex.shape[:-1], w) for w in widths], 96
    if uses_axes(ex.block):
        widths = (32, 64)
        return widths, [tuple(w for _ in ex.shape) for w in widths], 96
    widths = (16, 32)
    return widths, [(*ex.shape[:-1], c) for c in widths], 24


@pytest.mark.parametrize("ex", SHAPED_MC_CASES)
def test_theory_against_monte_carlo_on_feature_maps(ex, single_thread):
    """Blocks on feature maps: K^l, J^{0,l} per entry (and the per-row offset O_T^l of
    multi-axis states) against the simulation at two sizes, extrapolated in 1/N (|z| <= 4),
    for ``ex.mc_depth`` blocks."""
    depth = ex.mc_depth
    widths, shapes, n_nets = _maps_setup(ex)
    th = cs.derive(ex.block).run(depth, K0=1.0, **ex.hp)
    sims = [simulate_maps(ex.block, shape, depth, n_nets=n_nets, n_probes=2, seed=5, **ex.hp)
            for shape in shapes]
    quantities = ("K", "J", "O_T") if uses_axes(ex.block) else ("K", "J")
    for q in quantities:
        for layer in range(1, depth + 1):
            ext, se, _ = extrapolate(widths, [float(getattr(s, q)[layer]) for s in sims],
                                     [float(getattr(s, q + "_se")[layer]) for s in sims])
            ref = float(getattr(th, q)[layer])
            assert abs(ext - ref) <= 4 * se, (q, layer, ext, se, ref)


BAND_CASES = _distinct([c for c in CASES if c.values[0].band is not None])


@pytest.mark.slow
@pytest.mark.parametrize("ex", BAND_CASES)
def test_known_gap_is_as_measured(ex, single_thread):
    """Characterisation of a stated approximation of the theory: the sim/theory ratio of a fresh
    measurement (128 networks, a seed the band did not use) agrees with the example's measured
    band within 4 combined standard errors; a closed gap fails too and should then become an
    ordinary agreement test (raise ``mc_depth``)."""
    b = ex.band
    th = cs.derive(ex.block).run(b.layer, K0=1.0, **ex.hp)
    sims = [simulate_maps(ex.block, tuple(w for _ in ex.shape), b.layer, n_nets=128,
                          n_probes=2, seed=11, **ex.hp) for w in b.widths]
    ext, se, _ = extrapolate(b.widths, [float(getattr(s, b.quantity)[b.layer]) for s in sims],
                             [float(getattr(s, b.quantity + "_se")[b.layer]) for s in sims])
    ref = float(getattr(th, b.quantity)[b.layer])
    ratio, ratio_se = ext / ref, se / ref
    assert abs(ratio - b.ratio) <= 4 * math.hypot(ratio_se, b.se), (ratio, ratio_se, b)


@pytest.mark.parametrize("ex", CASES)
def test_bad_hyperparameter_is_a_clear_error(ex):
    """A non-finite value in any hyperparameter field is refused at construction (through
    the JSON path every constructor shares), and a missing value at build time."""
    checked = 0
    for op in _ops(ex.block):
        for field in type(op).hyper_fields:
            d = op.to_dict()
            d[field] = math.nan
            with pytest.raises(CritsymError):
                from_dict(d)
            checked += 1
    d = ex.block.to_dict()
    d["no_such_field"] = 1
    with pytest.raises(CritsymError, match="no_such_field"):
        from_dict(d)
    if ex.block.hyperparameters():
        with pytest.raises(CritsymError, match="missing hyperparameter"):
            cs.build(ex.block, _shape(ex)[-1], 1, in_shape=ex.shape)
