"""Streaming weights and network shards: the streaming pass equals an eager build of the same
seed bit for bit, and any split of the networks merges back to the serial run bit for bit."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

import critsym as cs
from critsym.errors import SimulationError
from critsym.torch.estimators import jvp_norms_folded, make_probes, vjp_norms_folded
from critsym.torch.feature_maps import MapsResult, simulate_maps
from critsym.torch.simulate import SimulationResult, make_inputs, network_generators

HP = dict(sigma_w=1.3, sigma_b=0.2)
MLP = cs.mlp_block("tanh", layernorm="pre", residual_mu=0.8)
MIXER = cs.mixer_block("gelu")
FIELDS = ("K_nets", "J_nets", "c_nets", "J_to_nets")


def _eager_reference(arch, width, depth, n, seed, l0, l, P, in_shape=None, device="cpu",
                     **hp):
    """The Monte Carlo estimates computed the eager way: every block stored (``build``), the
    whole trajectory kept, then one forward-mode and one reverse-mode pass over it."""
    shape = in_shape or (width,)
    dev = torch.device(device)
    net = cs.build(arch, width, depth, n_nets=n, seed=seed, in_shape=in_shape, device=dev, **hp)
    X = torch.stack([make_inputs(width, 1.0, 0.5, generator=g, in_shape=shape)
                     for g in network_generators(seed + 31337, 0, n, dev)])
    with torch.no_grad():
        traj = net.trajectory(X)
    flat = [h.reshape(n, 2, -1) for h in traj]
    K = torch.stack([(h[:, 0] ** 2).mean(-1) for h in flat])
    c = torch.stack([(h[:, 0] * h[:, 1]).sum(-1)
                     / (h[:, 0].norm(dim=-1) * h[:, 1].norm(dim=-1)) for h in flat])
    pg = network_generators(seed + 99991, 0, n, dev)
    h0 = traj[l0][:, 0]
    V = make_probes("gaussian", P, h0.shape, generators=pg, device=dev)
    sq = torch.cat([jvp_norms_folded(lambda z: net.trajectory(z, start=l0), h0, V)])
    n_out = int(np.prod(shape))
    J = torch.full((depth + 1, n), float("nan"), dtype=torch.float64, device=dev)
    J[l0:] = sq.mean(0) / n_out
    U = make_probes("gaussian", P, X[:, 0].shape, generators=pg, device=dev)
    sqr = torch.cat([vjp_norms_folded(lambda Y, *d: net.trajectory(Y, 0, l, list(d))[-1],
                                      X[:, 0], l + 1, U)])
    return dict(K_nets=K.cpu().numpy(), J_nets=J.cpu().numpy(), c_nets=c.cpu().numpy(),
                J_to_nets=(sqr.mean(0) / n_out).cpu().numpy())


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("arch,width,in_shape,hp,device", [
    (MLP, 12, None, HP, "cpu"), (MIXER, 6, (6, 6), dict(HP, mu=0.5), "cpu"),
    pytest.param(MLP, 256, None, HP, "cuda", marks=[pytest.mark.gpu, GPU])])
def test_streaming_simulate_equals_eager_build_bit_for_bit(arch, width, in_shape, hp, device):
    ref = _eager_reference(arch, width, 5, 3, seed=4, l0=1, l=3, P=3, in_shape=in_shape,
                           device=device, **hp)
    r = cs.simulate(arch, width, 5, n_nets=3, seed=4, l0=1, l=3, n_probes=3,
                    in_shape=in_shape, device=device, **hp)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(r, f), ref[f], err_msg=f)


def test_streaming_net_draws_the_eager_weights_and_keeps_two_blocks():
    eager = cs.build(MLP, 16, 6, n_nets=2, seed=9, **HP)
    stream = cs.build(MLP, 16, 6, n_nets=2, seed=9, stream=True, **HP)
    assert stream.streaming and not eager.streaming and stream.depth == 6
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    assert torch.equal(stream(x), eager(x))
    assert all(torch.equal(a, b) for a, b in zip(stream.trajectory(x, 2, 5),
                                                 eager.trajectory(x, 2, 5)))
    alive, blocks = [], stream.iter_blocks()
    for k in range(6):
        blk = next(blocks)
        for p, q in zip(blk.parameters(), eager.blocks[k].parameters(), strict=True):
            assert torch.equal(p, q)
        alive.append(weakref.ref(blk))
        del blk
        assert sum(w() is not None for w in alive) == 1, k  # earlier blocks were dropped
    assert torch.equal(stream(x), eager(x))  # a second pass rewinds the generators


def test_chunks_are_cut_at_multiples_of_the_chunk_size():
    from critsym.torch.simulate import aligned_chunks

    assert aligned_chunks(range(0, 7), 3) == [(0, 3), (3, 6), (6, 7)]
    assert aligned_chunks(range(4, 11), 3) == [(4, 6), (6, 9), (9, 11)]
    assert aligned_chunks(range(3, 5), 8) == [(3, 5)]
    assert cs.simulate(MLP, 8, 2, networks=range(4, 11), chunk_size=3, **HP).chunks == [2, 3, 2]


@pytest.mark.parametrize("cuts,chunk", [((3,), 3), ((3, 6), 3), ((1, 2, 6), 1)])
def test_any_split_of_simulate_merges_to_the_serial_run(cuts, chunk):
    """Cut at multiples of the chunk size, the shards repeat the serial run's chunks."""
    kw = dict(n_probes=3, seed=11, l0=1, l=3, chunk_size=chunk, **HP)
    serial = cs.simulate(MLP, 10, 4, n_nets=7, **kw)
    edges = (0, *cuts, 7)
    shards = [cs.simulate(MLP, 10, 4, networks=range(a, b), **kw)
              for a, b in zip(edges, edges[1:])]
    assert [s.networks for s in shards] == [range(a, b) for a, b in zip(edges, edges[1:])]
    merged = SimulationResult.concat(shards[::-1])  # order does not matter
    assert merged.n_nets == 7 and merged.networks == range(7)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(merged, f), getattr(serial, f), err_msg=f)
    for q in ("K", "K_se", "J", "J_se", "c", "c_se", "J_to", "J_to_se"):
        np.testing.assert_array_equal(getattr(merged, q), getattr(serial, q), err_msg=q)
    assert cs.SimulationResult is SimulationResult


