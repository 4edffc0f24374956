"""
Class imbalance, searched in one grid
=====================================

Half of the digit classes are made rare (a tenth of their images). One
``GridSearchCV`` then compares the remedies people reach for: class weights
(``class_weight="balanced"``, the Keras habit), focal loss, and resampling
(imbalanced-learn samplers on images, or balanced mini-batches), ranked by
balanced accuracy so that the rare classes count as much as the frequent
ones. Then the probabilities are checked for calibration, before and
after mapping them back to the training class frequencies with
``class_prior="train"``.

It runs in about 30 s on 2 CPU cores (two fits at a time, each on one
torch thread).
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# Imbalanced digits
# -----------------

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from imblearn.datasets import make_imbalance
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    balanced_accuracy_score,
    log_loss,
    recall_score,
)
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skweight import CNNClassifier
from skweight.display import ReliabilityDisplay

RARE = [5, 6, 7, 8, 9]


def imbalanced_digits():
    """Digits with classes 5-9 cut to a tenth: ~180 vs ~18 images per class."""
    X, y = load_digits(return_X_y=True)
    counts = np.bincount(y)
    strategy = {k: counts[k] // 10 if k in RARE else counts[k] for k in range(10)}
    X, y = make_imbalance(X, y, sampling_strategy=strategy, random_state=0)
    return (X / 16).astype(np.float32), y


torch.set_num_threads(1)
X, y = imbalanced_digits()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
print(f"training images per class: {np.bincount(y_train).tolist()}")

# %%
# One grid over losses, class weights and samplers
# ------------------------------------------------
# ``class_weight`` is computed on the data the network trains on, i.e. after
# the sampler: behind a balancing sampler ``"balanced"`` gives every class
# weight 1, so it is searched only without one.

net = CNNClassifier(
    input_shape=(1, 8, 8), max_epochs=8, lr=3e-3, random_state=0,
    module__channels=(8, 16), module__hidden_units=32,
)
losses = [{"criterion": ["cross_entropy"]},
          {"criterion": ["focal"], "criterion__gamma": [2.0]}]
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

# %%
# The same ranking as a figure; whiskers are the standard deviation over the
# folds.

labels = [f"{r.criterion}, class_weight={r.class_weight}, sampler={r.sampler}"
          for r in table.itertuples()]
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
ax.barh(np.arange(len(table)), table["balanced_accuracy"], xerr=table["std"],
        color="tab:blue", capsize=2)
ax.set_yticks(np.arange(len(table)), labels, fontsize="small")
ax.invert_yaxis()
ax.set(xlabel="balanced accuracy (3-fold CV)", xlim=(0.4, 1),
       title="Remedies for class imbalance")

# %%
# Held-out test set
# -----------------
# The best configuration, refitted on the whole training set, against plain
# cross-entropy; and, outside the grid, logit adjustment
# (``criterion="logit_adjusted"``), which changes the loss rather than the
# weights of the data (see :doc:`/weights`).

print(f"best configuration: {search.best_params_}")
baseline = clone(net).fit(X_train, y_train)
adjusted = clone(net).set_params(criterion="logit_adjusted").fit(X_train, y_train)
rare = np.isin(y_test, RARE)
models = {"plain cross-entropy": baseline, "best of the grid": search.best_estimator_,
          "logit adjustment": adjusted}
for name, model in models.items():
    pred = model.predict(X_test)
    print(f"held-out, {name:>19}: balanced accuracy "
          f"{balanced_accuracy_score(y_test, pred):.3f}, rare-class images "
          f"recognised {np.mean(pred[rare] == y_test[rare]):.3f}")

# %%
# Recall per class: the remedies pay off on the rare classes 5-9, at little
# cost on the frequent ones.

fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
for i, (name, model) in enumerate(models.items()):
    recall = recall_score(y_test, model.predict(X_test), average=None)
    ax.bar(np.arange(10) + (i - 1) * 0.27, recall, 0.27, label=name)
ax.axvspan(4.5, 9.5, color="0.92", zorder=0, label="rare classes")
ax.set_xticks(np.arange(10))
ax.set(xlabel="digit", ylabel="test recall", ylim=(0, 1.05), title="Recall per class")
fig.legend(loc="outside lower center", ncols=4, fontsize="small")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
for ax, name in zip(axes, ["plain cross-entropy", "best of the grid"], strict=True):
    ConfusionMatrixDisplay.from_predictions(y_test, models[name].predict(X_test),
                                            normalize="true", values_format=".1f",
                                            colorbar=False, ax=ax)
    ax.set_title(name)

# %%
# Calibration, with and without prior correction
# ----------------------------------------------
# Logit adjustment trains the network's outputs for a balanced population,
# so its ``predict_proba`` gives the rare classes too much probability on
# this test set, which is as imbalanced as the training set.
# ``class_prior="train"`` maps the probabilities to the training class
# frequencies by Bayes' rule, after training (``predict`` is their argmax,
# so it changes too). :class:`~skweight.display.ReliabilityDisplay` draws
# the top-label reliability diagram with the expected calibration error
# (ECE) over 5 bins; the curves share one axes. With a few hundred test
# images most predictions fall into the last bin and the others hold a
# handful each, hence the jagged curves: read the ECE and the log-loss.
#
# The correction is exact only for outputs calibrated for the prior the loss
# saw. Networks that fitted their few rare images with full confidence
# (class weights, resampling) are not, and the correction can make them
# worse: the right panel shows the best model of the grid.

fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), layout="constrained")
for ax, (name, model) in zip(axes, [("logit adjustment", adjusted),
                                    ("best of the grid", search.best_estimator_)],
                             strict=True):
    for prior in (None, "train"):
        model.set_params(class_prior=prior)
        ReliabilityDisplay.from_estimator(model, X_test, y_test, n_bins=5,
                                          name=f"class_prior={prior!r}", ax=ax)
        loss = log_loss(y_test, model.predict_proba(X_test), labels=model.classes_)
        accuracy = balanced_accuracy_score(y_test, model.predict(X_test))
        print(f"{name}, class_prior={prior!r}: log-loss {loss:.3f}, "
              f"balanced accuracy {accuracy:.3f}")
    model.set_params(class_prior=None)
    ax.set_title(name)
plt.show()
