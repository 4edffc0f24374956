"""Long tails: imbalanced regression and long-tailed classification, tables.

Sections:

``regression``
    Two imbalanced regression problems, each trained with the squared error
    (MSE), with :func:`skweight.weighting.density_weights` (``alpha`` 0.5
    and 1) and with Balanced MSE (``criterion="balanced_mse"``): BNI at the
    library's defaults (``noise_sigma=1.0``, learned at the network's
    ``lr``), and BNI, GAI and BMC with ``sigma`` fixed at about half the
    residual std of an MSE fit (nuclei 0.3, lognormal 0.1; ``--noise-sigma``,
    ``--learn-sigma``, ``--sigma-lr`` change it). Columns: mean absolute
    error over all test targets, on the rare ones and on the others (mean
    +- std over the seeds), the mean signed error on the rare ones, the MAE
    (all, rare) of the predictions clipped to the range of the training
    targets, the final ``sigma`` (in standard deviations of the training
    targets) and the seconds per fit.

    ``nuclei`` (real data, :func:`skweight.datasets.load_nuclei`): the number
    of nuclei whose centre lies in a 64 x 64 tile; training tiles from the
    left half of the image (stride 16, 377 tiles), test tiles from the right
    half (stride 32, 105 tiles), 30 epochs, as in
    ``examples/plot_imbalanced_regression.py``. Rare: the test tiles whose
    count lies where the training counts' density (a Gaussian kernel
    density, Scott's rule) is lowest, whole counts taken from the sparsest
    up as long as they hold at most 25 % of the test tiles: counts 0, 4, 5
    and 6, 21 of 105 tiles (count 3 would bring it to 32 %).

    ``lognormal`` (generated): one disk of area proportional to ``y`` on a
    24 x 24 image (radius ``2 sqrt(y)`` pixels, a random position,
    brightness uniform in [0.5, 1], Gaussian pixel noise of std 0.1), with
    ``y`` log-normal (``mu=0``, ``sigma=0.8``; median 1, 99th percentile
    6.4); 1000 training and 1000 test images (fixed data; the seed is the
    model's), 20 epochs. Rare: the top quartile of the test targets.

``sweep``
    Balanced MSE (BNI) on both problems at several settings of the noise
    scale: its initial value ``noise_sigma`` (in standard deviations of the
    training targets), whether it is learned and at which rate
    (``sigma_lr``; ``lr`` is the network's, 3e-3), or fixed.

``classification``
    The imbalanced digits of ``make demo`` (:func:`skweight.demo.load_data`:
    classes 5-9 cut to 6 training images each, a balanced test set), 80
    epochs: balanced accuracy of cross-entropy and logit adjustment
    (``criterion="logit_adjusted"``) at each ``weight_decay``, with the
    post-hoc correction ``class_prior`` uniform and ``prior_tau`` 0, 0.5,
    0.65, 1 and 1.5 applied to the same fitted model (``set_params``, no
    refit; the script checks that the probabilities are the as-trained
    ones times ``(uniform / effective_prior_) ** prior_tau``).

Every fit is single-threaded (``torch.set_num_threads(1)``). With
``--cache FILE`` each fit's result is appended to a JSON-lines file and
reused by a later run with the same settings, so a long run can be
interrupted and resumed, and the sections share their fits.

Usage::

    python benchmarks/bench_long_tail.py regression        # ~20 min on one core
    python benchmarks/bench_long_tail.py sweep             # ~25 min
    python benchmarks/bench_long_tail.py classification    # ~1 min
    python benchmarks/bench_long_tail.py regression --problems lognormal --seeds 0
    python benchmarks/bench_long_tail.py --help
"""

import argparse
import json
import os
import time
import warnings
from functools import partial

import numpy as np
import torch
from scipy.stats import gaussian_kde
from sklearn.metrics import balanced_accuracy_score

from skweight import CNNClassifier, CNNRegressor
from skweight.datasets import load_nuclei
from skweight.demo import load_data
from skweight.weighting import density_weights

RARE_FRACTION = 0.25


# -- data --------------------------------------------------------------------


