"""The main job: imbalanced handwritten digits, and what fixes the imbalance.

Run ``python -m skweight.demo`` (or ``make demo``). It takes scikit-learn's
real digits, keeps the classes 0-4 whole and cuts the classes 5-9 to a handful
of training images with ``imblearn.datasets.make_imbalance``, then trains
plain cross-entropy, ``class_weight="balanced"``, focal loss (with and
without class weights), logit adjustment (``criterion="logit_adjusted"``)
and deferred re-weighting (balanced class weights switched on for the last
quarter of the epochs, ``reweight_from_epoch``), and prints balanced
accuracy and minority-class recall on a balanced test set.

Each model is trained twice: with a short fixed budget of 15 epochs (what a
careful user does) and for 80 epochs, which drives the training loss to ~0.
Both fit every training image; the longer the training, the less importance
weights change (a network that separates its training set is pulled towards
the same max-margin solution whatever the weights: Byrd and Lipton, ICML
2019). Logit adjustment changes the loss's optimum instead (Menon et al.,
ICLR 2021) and keeps its effect. The data and the settings were fixed before
looking at any result.
"""

import argparse
import sys
import time

import numpy as np
from imblearn.datasets import make_imbalance
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from skorch.callbacks import Callback

from .classifier import CNNClassifier

MINORITY = (5, 6, 7, 8, 9)
N_MINORITY = 6
CONFIGS = {
    "cross-entropy": dict(criterion="cross_entropy"),
    "balanced CE": dict(criterion="cross_entropy", class_weight="balanced"),
    "focal (gamma=2)": dict(criterion="focal"),
    "balanced focal": dict(criterion="focal", class_weight="balanced"),
    "logit adjusted": dict(criterion="logit_adjusted"),
    # the class weights for the last quarter of the budget (set per budget)
    "deferred rew.": dict(criterion="cross_entropy", class_weight="balanced",
                          reweight_from_epoch=0.75),
}
BUDGETS = {"15 epochs": 15, "80 epochs": 80}


class _Progress(Callback):
    """One status line per model, rewritten after every epoch."""

    def __init__(self, label, out=None):
        self.label = label
        self.out = out

    def on_epoch_end(self, net, **kwargs):
        out = self.out or sys.stdout
        epoch = len(net.history)
        loss = net.history[-1, "train_loss"]
        end = "\n" if epoch == net.max_epochs else ""
        if out.isatty() or end:
            out.write(
                f"\r  {self.label}: epoch {epoch:>3}/{net.max_epochs} "
                f"train loss {loss:.4f}{end}"
            )
            out.flush()


def load_data(seed=0):
    """Imbalanced training digits and a balanced test set."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, stratify=y,
                                          random_state=seed)
    counts = {c: (N_MINORITY if c in MINORITY else int((ytr == c).sum()))
              for c in np.unique(ytr)}
    flat, ytr = make_imbalance(Xtr.reshape(len(Xtr), -1), ytr,
                               sampling_strategy=counts, random_state=seed)
    return flat.reshape(-1, 1, 8, 8), ytr, Xte, yte


def evaluate(clf, train, test):
    """Balanced accuracy, minority and majority recall, training accuracy."""
    pred = clf.predict(test[0])
    recall = recall_score(test[1], pred, average=None, labels=np.arange(10))
    return (balanced_accuracy_score(test[1], pred), recall[list(MINORITY)].mean(),
            np.delete(recall, list(MINORITY)).mean(), clf.score(*train))


def main(argv=None):
    """Run the comparison and print its table (``python -m skweight.demo``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per setting")
    args = parser.parse_args(argv)

    Xtr, ytr, Xte, yte = load_data()
    counts = np.bincount(ytr)
    print(f"Training images per class: {dict(enumerate(counts.tolist()))}")
    print(f"Test set: {len(yte)} images, balanced ({np.bincount(yte).min()}-"
          f"{np.bincount(yte).max()} per class)\n")

    rows = []
    start = time.perf_counter()
    n_runs = len(CONFIGS) * len(BUDGETS) * args.seeds
    run = 0
    for budget_name, epochs in BUDGETS.items():
        for name, params in CONFIGS.items():
            scores = []
            for seed in range(args.seeds):
                run += 1
                label = f"[{run:>2}/{n_runs}] {name}, {budget_name}, seed {seed}"
                params = dict(params)
                if "reweight_from_epoch" in params:
                    params["reweight_from_epoch"] = int(
                        params["reweight_from_epoch"] * epochs) + 1
                clf = CNNClassifier(max_epochs=epochs, random_state=seed,
                                    callbacks=[("progress", _Progress(label))],
                                    **params)
                clf.fit(Xtr, ytr)
                scores.append(evaluate(clf, (Xtr, ytr), (Xte, yte)))
            rows.append((budget_name, name, np.mean(scores, axis=0),
                         np.std(scores, axis=0)))
    elapsed = time.perf_counter() - start

    print(f"\nMean over {args.seeds} seeds (+- std); minority = classes "
          f"{MINORITY[0]}-{MINORITY[-1]} with {N_MINORITY} training images each.\n")
    header = (f"{'budget':<10} {'loss':<16} {'balanced acc':>14} {'minority recall':>16} "
              f"{'majority recall':>16} {'train acc':>10}")
    print(header)
    print("-" * len(header))
    for budget_name, name, mean, std in rows:
        print(f"{budget_name:<10} {name:<16} {mean[0]:>8.3f}+-{std[0]:.3f} "
              f"{mean[1]:>10.3f}+-{std[1]:.3f} {mean[2]:>10.3f}+-{std[2]:.3f} "
              f"{mean[3]:>10.3f}")
    print()
    for budget_name in BUDGETS:
        found = {n: m for b, n, m, _ in rows if b == budget_name}
        base = found["cross-entropy"]
        best = found["balanced CE"]
        print(f"{budget_name}: class_weight='balanced' changes minority recall by "
              f"{best[1] - base[1]:+.3f} and balanced accuracy by "
              f"{best[0] - base[0]:+.3f}.")
        if "logit adjusted" in found:
            la = found["logit adjusted"]
            print(f"{budget_name}: logit adjustment changes minority recall by "
                  f"{la[1] - base[1]:+.3f} and balanced accuracy by "
                  f"{la[0] - base[0]:+.3f}.")
    print("\nTraining on after the training set is fitted shrinks what the weights "
          "change\n(Byrd and Lipton, ICML 2019): compare the two budgets.")
    print(f"\nTotal training time: {elapsed:.1f} s for {n_runs} models.")


if __name__ == "__main__":
    main()
