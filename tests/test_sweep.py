"""critsym.sweep: the same table from every backend and shard count, exact merging, retries
that keep finished shards, output checks, and validate's rule on the merged table."""

from __future__ import annotations

import functools
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from pandas.testing import assert_frame_equal

import critsym as cs
from critsym.errors import SimulationError
from critsym.sweep import ShardFailed, execute, make_plan, read_table, run_shard

ARCH = cs.mlp_block("tanh")
SMALL = dict(grid={"sigma_w": [1.0, 1.4]}, sigma_b=0.2, widths=(16, 32), depth=3, n_nets=8,
             n_probes=2, progress=False)


@pytest.fixture(scope="module")
def serial():
    return cs.sweep(ARCH, shards=1, **SMALL)


def test_table_has_one_row_per_arch_point_width_layer(serial):
    t = serial.table
    assert len(t) == 2 * 2 * 4
    assert list(t.columns[:6]) == ["arch", "sigma_w", "sigma_b", "width", "layer", "n_nets"]
    for q in ("K", "J", "c"):
        assert {q, q + "_se", q + "_theory"} <= set(t.columns)
    row = t[(t.sigma_w == 1.4) & (t.width == 32) & (t.layer == 3)].iloc[0]
    sim = cs.simulate(ARCH, 32, 3, n_nets=8, n_probes=2, seed=17, sigma_w=1.4, sigma_b=0.2)
    assert row["K"] == sim.K[3] and row["J_se"] == sim.J_se[3] and row["c"] == sim.c[3]
    th = cs.derive(ARCH).run(3, K0=sim.K0, c0=sim.c0, sigma_w=1.4, sigma_b=0.2)
    assert row["K_theory"] == pytest.approx(th.K[3], rel=1e-14)


@pytest.fixture(scope="module")
def sharded():
    return cs.sweep(ARCH, shards=4, **SMALL)


def test_shards_merge_to_the_chunked_serial_run(serial, sharded):
    # shards of 2 networks repeat the chunks of one simulate call with chunk_size=2 exactly
    t = sharded.table
    row = t[(t.sigma_w == 1.0) & (t.width == 16)]
    sim = cs.simulate(ARCH, 16, 3, n_nets=8, n_probes=2, chunk_size=2, sigma_w=1.0,
                      sigma_b=0.2)
    np.testing.assert_array_equal(row["J"], sim.J)
    np.testing.assert_array_equal(row["c_se"], sim.c_se)
    # other chunkings agree to rounding
    assert_frame_equal(t, serial.table, check_exact=False, rtol=1e-12, atol=1e-15)


def test_local_processes_give_the_identical_table(sharded):
    local = cs.sweep(ARCH, shards=4, backend="local", workers=2, **SMALL)
    assert_frame_equal(local.table, sharded.table, check_exact=True)


def test_merged_table_validates_like_validate(serial):
    v = serial.validate()
    ref = cs.validate(ARCH, widths=(16, 32), depth=3, n_nets=8, n_probes=2, sigma_w=1.0,
                      sigma_b=0.2)
    mine = v[v.sigma_w == 1.0]
    assert len(mine) == len(ref.rows)
    for r in ref.rows:
        m = mine[(mine.quantity == r["quantity"]) & (mine.layer == r["layer"])].iloc[0]
        assert m["extrapolated"] == r["extrapolated"]
        assert m["extrapolated_se"] == r["extrapolated_se"]
        assert (m["z"] is None or np.isnan(m["z"])) if r["z"] is None else m["z"] == r["z"]
        assert m["passed"] == (None if r["z"] is None else abs(r["z"]) <= 4)


def _flaky(marker: str, shard):
    """Fails once for the shard starting at network 2 of the first task (a file marks it)."""
    m = Path(marker)
    if shard.networks.start == 2 and shard.point == (("sigma_w", 1.0),) and not m.exists():
        m.write_text("failed once")
        raise RuntimeError("injected failure")
    return run_shard(shard)


def _crash_once(marker: str, shard):
    """Kills its worker process once (a lost worker, not an exception)."""
    import os

    m = Path(marker)
    if shard.networks.start == 2 and not m.exists():
        m.write_text("crashed once")
        os._exit(3)
    return run_shard(shard)