def nuclei_counts():
    """Nuclei counted per 64 x 64 tile: left half trains, right half tests."""
    nuclei = load_nuclei()
    labels = nuclei.instances.ravel()
    rows, cols = np.indices(nuclei.instances.shape)
    size = np.bincount(labels)[1:]
    centres = np.stack([np.bincount(labels, weights=rows.ravel())[1:],
                        np.bincount(labels, weights=cols.ravel())[1:]], axis=1)
    centres /= size[:, None]

    def tiles(first_col, last_col, step, tile=64):
        images, counts = [], []
        for r in range(0, 512 - tile + 1, step):
            for c in range(first_col, last_col - tile + 1, step):
                images.append(nuclei.image[r:r + tile, c:c + tile])
                inside = ((centres[:, 0] >= r) & (centres[:, 0] < r + tile)
                          & (centres[:, 1] >= c) & (centres[:, 1] < c + tile))
                counts.append(inside.sum())
        return np.array(images, np.float32)[:, None], np.array(counts, float)

    X_train, y_train = tiles(0, 256, step=16)
    X_test, y_test = tiles(256, 512, step=32)
    return X_train, y_train, X_test, y_test, sparsest(y_train, y_test)


def lognormal_disks(n_samples, seed, size=24, sigma=0.8, r0=2.0, noise=0.1):
    """One disk per image, of area ``pi r0**2 y`` with ``y`` log-normal."""
    rng = np.random.default_rng(seed)
    y = rng.lognormal(0.0, sigma, n_samples)
    radius = np.minimum(r0 * np.sqrt(y), size / 2 - 2)
    y = (radius / r0) ** 2          # the (never reached) clip stays consistent
    cy = rng.uniform(radius + 1, size - 1 - radius)
    cx = rng.uniform(radius + 1, size - 1 - radius)
    yy, xx = np.mgrid[:size, :size] + 0.5
    dist = np.hypot(yy - cy[:, None, None], xx - cx[:, None, None])
    disk = np.clip(radius[:, None, None] - dist + 0.5, 0.0, 1.0)  # anti-aliased edge
    brightness = rng.uniform(0.5, 1.0, n_samples)[:, None, None]
    X = brightness * disk + rng.normal(0.0, noise, disk.shape)
    return X[:, None].astype(np.float32), y


def lognormal_problem():
    X_train, y_train = lognormal_disks(1000, seed=0)
    X_test, y_test = lognormal_disks(1000, seed=1)
    rare = y_test > np.quantile(y_test, 1 - RARE_FRACTION)
    return X_train, y_train, X_test, y_test, rare


def sparsest(y_train, y_test, fraction=RARE_FRACTION):
    """Test targets where the training density is lowest, ties kept together.

    The largest set of test targets of lowest density (a Gaussian KDE of the
    training targets, Scott's rule) that holds at most ``fraction`` of them;
    equal targets have equal density, so they are in or out together.
    """
    density = gaussian_kde(y_train)(y_test)
    order = np.sort(density)
    cut = order[int(np.floor(fraction * len(y_test)))]
    return density < cut


# loader, epochs, Balanced MSE's fixed noise scale (in standard deviations of
# the training targets: about half the residual std of an MSE fit, see the
# sweep section)
PROBLEMS = {
    "nuclei": (nuclei_counts, 30, 0.3),
    "lognormal": (lognormal_problem, 20, 0.1),
}


# -- regression --------------------------------------------------------------


def bmse(prior, noise_sigma, sigma_lr=None, learn_sigma=True):
    return {"criterion": "balanced_mse", "criterion__prior": prior,
            "criterion__noise_sigma": noise_sigma, "criterion__sigma_lr": sigma_lr,
            "criterion__learn_sigma": learn_sigma}


def regression_methods(args, problem):
    """(name, estimator parameters, density alpha) of the regression table."""
    sigma = args.noise_sigma or PROBLEMS[problem][2]
    setting = dict(noise_sigma=sigma, sigma_lr=args.sigma_lr,
                   learn_sigma=args.learn_sigma)
    how = f"sigma {'from ' if args.learn_sigma else ''}{sigma:g}"
    return [
        ("MSE", {}, None),
        ("density alpha=0.5", {}, 0.5),
        ("density alpha=1", {}, 1.0),
        ("BMSE BNI, defaults", bmse("bni", 1.0), None),
        (f"BMSE BNI, {how}", bmse("bni", **setting), None),
        (f"BMSE GAI, {how}", bmse("gai", **setting), None),
        (f"BMSE BMC, {how}", bmse("bmc", **setting), None),
    ]


