"""Tiled prediction of the segmenter: accuracy, seams and memory, in two tables.

``dice``
    A ``CNNSegmenter`` (default U-Net, cross-entropy, ``--epochs`` epochs,
    seed 0) is trained on the half-overlapping 64x64 tiles of the left half
    of the real nuclei image (``load_nuclei_tiles(64, stride=32)``) and
    predicts the held-out right half (512 x 256 pixels) whole and with
    ``tile_shape=64``, for both blends and overlaps 0, 0.25 and 0.5.
    Columns: the foreground Dice against the true mask; the largest
    difference from the whole-image foreground probability; and the seam
    error, defined as follows. Let ``e = p_tiled - p_whole`` be the error of
    the tiled foreground probability. A *tile border* is a pair of
    neighbouring pixels ``(x - 1, x)`` along an axis where some tile starts
    (``x = s > 0``) or ends (``x = s + T < I``). The seam error is the
    largest jump ``|e(x) - e(x - 1)|`` over all tile borders (both axes,
    every position on the other axis): how much more the tiled map jumps
    there than the whole-image map does, which discounts the real edges of
    the nuclei. ``interior`` is the same largest jump over all the other
    pairs of neighbours, for scale; ``p99`` are the 99th percentiles of
    both, and ``mean ratio`` the mean jump across tile borders over the
    mean jump elsewhere: about 1 where borders do not show, well above 1
    for a seam. The largest jumps sit on the nuclei's edges, where a tiled
    and the whole-image map place an edge a pixel apart, inside tiles as on
    their borders; the mean ratio is the robust measure of seams.
``memory``
    An image of ``S x S`` one-channel uint8 pixels (the nuclei image tiled)
    is predicted by the default U-Net (2 classes, untrained: weights do not
    change the memory) with ``predict_proba``, ``tile_shape=--tile``, in a
    fresh process per row after a warm-up. Columns: the output's size
    (``2 x S x S`` float32), the peak resident memory over the memory just
    before the call (``VmHWM`` reset through ``/proc/self/clear_refs``), and
    that peak less the output. Whole-image rows (no tiling) are given for
    scale. Tiled, the peak less the output stays near a constant (the
    band of blended sums, one tile thick, and one batch of tiles'
    activations), whatever the image size; whole, it grows with the image.

Usage::

    python benchmarks/bench_tiling.py            # both tables, about 3 minutes on 2 cores
    python benchmarks/bench_tiling.py --quick    # smoke run
    python benchmarks/bench_tiling.py --device cuda
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import _rss_kib  # noqa: E402  (the one /proc/self/status reader)

from skweight import CNNSegmenter
from skweight._fit.tiling import tile_starts
from skweight.datasets import load_nuclei, load_nuclei_tiles
from skweight.metrics import dice_score

TILE = 64
OVERLAPS = (0.0, 0.25, 0.5)
BLENDS = ("constant", "gaussian")


# -- dice and seams ------------------------------------------------------------


def border_mask(size, tile, overlap):
    """``mask[x]``: whether ``(x - 1, x)`` straddles a tile border along an axis."""
    mask = np.zeros(size, dtype=bool)
    if size <= tile:
        return mask
    for s in tile_starts(size, tile, overlap):
        for edge in (s, s + tile):
            if 0 < edge < size:
                mask[edge] = True
    return mask


def jumps(error, tile, overlap):
    """Jumps ``|e(x) - e(x - 1)|`` of a 2-D map across tile borders and elsewhere.

    Returns the largest jump across tile borders (the seam error), the
    largest elsewhere, the 99th percentiles of both, and the ratio of the
    mean jump across borders to the mean jump elsewhere.
    """
    border, inside = [], []
    for axis in (0, 1):
        diff = np.abs(np.diff(error, axis=axis))  # diff[x - 1] = e[x] - e[x - 1]
        on_border = border_mask(error.shape[axis], tile, overlap)[1:]
        along = diff if axis == 0 else diff.T
        border.append(along[on_border].ravel())
        inside.append(along[~on_border].ravel())
    border, inside = np.concatenate(border), np.concatenate(inside)
    return (float(border.max()), float(inside.max()), float(np.percentile(border, 99)),
            float(np.percentile(inside, 99)), float(border.mean() / inside.mean()))


def bench_dice(args):
    X_train, y_train, _, _ = load_nuclei_tiles(TILE, stride=TILE // 2)
    data = load_nuclei()
    half = data.image.shape[1] // 2
    image = data.image[None, None, :, half:]
    mask = data.mask[None, :, half:].astype(np.int64)
    t0 = time.perf_counter()
    seg = CNNSegmenter(criterion="cross_entropy", max_epochs=args.epochs, random_state=0,
                       device=args.device).fit(X_train, y_train)
    fit_s = time.perf_counter() - t0

    def run(**params):
        seg.set_params(**params)
        t = time.perf_counter()
        proba = seg.predict_proba(image)
        seconds = time.perf_counter() - t
        pred = seg.classes_[proba.argmax(axis=1)]
        return proba[0, 1], float(dice_score(mask, pred, labels=[1])), seconds

    p_whole, dice_whole, s_whole = run(tile_shape=None)
    rows = [("whole image", "-", dice_whole, 0.0, None, s_whole)]
    for overlap in OVERLAPS:
        for blend in BLENDS:
            p, dice, seconds = run(tile_shape=TILE, tile_overlap=overlap, tile_blend=blend)
            error = p - p_whole
            rows.append((blend, overlap, dice, float(np.abs(error).max()),
                         jumps(error, TILE, overlap), seconds))
    print(f"nuclei: trained {args.epochs} epochs on {len(X_train)} tiles of "
          f"{TILE}x{TILE} ({fit_s:.0f} s); test: the right half, {image.shape[2]} x "
          f"{image.shape[3]} pixels; tile_shape={TILE}")
    print(f"{'blend':<12}{'overlap':>8}{'Dice':>7}{'max|p-whole|':>13}{'seam':>7}"
          f"{'interior':>9}{'seam p99':>9}{'int. p99':>9}{'mean ratio':>11}"
          f"{'seconds':>8}")
    for blend, overlap, dice, diff, found, seconds in rows:
        cells = ["-"] * 5 if found is None else [f"{v:.3f}" for v in found[:4]] + [
            f"{found[4]:.2f}"]
        print(f"{blend:<12}{overlap!s:>8}{dice:>7.3f}{diff:>13.3f}{cells[0]:>7}"
              f"{cells[1]:>9}{cells[2]:>9}{cells[3]:>9}{cells[4]:>11}{seconds:>8.2f}")


# -- memory -------------------------------------------------------------------


def memory_child(args):
    """Runs in a fresh process: the peak extra memory of one ``predict_proba``."""
    torch.set_num_threads(1)
    size, tiled = args.memory_child, not args.whole
    nuclei = np.round(load_nuclei().image * 255).astype(np.uint8)
    reps = -(-size // nuclei.shape[0])
    image = np.ascontiguousarray(np.tile(nuclei, (reps, reps))[:size, :size])[None, None]
    X_fit = image[:, :, :64, :64].repeat(2, axis=0)
    y_fit = (X_fit[:, 0] > 60).astype(np.int64)
    seg = CNNSegmenter(max_epochs=0, random_state=0, device=args.device).fit(X_fit, y_fit)
    seg.set_params(tile_overlap=args.overlap)
    # Warm-up on a small image and small tiles: oneDNN's kernels, thread
    # pools and allocator caches are not the image's memory, while a
    # warm-up at full size would leave the activations' memory to reuse.
    seg.set_params(tile_shape=32).predict_proba(image[:, :, :96, :96])
    seg.set_params(tile_shape=args.tile if tiled else None)
    gc.collect()
    if seg.device_.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _rss_kib("VmRSS")
    anon_before = _rss_kib("RssAnon")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    peak_anon, done = [anon_before], threading.Event()

    def sample():
        while not done.wait(0.002):
            peak_anon[0] = max(peak_anon[0], _rss_kib("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    out = seg.predict_proba(image)
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    peak = _rss_kib("VmHWM")
    gpu_mb = (torch.cuda.max_memory_allocated() / 2**20
              if seg.device_.type == "cuda" else None)
    print(json.dumps({
        "size": size, "tiled": tiled, "output_mb": out.nbytes / 2**20,
        "input_mb": image.nbytes / 2**20, "extra_mb": (peak - before) / 1024,
        "anon_mb": (peak_anon[0] - anon_before) / 1024, "seconds": seconds,
        "gpu_mb": gpu_mb,
    }))


def bench_memory(args):
    runs = [(size, False) for size in args.whole_sizes] + [(s, True) for s in args.sizes]
    rows = []
    for size, tiled in runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(size),
               "--tile", str(args.tile), "--overlap", str(args.overlap),
               "--device", args.device]
        if not tiled:
            cmd.append("--whole")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nmemory: predict_proba of one S x S uint8 image, default U-Net, 2 classes, "
          f"batch_size 16, tile_shape={args.tile}, tile_overlap={args.overlap}; "
          f"peak RSS over RSS before the call (MiB)")
    gpu = any(r["gpu_mb"] is not None for r in rows)
    print(f"{'S':>6}{'how':>7}{'input':>8}{'output':>8}{'peak':>8}{'peak-out':>10}"
          f"{'RssAnon':>9}{'seconds':>9}" + (f"{'GPU peak':>10}" if gpu else ""))
    for r in rows:
        line = (f"{r['size']:>6}{'tiled' if r['tiled'] else 'whole':>7}"
                f"{r['input_mb']:>8.0f}{r['output_mb']:>8.0f}{r['extra_mb']:>8.0f}"
                f"{r['extra_mb'] - r['output_mb']:>10.0f}{r['anon_mb']:>9.0f}"
                f"{r['seconds']:>9.1f}")
        if gpu:
            line += f"{r['gpu_mb']:>10.0f}"
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25,
                        help="tile_overlap of the memory table: it sets the number "
                             "of tiles, hence the time; the terms of the memory bound "
                             "(output, band, one batch) do not depend on it")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--whole-sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--no-dice", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args)
    torch.set_num_threads(1)
    if args.quick:
        args.epochs, args.sizes, args.whole_sizes = 1, [512, 1024], [512]
    if not args.no_dice:
        bench_dice(args)
    if not args.no_memory:
        bench_memory(args)
    return None


if __name__ == "__main__":
    main()
