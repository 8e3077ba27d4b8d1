"""The executors a sweep runs on: a local process pool, or an existing Dask cluster by address.

A local worker never outlives the sweep, even one killed with SIGKILL: a daemon thread in each worker
polls the sweep's process (pid and start time, so a reused pid does not count) and exits the worker when
it is gone. The worker's parent is the forkserver, not the sweep, and the forkserver would only exit
once every worker has (each holds the forkserver's "sweep alive" pipe), so neither waiting for the
parent nor PR_SET_PDEATHSIG would fire. With the workers gone the forkserver and the resource tracker
see their pipes close and exit too. Dask workers belong to their cluster and are left alone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from simulator.errors import UserError

SWEEP_POLL_S = 0.25  # how often a worker checks that its sweep is still running


def one_thread_per_worker() -> None:
    """Parallelism comes from the workers: keep each one's math libraries (torch, BLAS) single-threaded,
    else N workers x M threads oversubscribe the cores (measured: 40x slower accuracy tasks)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def process_start(pid: int) -> str | None:
    """An identity of process `pid` that a reused pid does not share (its start time, on Linux), or
    None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: fall back on the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return None if fields[0] in (b"Z", b"X") else fields[19].decode()  # a zombie has exited: gone


def exit_with_sweep(pid: int, start: str | None) -> None:
    """Start a daemon thread that exits this process once process `pid` (started at `start`) is gone."""
    def watch() -> None:
        while process_start(pid) == start:
            time.sleep(SWEEP_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-sweep", daemon=True).start()


def init_worker(sweep_pid: int, sweep_start: str | None) -> None:
    """Initializer of each local worker process."""
    exit_with_sweep(sweep_pid, sweep_start)
    one_thread_per_worker()


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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                               initargs=(os.getpid(), process_start(os.getpid())))
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
