"""Does a real torchrun script finish, every time? A table.

Launches the same small script ``--launches`` times in a row with
``torchrun --standalone --nproc_per_node=K`` (gloo on the CPU). The script
is what users write: ``fit``, ``predict``, ``fit`` (the pattern of a
cross-validation or a refit), with the default network on 200 of
scikit-learn's digits, ``batch_size=16``, one epoch per fit. Each launch is
counted by how it ended:

``exit 0``
    torchrun returned 0;
``aborts``
    a process aborted (SIGABRT, ``terminate called ...``), typically at
    exit after the work was done;
``hangs``
    the launch did not end within ``--timeout`` seconds and was killed;
``other``
    any other failure (its last lines are printed).

The median time is over the launches that exited 0, start to end,
interpreter start-up and imports included.

Usage::

    python benchmarks/bench_torchrun.py                    # 50 launches, K = 2
    python benchmarks/bench_torchrun.py --launches 10 --nproc 3
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_torchrun.py

The last form measures another copy of skweight (e.g. 0.2) with the same
script.
"""

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

SCRIPT = textwrap.dedent('''
    import os
    import numpy as np, torch
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits
    from skweight import CNNClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 1, 8, 8).astype(np.float32)[:200]
    y = y[:200]
    clf = CNNClassifier(batch_size=16, max_epochs=1, random_state=0)
    clf.fit(X, y)
    clf.predict(X)
    clf.fit(X, y)
    print("done", os.environ.get("RANK"), flush=True)
''')


def _descendants(pid):
    """Return the ids of the descendants of process ``pid`` (torchrun's workers too)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # the parent id follows the name, which may hold spaces
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def _launch(script, nproc, timeout):
    """Run one launch; return (outcome, seconds, output tail)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", script]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The workers hold the output pipe too: end them with the launcher.
        for pid in _descendants(proc.pid) + [proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "hangs", time.perf_counter() - start, out
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return "exit 0", seconds, out
    if "terminate called" in out or "SIGABRT" in out or "exitcode: -6" in out:
        return "aborts", seconds, out
    return "other", seconds, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=50)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after which a launch counts as a hang")
    args = parser.parse_args()

    counts = {"exit 0": 0, "aborts": 0, "hangs": 0, "other": 0}
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "fit_predict_fit.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        for i in range(args.launches):
            outcome, took, out = _launch(script, args.nproc, args.timeout)
            counts[outcome] += 1
            if outcome == "exit 0":
                seconds.append(took)
            elif outcome == "other":
                print(f"launch {i + 1}: failed\n{out[-1500:]}", file=sys.stderr)
            print(f"launch {i + 1:3d}/{args.launches}: {outcome:6s} {took:6.1f} s",
                  file=sys.stderr, flush=True)

    median = f"{statistics.median(seconds):.1f}" if seconds else "-"
    print(f"\ntorchrun --nproc_per_node={args.nproc}, fit / predict / fit "
          f"(hang = no end within {args.timeout:g} s)\n")
    print("| launches | exit 0 | aborts | hangs | other | median s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {args.launches} | {counts['exit 0']} | {counts['aborts']} | "
          f"{counts['hangs']} | {counts['other']} | {median} |")


if __name__ == "__main__":
    main()
