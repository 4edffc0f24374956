"""Peak memory of ``fit`` and ``predict_proba`` on image arrays, against their size.

Data: ``N`` random RGB images of 128 x 128 pixels (``--sizes``), two
balanced classes, held three ways:

``uint8``
    A uint8 array in memory (``N x 48 KiB``).
``memmap``
    The same array saved with ``np.save`` and opened with
    ``np.load(path, mmap_mode="r")``: a read-only memory map.
``float32``
    The same images divided by 255, as float32 in memory (4x the bytes).

Operations: ``fit`` of a ``CNNClassifier`` with the validation split
``train_split=0.2``, ``--epochs`` epochs (default 1), ``batch_size=64``;
and ``predict_proba`` of all ``N`` images by a classifier fitted on 256 of
them. The network is small on purpose (the memory of interest is the
data's, and the run time is the network's): by default ``--net strided``,
a 4x4 convolution of stride 4 to 8 channels, ReLU, average pooling to
4 x 4 and a linear layer;
``--net smallcnn`` is the default ``SmallCNN`` with
``module__channels=(8,)`` (about 10x slower on the CPU).

Each (version, data, operation) is measured in a fresh process, so that
peaks do not mix. There, after a warm-up (the same operation on 256
images), the operation runs twice on 256 images, then on all ``N``; for
each run two increases over the memory just before it are recorded:

``RSS``
    ``VmHWM`` (reset to the current RSS through ``/proc/self/clear_refs``)
    minus ``VmRSS`` before: everything resident, a memory map's pages that
    were read included.
``anon``
    The largest ``RssAnon`` sampled every 2 ms by a thread, minus
    ``RssAnon`` before: the process's own memory, copies of the data
    included, a memory map's file pages not (they are the page cache's,
    shared, and dropped under memory pressure).

The smaller increase of the runs on 256 images is the fixed cost: the
model, its optimiser, a few batches and their activations, beyond what the
warm-up left free. The tables give ``x input``:
``(increase(N) - increase(256) - output bytes) / bytes of X``: the memory
that grows with the data, per byte of data. The targets of the issue
"Real-size data": ``fit`` at most 1.5, ``predict_proba`` at most 1.2; a
memory map the same, its pages read counted in ``RSS`` but not in ``anon``
(they are not copies), so for it the target applies to ``anon``. The
``fit`` rows of the current tree vary from run to run (0 to 1.2 for uint8
in memory): that is the glibc heap, see below.

``--before PATH`` measures a second checkout too (e.g. 0.2, the commit
before "Engine room", through a git worktree) and prints both side by
side. The ``glibc`` table measures the current tree again (uint8 in
memory) with ``MALLOC_MMAP_THRESHOLD_=131072`` and with
``MALLOC_TRIM_THRESHOLD_=131072`` in the child's environment. Either one
turns off glibc's dynamic mmap threshold, which otherwise rises to the size
of the largest block freed (up to 32 MiB): batch-sized blocks then come from
the heap, where small blocks allocated between them can keep freed memory
from being returned (fragmentation).

Usage::

    git worktree add /tmp/skweight-0.2 724c186
    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --before /tmp/skweight-0.2
    git worktree remove /tmp/skweight-0.2

    python benchmarks/bench_memory.py                      # this tree, N=2000
    python benchmarks/bench_memory.py --sizes 2000 4000    # N=4000 if memory allows
    python benchmarks/bench_memory.py --no-glibc --net smallcnn
"""

import argparse
import gc
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("uint8", "memmap", "float32")
OPERATIONS = ("fit", "predict")
TARGETS = {"fit": 1.5, "predict": 1.2}
SMALL = 256  # images of the warm-up and of the fixed-cost run
SHAPE = (3, 128, 128)
MALLOC_VARIANTS = {
    "default": {},
    "MMAP_THRESHOLD_=128K": {"MALLOC_MMAP_THRESHOLD_": "131072"},
    "TRIM_THRESHOLD_=128K": {"MALLOC_TRIM_THRESHOLD_": "131072"},
}
MIB = 2**20


# -- the child: one measurement in a fresh process ----------------------------


def _status_kib():
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon"):
                fields[name] = int(rest.split()[0])
    return fields


