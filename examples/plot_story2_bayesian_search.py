"""
Bayesian optimisation with Optuna on imbalanced digits
======================================================

Story 2's third way to tune, after grid and random search. Grid search
tries every combination; Bayesian optimisation proposes each setting from the
scores of the previous ones. Here Optuna's ``OptunaSearchCV`` (package
optuna-integration; ``pip install "skweight[optuna]"``) tunes a
``CNNClassifier`` on the demo's imbalanced digits: classes 5-9 keep 6
training images each, classes 0-4 about 90. The search covers the learning
rate, the loss (cross-entropy or focal), class weights, class-balanced
mini-batches and the width of the network, ranked by cross-validated balanced
accuracy, so that the rare classes count as much as the frequent ones. The
tuned model is then compared with an untuned default on a balanced held-out
set.

``sample_weight`` would reach every fit of the search, as in
``search.fit(X, y, sample_weight=w)``; leave ``enable_pruning`` off then
(optuna-integration's pruning passes the weights of all rows to each fold's
``partial_fit``; see docs/scale-out.md).

Run: ``python examples/plot_story2_bayesian_search.py`` (about a minute on 2 CPU
cores).
"""

import time
import warnings

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna_integration import OptunaSearchCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold

from skweight import CNNClassifier
from skweight.demo import MINORITY, load_data

N_TRIALS = 12
#: A flat search space: OptunaSearchCV samples every parameter in every trial,
#: so a setting only one loss takes (the focal loss's ``criterion__gamma``)
#: cannot depend on the chosen loss; the focal loss keeps its gamma=2.
SPACE = {
    "lr": FloatDistribution(1e-3, 3e-2, log=True),
    "criterion": CategoricalDistribution(["cross_entropy", "focal"]),
    "class_weight": CategoricalDistribution([None, "balanced"]),
    "sampler": CategoricalDistribution([None, "balanced"]),
    "module__hidden_units": CategoricalDistribution([32, 64, 128]),
}


def make_net(**params):
    return CNNClassifier(random_state=0, max_epochs=15, **params)


def minority_recall(y_true, y_pred):
    rare = np.isin(y_true, MINORITY)
    return float(np.mean(y_pred[rare] == y_true[rare]))


def main():
    torch.set_num_threads(1)  # tiny networks: one thread is fastest
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # OptunaSearchCV is marked experimental, and optuna-integration 5.0 calls a
    # module deprecated in Optuna 4.9 for every trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")

    X_train, y_train, X_test, y_test = load_data(seed=0)
    print(f"training images per class: {np.bincount(y_train).tolist()}")
    print(f"balanced test set: {len(y_test)} images\n")

    start = time.perf_counter()
    default = make_net().fit(X_train, y_train)
    default_time = time.perf_counter() - start

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    search = OptunaSearchCV(
        make_net(), SPACE, n_trials=N_TRIALS, study=study,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
        error_score="raise",  # the default (nan) hides failing folds
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    search_time = time.perf_counter() - start

    trials = search.trials_dataframe()
    columns = {f"params_{name}": name for name in SPACE}
    table = trials.rename(columns=columns)[[*columns.values(), "value"]]
    table = table.rename(columns={"value": "cv balanced acc"})
    for name in ("class_weight", "sampler"):  # None comes back as NaN
        table[name] = table[name].fillna("None")
    table["lr"] = table["lr"].map("{:.4f}".format)
    with pd.option_context("display.width", 120):
        print(table.sort_values("cv balanced acc", ascending=False)
              .round(3).to_string(index=False))

    print(f"\nbest parameters: {search.best_params_}")
    print(f"best cross-validated balanced accuracy: {search.best_score_:.3f}")
    print("\nheld-out balanced accuracy (minority recall):")
    for name, model in [("untuned default", default), ("Optuna-tuned", search)]:
        pred = model.predict(X_test)
        print(f"  {name:<16} {balanced_accuracy_score(y_test, pred):.3f} "
              f"({minority_recall(y_test, pred):.3f})")
    print(f"\n{N_TRIALS} trials x 3 folds + refit in {search_time:.0f} s "
          f"(one default fit: {default_time:.1f} s)")


if __name__ == "__main__":
    main()