def test_concat_rejects_what_does_not_tile_one_run():
    a = cs.simulate(MLP, 8, 2, networks=range(0, 2), **HP)
    b = cs.simulate(MLP, 8, 2, networks=range(3, 4), **HP)
    with pytest.raises(SimulationError, match="leave a gap"):
        SimulationResult.concat([a, b])
    with pytest.raises(SimulationError, match="overlap"):
        SimulationResult.concat([a, cs.simulate(MLP, 8, 2, networks=range(1, 3), **HP)])
    other = cs.simulate(MLP, 8, 2, networks=range(2, 3), seed=5, **HP)
    with pytest.raises(SimulationError, match="seed"):
        SimulationResult.concat([a, other])
    with pytest.raises(SimulationError, match="non-empty"):
        SimulationResult.concat([])
    with pytest.raises(SimulationError, match="disagrees"):
        cs.simulate(MLP, 8, 2, n_nets=3, networks=range(2), **HP)
    with pytest.raises(SimulationError, match="range"):
        cs.simulate(MLP, 8, 2, networks=[0, 1], **HP)


def test_simulate_maps_split_merges_to_the_serial_run():
    kw = dict(n_probes=2, seed=2, c0=0.3, mu=0.5, chunk_size=2, **HP)
    serial = simulate_maps(MIXER, (6, 6), 3, n_nets=5, **kw)
    merged = MapsResult.concat([simulate_maps(MIXER, (6, 6), 3, networks=range(a, b), **kw)
                                for a, b in ((0, 2), (2, 5))])
    assert merged.networks == range(5)
    for f in ("K_nets", "O_T_nets", "J_nets", "c_nets"):
        np.testing.assert_array_equal(getattr(merged, f), getattr(serial, f), err_msg=f)
    other = simulate_maps(MIXER, (6, 6), 3, networks=range(5, 6), **dict(kw, c0=0.4))
    with pytest.raises(SimulationError, match="settings"):
        MapsResult.concat([merged, other])


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_apjn_split_over_examples_merges_to_the_serial_run(mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                                torch.nn.Tanh()).double()
    x = torch.randn(6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layers = ["0", "3"]

    def run(a, b):  # tanh MLP: one example's outputs do not depend on the batch it is in
        return cs.apjn(model, x[a:b], layers, mode=mode, n_probes=5, seed=3,
                       networks=range(a, b))

    serial = run(0, 6)
    merged = cs.APJNResult.concat([run(4, 6), run(0, 1), run(1, 4)])
    np.testing.assert_array_equal(merged.samples, serial.samples)
    np.testing.assert_array_equal(merged.J, serial.J)
    np.testing.assert_array_equal(merged.J_se, serial.J_se)
    assert merged.networks == range(6) and serial.samples.shape == (2, 30)
    with pytest.raises(SimulationError, match="batch rows"):
        cs.apjn(model, x, layers, networks=range(5))
    with pytest.raises(SimulationError, match="networks=range"):
        cs.apjn(model, x, layers, mode="exact", networks=range(6))
    with pytest.raises(SimulationError, match="networks=range"):
        cs.APJNResult.concat([cs.apjn(model, x, layers)])
