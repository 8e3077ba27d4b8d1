"""The executors a sweep runs on: a local process pool, or an existing Dask cluster by address."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from simulator.errors import UserError


def one_thread_per_worker() -> None:
    """Parallelism comes from the workers: keep each one's math libraries (torch, BLAS) single-threaded,
    else N workers x M threads oversubscribe the cores (measured: 40x slower accuracy tasks)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


@contextmanager
def open_executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """A process pool of `workers` (default: all cores), or the executor of the Dask scheduler at
    `scheduler` (tcp://HOST:PORT). On exit (also on Ctrl-C) queued tasks are cancelled, not awaited."""
    if scheduler:
        from dask.distributed import Client

        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (dask config)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler ({exc.__class__.__name__})",
                            field="--scheduler") from None
        executor: Executor = client.get_executor(pure=False)
        try:
            yield executor
        finally:
            executor.shutdown(wait=False)
            client.close()
        return
    # forkserver: workers start from a clean process, never a fork of a threaded parent; the server
    # imports the sweep code once so that each worker does not
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["simulator.sweep.runner"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=one_thread_per_worker)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