def sweep_methods(args, problem):
    rows = []
    for sigma, lr, learn in [(1.0, None, True), (1.0, 1e-2, True), (0.3, None, True),
                             (0.3, 1e-2, True), (0.1, None, True), (0.1, 1e-2, True),
                             (1.0, None, False), (0.5, None, False), (0.3, None, False),
                             (0.1, None, False), (0.03, None, False)]:
        how = (f"learned, sigma_lr={lr if lr else 'lr'}" if learn else "fixed")
        rows.append((f"BNI sigma0={sigma:g}, {how}", bmse("bni", sigma, lr, learn), None))
    return rows


class Cache:
    """Results of finished fits, one JSON object per line, keyed by their settings."""

    def __init__(self, path):
        self.path, self.found = path, {}
        if path and os.path.exists(path):
            with open(path) as fh:
                for line in fh:
                    entry = json.loads(line)
                    self.found[entry["key"]] = entry["result"]

    def get(self, key, compute):
        key = json.dumps(key, sort_keys=True)
        if key not in self.found:
            self.found[key] = compute()
            if self.path:
                with open(self.path, "a") as fh:
                    fh.write(json.dumps({"key": key, "result": self.found[key]}) + "\n")
        return self.found[key]


def fit_regressor(data, epochs, params, alpha, seed):
    X_train, y_train, X_test, y_test, rare = data
    weight = None if alpha is None else density_weights(y_train, alpha=alpha)
    reg = CNNRegressor(max_epochs=epochs, random_state=seed, **params)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.fit(X_train, y_train, sample_weight=weight)
    seconds = time.perf_counter() - start
    pred = reg.predict(X_test)
    err = np.abs(pred - y_test)
    # predictions clipped to the range of the training targets
    clipped = np.abs(np.clip(pred, y_train.min(), y_train.max()) - y_test)
    return {
        "all": float(err.mean()), "rare": float(err[rare].mean()),
        "common": float(err[~rare].mean()),
        "bias_rare": float((pred - y_test)[rare].mean()),
        "clipped_all": float(clipped.mean()), "clipped_rare": float(clipped[rare].mean()),
        "sigma": getattr(reg.criterion_, "sigma", None),
        "seconds": seconds,
        "warnings": sorted({type(w.message).__name__ for w in caught}),
        "pred": np.round(pred, 4).tolist(),
    }


def regression_table(methods, args, cache, title):
    for problem in args.problems:
        load, epochs, _ = PROBLEMS[problem]
        epochs = args.epochs or epochs
        data = load()
        rare = data[4]
        print(f"\n{title}: {problem}, {len(data[1])} training / {len(data[3])} test "
              f"targets, {epochs} epochs, seeds {args.seeds}; rare: {rare.sum()} test "
              f"targets ({rare.mean():.0%})")
        header = (f"{'method':<38} {'MAE all':>14} {'MAE rare':>14} {'MAE common':>14} "
                  f"{'bias rare':>10} {'clipped: all':>12} {'rare':>6} {'sigma':>6} "
                  f"{'s/fit':>6}")
        print(header)
        print("-" * len(header))
        for name, params, alpha in methods(args, problem):
            results = []
            for seed in args.seeds:
                key = ["regression", problem, epochs, params, alpha, seed]
                results.append(cache.get(key, partial(fit_regressor, data, epochs,
                                                      params, alpha, seed)))
            cells = []
            for column in ("all", "rare", "common"):
                values = [r[column] for r in results]
                cells.append(f"{np.mean(values):>7.3f}+-{np.std(values):.3f}")
            sigmas = [r["sigma"] for r in results if r["sigma"] is not None]
            sigma = f"{np.mean(sigmas):.3f}" if sigmas else "-"
            flagged = sorted({w for r in results for w in r["warnings"]})
            note = f"  ({', '.join(flagged)})" if flagged else ""
            print(f"{name:<38} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} "
                  f"{np.mean([r['bias_rare'] for r in results]):>+10.3f} "
                  f"{np.mean([r['clipped_all'] for r in results]):>12.3f} "
                  f"{np.mean([r['clipped_rare'] for r in results]):>6.3f} {sigma:>6} "
                  f"{np.mean([r['seconds'] for r in results]):>6.1f}{note}", flush=True)


# -- classification ----------------------------------------------------------