def measure(call):
    """Run ``call()``; return its result and its peak increases in bytes (RSS, anon)."""
    gc.collect()
    before = _status_kib()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # VmHWM := VmRSS
        hwm = True
    except OSError:
        hwm = False
    peak = dict(before)
    done = threading.Event()

    def sample():
        while not done.wait(0.002):
            now = _status_kib()
            peak["VmRSS"] = max(peak["VmRSS"], now["VmRSS"])
            peak["RssAnon"] = max(peak["RssAnon"], now["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    after = _status_kib()
    top = after["VmHWM"] if hwm else max(peak["VmRSS"], after["VmRSS"])
    anon = max(peak["RssAnon"], after["RssAnon"])
    return result, {"rss": (top - before["VmRSS"]) * 1024,
                    "anon": (anon - before["RssAnon"]) * 1024, "seconds": seconds}


def make_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def child(args):
    """Runs in a fresh process: print the JSON of one (tree, data, operation)."""
    sys.path.insert(0, str(args.tree))
    import torch
    from torch import nn

    torch.set_num_threads(1)
    import skweight
    from skweight import CNNClassifier

    if args.source == "memmap":
        X = np.load(args.memmap, mmap_mode="r")
    else:
        X = make_images(args.n)
        if args.source == "float32":
            X = X.astype(np.float32)
            X /= np.float32(255)
    y = np.arange(args.n) % 2
    if args.net == "strided":
        net = {"module": nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                       nn.Linear(128, 2))}
    else:
        net = {"module__channels": (8,)}
    clf = CNNClassifier(**net, max_epochs=args.epochs, batch_size=64, train_split=0.2,
                        random_state=0)
    if args.op == "fit":
        def run(n):
            clf.fit(X[:n], y[:n])
            return 0
    else:
        clf.fit(X[:SMALL], y[:SMALL])

        def run(n):
            return clf.predict_proba(X[:n]).nbytes
    run(SMALL)  # warm-up: kernels, thread pools, allocator caches
    # The fixed cost is the smaller of two runs: what a run on 256 images
    # needs beyond what the warm-up left free (a larger one would hide growth).
    twice = [measure(lambda: run(SMALL))[1] for _ in range(2)]
    fixed = {key: min(m[key] for m in twice) for key in twice[0]}
    output, full = measure(lambda: run(args.n))
    print(json.dumps({"skweight": skweight.__file__, "input": int(X.nbytes),
                      "output": int(output), "fixed": fixed, "full": full}))


# -- the parent: the runs and the tables ---------------------------------------


def run_child(tree, source, op, n, memmap, args, extra_env=None):
    return run_script_child(__file__, tree, [
        "--source", source, "--op", op, "--n", str(n), "--memmap", str(memmap),
        "--net", args.net, "--epochs", str(args.epochs)], extra_env)


def run_script_child(script, tree, flags, extra_env=None):
    """Run ``script --child --tree TREE *flags`` in a fresh process; return its JSON.

    The child must import skweight from ``tree`` (checked) and print one JSON
    object as its last line.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    cmd = [sys.executable, os.path.abspath(script), "--child", "--tree", str(tree),
           *flags]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    expected = pathlib.Path(tree).resolve() / "skweight" / "__init__.py"
    if pathlib.Path(found["skweight"]).resolve() != expected:
        raise RuntimeError(f"measured {found['skweight']}, not {expected}")
    return found


def per_input(found, measure_name):
    """``(increase(N) - increase(256) - output) / bytes of X``."""
    grown = found["full"][measure_name] - found["fixed"][measure_name] - found["output"]
    return grown / found["input"]


def available_bytes():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def print_details(results):
    print(f"\n{'version':<8}{'N':>6} {'data':<8}{'op':<8}{'input':>7}{'fixed':>7}"
          f"{'':>6}{'peak':>7}{'':>6}{'output':>7}{'x input':>9}{'':>6}{'seconds':>8}")
    print(f"{'':<8}{'':>6} {'':<8}{'':<8}{'MiB':>7}{'RSS':>7}{'anon':>6}{'RSS':>7}"
          f"{'anon':>6}{'MiB':>7}{'RSS':>9}{'anon':>6}{'':>8}")
    for (version, n, source, op), r in results.items():
        f, p = r["fixed"], r["full"]
        print(f"{version:<8}{n:>6} {source:<8}{op:<8}{r['input'] / MIB:>7.0f}"
              f"{f['rss'] / MIB:>7.0f}{f['anon'] / MIB:>6.0f}{p['rss'] / MIB:>7.0f}"
              f"{p['anon'] / MIB:>6.0f}{r['output'] / MIB:>7.2f}"
              f"{per_input(r, 'rss'):>9.2f}{per_input(r, 'anon'):>6.2f}"
              f"{p['seconds']:>8.1f}")


def verdict(r, source, op):
    """Whether the increase that grows with the data meets the issue's target."""
    measure_name = "anon" if source == "memmap" else "rss"
    return "yes" if per_input(r, measure_name) <= TARGETS[op] else "no"


def print_summary(results, versions, sizes):
    print("\nx input = (peak increase(N) - increase(256 images) - output) / bytes of X;"
          " target on anon for the memmap, on RSS otherwise")
    head = f"{'N':>6} {'data':<8}{'op':<8}"
    for version in versions:
        head += f"{version + ' RSS':>12}{'anon':>6}"
    head += f"{'target':>8}{'met':>5}"
    print(head)
    print("-" * len(head))
    for n in sizes:
        for source in SOURCES:
            for op in OPERATIONS:
                if (versions[-1], n, source, op) not in results:
                    continue
                line = f"{n:>6} {source:<8}{op:<8}"
                for version in versions:
                    r = results[(version, n, source, op)]
                    line += f"{per_input(r, 'rss'):>12.2f}{per_input(r, 'anon'):>6.2f}"
                r = results[(versions[-1], n, source, op)]
                line += f"{'<= ' + str(TARGETS[op]):>8}{verdict(r, source, op):>5}"
                print(line)


def print_glibc(rows):
    print("\nglibc: the current tree, x input (RSS / anon), the fixed cost (RSS MiB) "
          "and the seconds of the call on N images, per environment")
    variants = list(MALLOC_VARIANTS)
    head = f"{'N':>6} {'data':<8}{'op':<8}" + "".join(f"{v:>30}" for v in variants)
    print(head)
    print("-" * len(head))
    for key in sorted({k[1:] for k in rows}, key=lambda k: (k[0], SOURCES.index(k[1]),
                                                           OPERATIONS.index(k[2]))):
        n, source, op = key
        line = f"{n:>6} {source:<8}{op:<8}"
        for v in variants:
            r = rows[(v, *key)]
            cell = (f"{per_input(r, 'rss'):.2f} / {per_input(r, 'anon'):.2f}"
                    f"  ({r['fixed']['rss'] / MIB:.0f}, {r['full']['seconds']:.1f} s)")
            line += f"{cell:>30}"
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000],
                        help="numbers of images; a size is skipped when the 0.2 "
                             "path's float32 copies would not fit in MemAvailable")
    parser.add_argument("--before", type=pathlib.Path,
                        help="a checkout of an older version to measure too")
    parser.add_argument("--net", choices=("strided", "smallcnn"), default="strided")
    parser.add_argument("--epochs", type=int, default=1, help="max_epochs of every fit")
    parser.add_argument("--no-glibc", action="store_true",
                        help="skip the glibc table (the current tree, N=first size)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=pathlib.Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=SOURCES, help=argparse.SUPPRESS)
    parser.add_argument("--op", choices=OPERATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memmap", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    trees = {"after": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    versions = list(trees)
    started = time.perf_counter()
    results, glibc, sizes = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            # 0.2 held X as float32 (4x) and copied the split again: ~13x a uint8
            # X for the float32 rows, with room to spare.
            need = 16 * n * int(np.prod(SHAPE))
            if need > available_bytes():
                print(f"N={n} skipped: it needs about {need / 2**30:.1f} GiB, "
                      f"{available_bytes() / 2**30:.1f} GiB available")
                continue
            sizes.append(n)
            memmap = pathlib.Path(tmp) / f"X{n}.npy"
            np.save(memmap, make_images(n))
            for source in SOURCES:
                for op in OPERATIONS:
                    for version, tree in trees.items():
                        results[(version, n, source, op)] = run_child(
                            tree, source, op, n, memmap, args)
                        print(".", end="", flush=True)
            if not args.no_glibc and n == sizes[0]:
                for variant, env in MALLOC_VARIANTS.items():
                    for source in ("uint8",):
                        for op in OPERATIONS:
                            if not env:
                                found = results[("after", n, source, op)]
                            else:
                                found = run_child(ROOT, source, op, n, memmap, args,
                                                  env)
                                print(".", end="", flush=True)
                            glibc[(variant, n, source, op)] = found
    print(f"\nRGB 128x128 images, two classes; CNNClassifier(net={args.net}, "
          f"max_epochs={args.epochs}, batch_size=64, train_split=0.2); OMP_NUM_THREADS=1")
    for version, tree in trees.items():
        print(f"  {version}: {tree}")
    print_details(results)
    print_summary(results, versions, sizes)
    if glibc:
        print_glibc(glibc)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return None


if __name__ == "__main__":
    main()
