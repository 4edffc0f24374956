"""Story 2: class imbalance, searched in one grid.

Half of the digit classes are made rare (a tenth of their images). One
GridSearchCV then compares the remedies people reach for: class weights
(``class_weight="balanced"``, the Keras habit), focal loss, and resampling
(imbalanced-learn samplers on images, or balanced mini-batches), ranked by
balanced accuracy so that the rare classes count as much as the frequent ones.

Run: python examples/story2_imbalanced_grid_search.py  (about a minute on 2 CPU cores)
"""

import time

import numpy as np
import pandas as pd
import torch
from imblearn.datasets import make_imbalance
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import RandomUnderSampler
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skweight import CNNClassifier

RARE = [5, 6, 7, 8, 9]


def imbalanced_digits():
    """Digits with classes 5-9 cut to a tenth: ~180 vs ~18 images per class."""
    X, y = load_digits(return_X_y=True)
    counts = np.bincount(y)
    strategy = {k: counts[k] // 10 if k in RARE else counts[k] for k in range(10)}
    X, y = make_imbalance(X, y, sampling_strategy=strategy, random_state=0)
    return (X / 16).astype(np.float32), y


def main():
    torch.set_num_threads(1)
    X, y = imbalanced_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    print(f"training images per class: {np.bincount(y_train).tolist()}")

    net = CNNClassifier(
        input_shape=(1, 8, 8), max_epochs=8, lr=3e-3, random_state=0,
        module__channels=(8, 16), module__hidden_units=32,
    )
    losses = [{"criterion": ["cross_entropy"]},
              {"criterion": ["focal"], "criterion__gamma": [2.0]}]
    # class_weight is computed on the data the network trains on, i.e. after
    # the sampler: behind a balancing sampler "balanced" gives every class
    # weight 1, so it is searched only without one.
    remedies = [
        {"sampler": [None], "class_weight": [None, "balanced"]},
        {"sampler": ["balanced", RandomUnderSampler(), SMOTE(k_neighbors=3)],
         "class_weight": [None]},
    ]
    grid = [{**loss, **remedy} for loss in losses for remedy in remedies]
    # Tiny networks: one torch thread per fit, two fits at a time.
    search = GridSearchCV(
        net, grid, scoring="balanced_accuracy", n_jobs=2,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start

    results = pd.DataFrame(search.cv_results_)
    params = results["params"]
    table = pd.DataFrame({
        "criterion": [p["criterion"] for p in params],
        "gamma": [p.get("criterion__gamma", "-") for p in params],
        "class_weight": [str(p["class_weight"]) for p in params],
        "sampler": [str(p["sampler"]) for p in params],
        "balanced_accuracy": results["mean_test_score"].round(3),
        "std": results["std_test_score"].round(3),
        "rank": results["rank_test_score"],
    }).sort_values("rank")
    print(f"\n{len(table)} configurations x 3 folds in {elapsed:.0f} s "
          f"(mean balanced accuracy over the folds):")
    print(table.to_string(index=False))

    print(f"\nbest configuration: {search.best_params_}")
    baseline = CNNClassifier(**net.get_params()).fit(X_train, y_train)
    rare = np.isin(y_test, RARE)
    for name, model in [("plain cross-entropy", baseline),
                        ("best of the grid", search.best_estimator_)]:
        pred = model.predict(X_test)
        print(f"held-out, {name:>19}: balanced accuracy "
              f"{balanced_accuracy_score(y_test, pred):.3f}, rare-class images "
              f"recognised {np.mean(pred[rare] == y_test[rare]):.3f}")


if __name__ == "__main__":
    main()
