"""Multi-label imbalance: which loss, weights or sampler helps the rare labels.

The task: 16x16 mosaics of four of scikit-learn's real 8x8 handwritten
digits (a 2x2 grid); label ``c`` is "digit c appears in the mosaic", so an
image has one to four labels. The digit of each of the four cells is drawn
with probability proportional to ``r**c`` (``r`` set so that digit 9 is
``--decay`` times rarer than digit 0): with the default 100 the labels'
prevalences fall from about 87 % (label 0) to 4.4 %, 2.7 % and 1.6 %
(labels 7, 8 and 9, the *rare* labels). The digit images are split in two
halves first (stratified), one for the training mosaics and one for the test
mosaics, so no test mosaic holds a digit image seen in training.

Every method trains the same network (skweight's default ``SmallCNN``,
channels 16 and 32, 64 hidden units) with the same budget: ``--epochs``
epochs (20) of AdamW, lr 1e-3, batch 64, on the same 80 % of
``--n-train`` training mosaics (``train_split=0.2``: the other 20 %, split
iteratively stratified per label, is where ``threshold="auto"`` tunes one
threshold per label for F1). Each fitted model is scored twice on
``--n-test`` test mosaics: with every threshold 0.5 and with the tuned
thresholds (the same network, ``set_params(threshold=0.5)``).

Methods (``CNNClassifier`` settings):

- ``bce``: binary cross-entropy, unweighted;
- ``bce+balanced``: ``class_weight="balanced"``, one weight per (sample,
  label) element: each label's positives and negatives carry half of it;
- ``bce+product``: one weight per *sample*, scikit-learn's
  ``compute_sample_weight("balanced", Y)``, the product over the labels of
  each label's balanced weight (what a multi-output pipeline gets);
- ``focal``: sigmoid focal loss, gamma 2, no alpha;
- ``asl``: the asymmetric loss (gamma_neg 4, gamma_pos 0, clip 0.05);
- ``logit_adjusted``: each label's log-odds shifted by its log prior odds
  in training (tau 1);
- ``ml-ros``: ``MultiLabelRandomOverSampler(percentage=25)``, drawn afresh
  each epoch (25 % more rows per epoch: the same epochs, more steps).

Columns (test set; mean +- std over ``--seeds``): macro mAP (scikit-learn's
``average_precision``, the mean over labels; thresholds do not change it),
macro and micro F1, and the recall, precision and F1 of the rare labels
(means over labels 7, 8, 9). The seed sets the digit split, the mosaics and
the network's initialisation; every method sees the same data for a seed.

Usage::

    python benchmarks/bench_multilabel.py            # 7 methods x 3 seeds: ~18 min, 1 core
    python benchmarks/bench_multilabel.py --quick    # smoke run
    python benchmarks/bench_multilabel.py --methods bce asl --seeds 0 1
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402 (after fixing the thread count)
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from skweight import CNNClassifier  # noqa: E402
from skweight.sampling import MultiLabelRandomOverSampler  # noqa: E402

N_LABELS = 10
RARE = (7, 8, 9)
METHODS = {
    "bce": {},
    "bce+balanced": {"class_weight": "balanced"},
    "bce+product": {},  # sample_weight=compute_sample_weight("balanced", Y) in fit
    "focal": {"criterion": "focal"},
    "asl": {"criterion": "asl"},
    "logit_adjusted": {"criterion": "logit_adjusted"},
    "ml-ros": {"sampler": MultiLabelRandomOverSampler(percentage=25)},
}
COLUMNS = ("macro mAP", "macro F1", "micro F1", "rare recall", "rare prec.", "rare F1")


def digit_probabilities(decay):
    """Probability of each digit in a mosaic cell: ``r**c``, digit 9 ``decay`` x rarer."""
    p = decay ** (-np.arange(N_LABELS) / (N_LABELS - 1))
    return p / p.sum()


def make_mosaics(images, digits, n, p, rng):
    """``n`` 2x2 mosaics of 8x8 digit images and their (n, 10) label indicator."""
    cells = rng.choice(N_LABELS, size=(n, 4), p=p)
    by_digit = [np.flatnonzero(digits == c) for c in range(N_LABELS)]
    X = np.empty((n, 1, 16, 16), dtype=np.float32)
    for k, (r, c) in enumerate(((0, 0), (0, 8), (8, 0), (8, 8))):
        picks = [rng.choice(by_digit[d]) for d in cells[:, k]]
        X[:, 0, r:r + 8, c:c + 8] = images[picks]
    Y = np.zeros((n, N_LABELS), dtype=np.int64)
    np.put_along_axis(Y, cells, 1, axis=1)
    return X, Y


def load_task(seed, n_train, n_test, decay):
    """Training and test mosaics of one seed, from disjoint halves of the digits."""
    images, digits = load_digits(return_X_y=True)
    images = (images / 16).reshape(-1, 8, 8).astype(np.float32)
    Itr, Ite, dtr, dte = train_test_split(images, digits, test_size=0.5,
                                          stratify=digits, random_state=seed)
    rng = np.random.default_rng(seed)
    p = digit_probabilities(decay)
    return (*make_mosaics(Itr, dtr, n_train, p, rng),
            *make_mosaics(Ite, dte, n_test, p, rng))


def scores(Y, proba, pred):
    """The table's columns for one prediction."""
    rare = list(RARE)
    kw = {"zero_division": 0}
    return {
        "macro mAP": average_precision_score(Y, proba, average="macro"),
        "macro F1": f1_score(Y, pred, average="macro", **kw),
        "micro F1": f1_score(Y, pred, average="micro", **kw),
        "rare recall": recall_score(Y[:, rare], pred[:, rare], average="macro", **kw),
        "rare prec.": precision_score(Y[:, rare], pred[:, rare], average="macro", **kw),
        "rare F1": f1_score(Y[:, rare], pred[:, rare], average="macro", **kw),
    }