@pytest.mark.slow
def test_a_lost_local_worker_is_replaced_and_its_shards_rerun(tmp_path):
    plan = make_plan(ARCH, {"sigma_w": [1.0, 1.4]}, (16,), 2, 6, 0, 3, {"sigma_b": 0.2},
                     {"n_probes": 2})
    ref = execute(plan.shards, "serial")
    out = execute(plan.shards, "local", workers=2,
                  fn=functools.partial(_crash_once, str(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_array_equal(a.J_nets, b.J_nets)


def _always_fails(shard):
    raise RuntimeError("must not be called")


@pytest.mark.parametrize("backend", ["serial", pytest.param("local", marks=pytest.mark.slow)])
def test_a_failed_shard_is_retried_and_finished_shards_are_kept(backend, tmp_path):
    plan = make_plan(ARCH, {"sigma_w": [1.0, 1.4]}, (16,), 2, 6, 0, 3, {"sigma_b": 0.2},
                     {"n_probes": 2})
    ref = execute(plan.shards, "serial")
    out = execute(plan.shards, backend, workers=2,
                  fn=functools.partial(_flaky, str(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_array_equal(a.J_nets, b.J_nets)
    # no retries: the failure is reported with every other finished shard kept
    (tmp_path / "marker").unlink()
    with pytest.raises(ShardFailed, match="failed 1 times") as err:
        execute(plan.shards, "serial", retries=0,
                fn=functools.partial(_flaky, str(tmp_path / "marker")))
    assert len(err.value.finished) >= 1 and 1 not in err.value.finished


def test_checkpoint_resumes_without_recomputing(tmp_path):
    plan = make_plan(ARCH, {"sigma_w": [1.2]}, (16,), 2, 4, 0, 2, {"sigma_b": 0.2},
                     {"n_probes": 2})
    first = execute(plan.shards, "serial", checkpoint=tmp_path / "ck")
    assert len(list((tmp_path / "ck").glob("shard-*.pkl"))) == 2
    again = execute(plan.shards, "serial", checkpoint=tmp_path / "ck", fn=_always_fails)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.K_nets, b.K_nets)
    # a point that differs only in the 8th digit is a different shard
    close = make_plan(ARCH, {"sigma_w": [1.2 + 1e-8]}, (16,), 2, 4, 0, 2, {"sigma_b": 0.2},
                      {"n_probes": 2})
    with pytest.raises(ShardFailed):
        execute(close.shards, "serial", checkpoint=tmp_path / "ck", fn=_always_fails,
                retries=0)


def test_output_is_checked_before_computing_and_round_trips(tmp_path, serial):
    t0 = time.perf_counter()
    for bad, msg in [(tmp_path / "t.xlsx", "must end in"),
                     (tmp_path / "missing" / "t.csv", "does not exist")]:
        with pytest.raises(SimulationError, match=msg):
            cs.sweep(ARCH, out=bad, grid={"sigma_w": [1.0]}, sigma_b=0.1, widths=4096,
                     depth=50, n_nets=1000)
    assert time.perf_counter() - t0 < 5  # rejected before the (long) simulation
    for name in ("t.csv", "t.parquet"):
        p = serial.save(tmp_path / name)
        assert_frame_equal(read_table(p), serial.table, check_exact=True)


def test_bad_plans_are_rejected():
    with pytest.raises(SimulationError, match="needs values for"):
        cs.sweep(ARCH, grid={"sigma_w": [1.0]}, widths=8, depth=1, n_nets=2)
    with pytest.raises(SimulationError, match="no architecture has"):
        cs.sweep(ARCH, grid={"sigma_w": [1.0], "mu": [0.5]}, sigma_b=0.1, widths=8, depth=1,
                 n_nets=2)
    with pytest.raises(SimulationError, match="backend"):
        cs.sweep(ARCH, grid={"sigma_w": [1.0]}, sigma_b=0.1, widths=8, depth=1, n_nets=2,
                 backend="dask")
    with pytest.raises(SimulationError, match="repeats"):
        make_plan(ARCH, {"sigma_w": [1.0, 1.0]}, 8, 1, 2, 0, 1, {"sigma_b": 0.1})
    with pytest.raises(SimulationError, match="distinct"):
        make_plan(ARCH, {}, (8, 8), 1, 2, 0, 1, {"sigma_w": 1.0, "sigma_b": 0.1})


def test_several_architectures_share_one_table():
    st = cs.sweep({"tanh": ARCH, "res": cs.mlp_block("relu", residual_mu=cs.mu)},
                  grid={"sigma_w": [1.2]}, sigma_b=0.1, mu=0.5, widths=8, depth=2, n_nets=3,
                  c0=None, progress=False)
    assert sorted(st.table.arch.unique()) == ["res", "tanh"]
    with pytest.raises(SimulationError, match="two widths"):
        st.validate()
    assert "c" not in st.table.columns
    assert st.table[st.table.arch == "tanh"]["mu"].isna().all()
    assert (st.table[st.table.arch == "res"]["mu"] == 0.5).all()


def test_a_used_theory_pickles_with_standard_pickle():
    """What multiprocessing (spawn) and the sweep's workers need: a derived theory, after use,
    through the standard pickle, giving the same numbers."""
    for arch, hp in [(ARCH, dict(sigma_w=1.3, sigma_b=0.2)),
                     (cs.mixer_block("gelu"), dict(sigma_w=1.1, sigma_b=0.3, mu=0.5))]:
        th = cs.derive(arch)
        before = th.run(3, K0=1.0, **hp)
        again = pickle.loads(pickle.dumps(th)).run(3, K0=1.0, **hp)
        np.testing.assert_array_equal(again.J, before.J)
        np.testing.assert_array_equal(again.K, before.K)


def test_shards_and_results_pickle_with_standard_pickle():
    plan = make_plan(ARCH, {"sigma_w": [1.2]}, (8,), 1, 2, 0, 1, {"sigma_b": 0.1})
    shard = pickle.loads(pickle.dumps(plan.shards[0]))
    assert shard == plan.shards[0]
    res = pickle.loads(pickle.dumps(run_shard(shard)))
    assert res.n_nets == 2


def test_ray_backend_gives_the_identical_table_and_retries(sharded, tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        st = cs.sweep(ARCH, shards=4, backend="ray", **SMALL)
        plan = st.plan
        # Ray's workers cannot import this test module: ship its functions by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        flaky = execute(plan.shards, "ray", fn=functools.partial(_flaky, str(tmp_path / "m")))
    finally:
        ray.shutdown()
    assert_frame_equal(st.table, sharded.table, check_exact=True)
    assert (tmp_path / "m").exists()  # the injected failure happened and was retried
    for shard, res in zip(plan.shards, flaky, strict=True):
        np.testing.assert_array_equal(res.J_nets, sharded.results[shard.task].J_nets[
            :, shard.networks.start:shard.networks.stop])


def test_phase_command_draws_the_measured_diagram(tmp_path, capsys):
    from critsym.sweep.cli import main

    out = tmp_path / "phase.png"
    table = tmp_path / "phase.csv"
    rc = main(["phase", "--backend", "serial", "--width", "32", "--n", "4", "--points", "4",
               "3", "--burn-in", "2", "--quiet", "--out", str(out), "--table", str(table)])
    assert rc == 0 and out.stat().st_size > 10_000
    t = read_table(table)
    assert len(t) == 4 * 3 * 4 and set(t.layer) == {0, 1, 2, 3}
    text = capsys.readouterr().out
    assert "4x3 grid, width 32" in text and "theory sigma_w*" in text
    assert main(["phase", "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["phase", "--arch", "mixer", "--out", str(out)]) == 2  # needs --mu
    assert "needs --mu" in capsys.readouterr().err


def test_measured_phase_grid_matches_the_table():
    from critsym.sweep.phase import measure_phase

    ph = measure_phase(ARCH, [0.8, 1.6], [0.1, 0.5, 0.9], width=16, n_nets=3, burn_in=1,
                       progress=False)
    assert ph.chi.shape == (3, 2)
    t = ph.study.table
    row = t[(t.sigma_w == 1.6) & (t.sigma_b == 0.5) & (t.layer == 2)].iloc[0]
    assert ph.chi[1, 1] == row["J"] and ph.chi_theory[1, 1] == row["J_theory"]
    K0 = next(iter(ph.study.results.values())).K0  # of the float32 input
    th = cs.derive(ARCH).run(2, K0=K0, sigma_w=1.6, sigma_b=0.5)
    assert ph.chi_theory[1, 1] == pytest.approx(th.J[2] / th.J[1], rel=1e-12)
    fig = ph.plot()
    assert fig.axes
