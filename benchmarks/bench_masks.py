"""Peak memory of a segmenter's ``fit`` against the size of its images and masks.

Data: ``N`` random one-channel ``uint8`` images of 128 x 128 pixels
(``--sizes``) and their masks, two ways:

``labels``
    Label masks ``(N, 128, 128)`` of ``uint8``, three classes.
``balanced``
    The same with ``class_weight="balanced"``: one weight per pixel.
``overlap``
    Overlapping 0/1 masks ``(N, 2, 128, 128)`` of ``int8`` (multi-label).

``CNNSegmenter(module__channels=(4, 8), max_epochs=1, batch_size=32,
train_split=0.2)``: a small U-Net, so that the memory that grows with the
data stands out from the activations of a batch. Each (version, masks) is
measured in a fresh process (``measure`` of ``bench_memory.py``: ``VmHWM``
reset through ``/proc/self/clear_refs``), after a warm-up fit on 64
images. The table gives ``x input``: ``(increase(N) - increase(256)) /
(bytes of X + bytes of y)``, the memory that grows with the data per byte
of data; the fixed part (256 images) in MiB beside it.

Usage::

    git worktree add /tmp/skweight-before d205baf
    OMP_NUM_THREADS=1 python benchmarks/bench_masks.py --before /tmp/skweight-before
    git worktree remove /tmp/skweight-before

    python benchmarks/bench_masks.py --sizes 1000 2000     # this tree only
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_memory import MIB, measure, run_script_child  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MASKS = ("labels", "balanced", "overlap")
SMALL = 256


def make_data(n, masks, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, 1, 128, 128), dtype=np.uint8)
    if masks in ("labels", "balanced"):
        y = rng.integers(0, 3, (n, 128, 128)).astype(np.uint8)
    else:
        y = (rng.random((n, 2, 128, 128)) < 0.2).astype(np.int8)
    return X, y


def child(args):
    """Runs in a fresh process: print the JSON of one (tree, masks)."""
    sys.path.insert(0, str(args.tree))
    import torch

    torch.set_num_threads(1)
    import skweight
    from skweight import CNNSegmenter

    X, y = make_data(args.n, args.masks)
    seg = CNNSegmenter(module__channels=(4, 8), max_epochs=1, batch_size=32,
                       train_split=0.2, random_state=0,
                       class_weight="balanced" if args.masks == "balanced" else None)

    def run(n):
        seg.fit(X[:n], y[:n])

    run(64)  # warm-up: imports, kernels, allocator caches
    twice = [measure(lambda: run(SMALL))[1] for _ in range(2)]
    fixed = {key: min(m[key] for m in twice) for key in twice[0]}
    full = measure(lambda: run(args.n))[1]
    print(json.dumps({"skweight": skweight.__file__, "input": int(X.nbytes + y.nbytes),
                      "fixed": fixed, "full": full}))


def run_child(tree, masks, n):
    return run_script_child(__file__, tree, ["--masks", masks, "--n", str(n)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--before", type=pathlib.Path,
                        help="a checkout of an older version to measure too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=pathlib.Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--masks", choices=MASKS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    trees = {"after": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    started = time.perf_counter()
    rows = []
    for n in args.sizes:
        for masks in MASKS:
            cells = []
            for tree in trees.values():
                r = run_child(tree, masks, n)
                grown = r["full"]["rss"] - r["fixed"]["rss"]
                cells.append((grown / r["input"], r["fixed"]["rss"] / MIB,
                              r["full"]["rss"] / MIB, r["input"] / MIB))
                print(".", end="", flush=True)
            rows.append((n, masks, cells))
    print("\nCNNSegmenter(module__channels=(4, 8), max_epochs=1, batch_size=32, "
          "train_split=0.2), uint8 images 1x128x128; OMP_NUM_THREADS=1")
    for version, tree in trees.items():
        print(f"  {version}: {tree}")
    head = f"{'N':>6} {'masks':<9}{'X+y MiB':>9}"
    for version in trees:
        head += f"{version + ' x input':>17}{'peak MiB':>10}{'fixed MiB':>11}"
    print(head)
    print("-" * len(head))
    for n, masks, cells in rows:
        line = f"{n:>6} {masks:<9}{cells[0][3]:>9.1f}"
        for per_byte, fixed, peak, _ in cells:
            line += f"{per_byte:>17.2f}{peak:>10.0f}{fixed:>11.0f}"
        print(line)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return None


if __name__ == "__main__":
    main()