def fit_classifier(criterion, weight_decay, seed, epochs, taus):
    X_train, y_train, X_test, y_test = load_data()
    n_classes = len(np.unique(y_train))
    uniform = np.full(n_classes, 1.0 / n_classes)
    clf = CNNClassifier(criterion=criterion, weight_decay=weight_decay,
                        class_prior=uniform, max_epochs=epochs, random_state=seed)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    scores, as_trained = {}, None
    for tau in taus:
        # post hoc: the same fitted network, only the prediction-time correction
        proba = clf.set_params(prior_tau=tau).predict_proba(X_test)
        if tau == 0:
            as_trained = proba
        pred = clf.classes_[proba.argmax(axis=1)]
        scores[str(tau)] = float(balanced_accuracy_score(y_test, pred))
    if as_trained is not None:
        # the correction is Bayes' rule raised to tau: check it on the last tau
        shifted = as_trained * (uniform / clf.effective_prior_) ** taus[-1]
        shifted /= shifted.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(proba, shifted, rtol=1e-4, atol=1e-5)
    return {"balanced_accuracy": scores, "seconds": seconds,
            "train_accuracy": float(clf.score(X_train, y_train))}


def classification_table(args, cache):
    taus = [0.0, 0.5, 0.65, 1.0, 1.5]
    X_train, y_train, _, y_test = load_data()
    print(f"\nImbalanced digits (make demo's data): training images per class "
          f"{np.bincount(y_train).tolist()}, balanced test set of {len(y_test)}; "
          f"{args.epochs or 80} epochs, seeds {args.seeds}.")
    print("Balanced accuracy (mean +- std over seeds); prior_tau with class_prior "
          "uniform, post hoc on the same fitted model.")
    header = (f"{'criterion':<16} {'weight_decay':>12} "
              + " ".join(f"{'prior_tau=' + format(t, 'g'):>15}" for t in taus)
              + f" {'train acc':>9} {'s/fit':>6}")
    print(header)
    print("-" * len(header))
    for criterion in ("cross_entropy", "logit_adjusted"):
        for decay in args.weight_decays:
            results = []
            for seed in args.seeds:
                key = ["classification", criterion, decay, seed, args.epochs or 80, taus]
                results.append(cache.get(key, partial(fit_classifier, criterion, decay,
                                                      seed, args.epochs or 80, taus)))
            cells = []
            for tau in taus:
                values = [r["balanced_accuracy"][str(tau)] for r in results]
                cells.append(f"{np.mean(values):.3f}+-{np.std(values):.3f}")
            print(f"{criterion:<16} {decay:>12g} "
                  + " ".join(f"{c:>15}" for c in cells)
                  + f" {np.mean([r['train_accuracy'] for r in results]):>9.3f}"
                  f" {np.mean([r['seconds'] for r in results]):>6.1f}", flush=True)


# -- main --------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=("regression", "sweep", "classification"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="model seeds (regression and sweep: 0 1 2, "
                             "classification: 0 1)")
    parser.add_argument("--problems", nargs="+", choices=tuple(PROBLEMS),
                        default=list(PROBLEMS))
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the epochs (nuclei 30, lognormal 20, digits 80)")
    parser.add_argument("--noise-sigma", type=float, default=None,
                        help="Balanced MSE's noise scale, in standard deviations of the "
                             "training targets (default: nuclei 0.3, lognormal 0.1; the "
                             "library's default is 1.0)")
    parser.add_argument("--learn-sigma", action="store_true",
                        help="learn sigma from --noise-sigma (default: fixed)")
    parser.add_argument("--sigma-lr", type=float, default=None,
                        help="learning rate of a learned sigma (default: the network's lr)")
    parser.add_argument("--weight-decays", type=float, nargs="+",
                        default=[0.0, 5e-4, 5e-3, 5e-2, 0.5])
    parser.add_argument("--cache", default=None,
                        help="JSON-lines file of finished fits, reused and extended")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.seeds is None:
        args.seeds = {"regression": [0, 1, 2], "sweep": [0, 1, 2],
                      "classification": [0, 1]}[args.section]
    cache = Cache(args.cache)
    start = time.perf_counter()
    if args.section == "regression":
        regression_table(regression_methods, args, cache, "Imbalanced regression")
    elif args.section == "sweep":
        regression_table(sweep_methods, args, cache, "Balanced MSE (BNI) settings")
    else:
        classification_table(args, cache)
    print(f"\nTotal {time.perf_counter() - start:.0f} s "
          f"(torch threads: {torch.get_num_threads()}).")


if __name__ == "__main__":
    main()