def run_one(method, seed, data, epochs):
    Xtr, Ytr, Xte, Yte = data
    clf = CNNClassifier(threshold="auto", train_split=0.2, max_epochs=epochs,
                        random_state=seed, **METHODS[method])
    weight = compute_sample_weight("balanced", Ytr) if method == "bce+product" else None
    t = time.perf_counter()
    with warnings.catch_warnings():
        # bce+product: the product weights trigger the effective-sample-size warning
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(Xtr, Ytr, sample_weight=weight)
    fit_s = time.perf_counter() - t
    proba = clf.predict_proba(Xte)
    tuned = scores(Yte, proba, clf.predict(Xte))
    half = scores(Yte, proba, clf.set_params(threshold=0.5).predict(Xte))
    return {"0.5": half, "auto": tuned}, fit_s, clf.threshold_


def effective_sample_size(w):
    return w.sum() ** 2 / (w**2).sum()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=3000)
    parser.add_argument("--decay", type=float, default=100.0,
                        help="how many times rarer digit 9 is than digit 0 per cell")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 2 epochs, 600 mosaics")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_test = [0], 2, 600, 600
    torch.set_num_threads(1)
    start = time.perf_counter()

    results = {(m, t): [] for m in args.methods for t in ("0.5", "auto")}
    fit_times = {m: [] for m in args.methods}
    thresholds = {m: [] for m in args.methods}
    for seed in args.seeds:
        data = load_task(seed, args.n_train, args.n_test, args.decay)
        if seed == args.seeds[0]:
            Ytr, Yte = data[1], data[3]
            print(f"labels 0..9, prevalence in training (%): "
                  f"{np.round(100 * Ytr.mean(0), 1).tolist()}")
            print(f"positives of labels {list(RARE)}: training "
                  f"{Ytr[:, list(RARE)].sum(0).tolist()}, test "
                  f"{Yte[:, list(RARE)].sum(0).tolist()}")
            w = compute_sample_weight("balanced", Ytr)
            print(f"bce+product weights: max/min {w.max() / w.min():.3g}, effective "
                  f"sample size {effective_sample_size(w):.0f} of {len(w)}")
        for method in args.methods:
            by_threshold, fit_s, threshold = run_one(method, seed, data, args.epochs)
            for t, row in by_threshold.items():
                results[method, t].append(row)
            fit_times[method].append(fit_s)
            thresholds[method].append(threshold)
            print(f"  seed {seed} {method:<15} fit {fit_s:5.1f} s  rare recall "
                  f"0.5: {by_threshold['0.5']['rare recall']:.3f}  auto: "
                  f"{by_threshold['auto']['rare recall']:.3f}", flush=True)

    n_seeds = len(args.seeds)
    print(f"\n{n_train_text(args)}, {args.epochs} epochs, seeds {args.seeds} "
          f"(mean +- std over {n_seeds})")
    header = f"{'method':<15}{'threshold':<10}" + "".join(f"{c:>14}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for method in args.methods:
        for t in ("0.5", "auto"):
            rows = results[method, t]
            cells = []
            for c in COLUMNS:
                v = np.array([r[c] for r in rows])
                cells.append(f"{v.mean():.3f}+-{v.std():.3f}")
            print(f"{method:<15}{t:<10}" + "".join(f"{c:>14}" for c in cells))
    print("\nmean tuned threshold of labels 7, 8, 9 and fit time per method:")
    for method in args.methods:
        t = np.mean([th[list(RARE)] for th in thresholds[method]], axis=0)
        print(f"  {method:<15} thresholds {np.round(t, 3).tolist()}  fit "
              f"{np.mean(fit_times[method]):.1f} s")
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")


def n_train_text(args):
    return (f"{args.n_train} training mosaics (80 % trained on, 20 % for the "
            f"thresholds), {args.n_test} test mosaics, decay {args.decay:g}")


if __name__ == "__main__":
    main()
