"""Torch's thread count inside parallel workers.

torch uses every core for each process by default. When a search runs fits
in several worker processes (joblib's ``loky`` backend, the default of
``GridSearchCV(n_jobs=...)``, or Dask workers), each worker's torch would
then spawn as many threads as there are cores: on 2 cores, 2 workers with 2
threads each made tiny fits 10-40x slower (threads spinning on each other's
cores). Worker pools say how many threads a task may use through
``OMP_NUM_THREADS`` (joblib sets it for its workers, Dask's nanny sets it to
1 by default); inside such a worker, a fit and a prediction lower torch's
thread count to that value and restore it afterwards. Outside workers the
caller's setting is never touched, and the count is never raised.
"""

import contextlib
import multiprocessing
import os
import sys

import torch

__all__ = ["thread_limit", "worker_threads"]


def _in_dask_worker():
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def thread_limit():
    """Return the number of torch threads a task may use here, or None for no limit.

    Returns
    -------
    limit : None or int
        ``OMP_NUM_THREADS`` inside a worker process (a child process of a
        pool, or a Dask worker); None elsewhere or when it is not set.
    """
    value = os.environ.get("OMP_NUM_THREADS")
    if not value:
        return None
    in_worker = multiprocessing.parent_process() is not None or _in_dask_worker()
    if not in_worker:
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if limit >= 1 else None


@contextlib.contextmanager
def worker_threads():
    """Run a block with torch's threads capped to :func:`thread_limit`."""
    limit = thread_limit()
    before = torch.get_num_threads()
    if limit is None or before <= limit:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(before)
