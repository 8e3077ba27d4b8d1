"""The Dask path: a sweep run through `--scheduler` on a loopback LocalCluster gives the local table."""

from __future__ import annotations

import pandas as pd
import pytest
from sweep_fakes import FAKE_SWEEP, fake_accuracy, fake_point

from simulator.errors import UserError
from simulator.sweep import SweepSpec, expand, run_sweep
from simulator.sweep.executors import open_executor

distributed = pytest.importorskip("distributed")


def test_dask_cluster_gives_the_same_table_as_the_local_pool(tmp_path):
    points = expand(SweepSpec.model_validate(FAKE_SWEEP))
    with open_executor(workers=2) as ex:
        local = run_sweep(points, tmp_path / "local", ex, point_fn=fake_point, accuracy_fn=fake_accuracy,
                          progress=False).table
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp://", host="127.0.0.1", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with open_executor(scheduler=cluster.scheduler_address) as ex:
            res = run_sweep(points, tmp_path / "dask", ex, point_fn=fake_point, accuracy_fn=fake_accuracy,
                            progress=False)
    assert res.ran == len(points) + len({p.accuracy_id for p in points})
    pd.testing.assert_frame_equal(res.table, local)


def test_unreachable_scheduler_is_one_clear_error():
    import dask

    fast = dask.config.set({"distributed.comm.timeouts.connect": "1s"})
    unreachable = open_executor(scheduler="tcp://127.0.0.1:9")
    with fast, pytest.raises(UserError, match="--scheduler: cannot reach the Dask scheduler"), unreachable:
        pass
