"""How a search spreads over processes: a table.

A ``GridSearchCV`` of 8 small fits (4 settings x 2 folds of
``CNNClassifier(max_epochs=10)`` on scikit-learn's 1,797 digits,
``refit=False``) run

``n_jobs=1``
    in the calling process, torch on one thread;
``loky``
    with ``n_jobs=K`` on joblib's default backend (joblib sets
    ``OMP_NUM_THREADS`` to ``cores // K`` in its workers);
``dask``
    under ``joblib.parallel_backend("dask")`` on a ``LocalCluster`` of K
    worker processes with one thread each, as Dask starts them (only where
    Dask is installed: ``pip install "skweight[distributed]"``);
``dask, glibc trim default``
    the same, with ``MALLOC_TRIM_THRESHOLD_`` removed from the environment
    Dask's nanny gives its workers (``distributed.nanny.pre-spawn-environ``
    sets it to 65536, which also turns off glibc's adaptive ``mmap``
    threshold: every activation larger than 128 KiB is then mapped and
    unmapped at each step);
``loky, 2 threads each`` (``--oversubscribed``)
    as ``loky`` but with ``inner_max_num_threads=2``: K processes with 2
    torch threads each, which on K cores is twice as many threads as cores.

Each (configuration, round) runs in a fresh Python process that starts its
pool, warms it with one untimed search and times the next one; the rounds
interleave the configurations. The table gives the median of ``--repeats``
rounds and whether each configuration reproduced the scores of ``n_jobs=1``
(bit for bit).

Usage::

    python benchmarks/bench_search.py                  # K = number of cores
    python benchmarks/bench_search.py --n-jobs 4 --repeats 5
    python benchmarks/bench_search.py --oversubscribed

Run it on an otherwise idle machine: the speed-up is a ratio of wall times.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

GRID = {"lr": [1e-3, 3e-3], "class_weight": [None, "balanced"]}
CONFIGS = ("n_jobs=1", "loky", "dask", "dask, glibc trim default",
           "loky, 2 threads each")


def _search(n_jobs):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skweight import CNNClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    search = GridSearchCV(
        CNNClassifier(input_shape=(1, 8, 8), max_epochs=10, random_state=0),
        GRID, cv=StratifiedKFold(2, shuffle=True, random_state=0), refit=False,
        n_jobs=n_jobs, scoring="balanced_accuracy",
    )
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.cv_results_["mean_test_score"].tolist()


def _child(config, n_jobs):
    """Time one search of ``config`` after an untimed one; print JSON."""
    import joblib
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    if config == "n_jobs=1":
        def run():
            return _search(1)
    elif config == "loky":
        def run():
            return _search(n_jobs)
    elif config == "loky, 2 threads each":
        def run():
            with joblib.parallel_config(backend="loky", inner_max_num_threads=2):
                return _search(n_jobs)
    else:
        import dask
        from dask.distributed import Client, LocalCluster

        settings = {}
        if config == "dask, glibc trim default":
            settings["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = None
        with dask.config.set(settings):
            cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
        Client(cluster)

        def run():
            with joblib.parallel_backend("dask", wait_for_workers_timeout=60):
                return _search(None)
    run()
    seconds, scores = run()
    print(json.dumps({"seconds": seconds, "scores": scores}))


def _has_dask():
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2,
                   help="worker processes (default: the number of cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    p.add_argument("--oversubscribed", action="store_true",
                   help="add the row with 2 torch threads per worker")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args.child, args.n_jobs)
    configs = [c for c in CONFIGS
               if (_has_dask() or not c.startswith("dask"))
               and (args.oversubscribed or c != "loky, 2 threads each")]
    if not _has_dask():
        print("dask is not installed: no dask rows (pip install 'skweight[distributed]')")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = {c: [] for c in configs}
    scores = {}
    for rep in range(args.repeats):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]
        for config in order:
            out = subprocess.run(
                [sys.executable, __file__, "--child", config, "--n-jobs", str(args.n_jobs)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times[config].append(result["seconds"])
            scores.setdefault(config, result["scores"])
            print(f"round {rep}: {config}: {result['seconds']:.2f} s", flush=True)
    import torch

    base = statistics.median(times["n_jobs=1"])
    print(f"\n{os.cpu_count()} cores, K={args.n_jobs}, torch {torch.__version__}, "
          f"median wall time of the search over {args.repeats} rounds\n")
    print("| configuration | rounds (s) | median (s) | speed-up | same scores |")
    print("| --- | --- | --- | --- | --- |")
    for config in configs:
        med = statistics.median(times[config])
        same = scores[config] == scores["n_jobs=1"]
        rounds = ", ".join(f"{t:.2f}" for t in times[config])
        name = config.replace("loky", f"loky n_jobs={args.n_jobs}", 1).replace(
            "dask", f"dask {args.n_jobs} workers x 1 thread", 1)
        print(f"| {name} | {rounds} | {med:.2f} | {base / med:.2f}x | {same} |")
    return None


if __name__ == "__main__":
    main()
