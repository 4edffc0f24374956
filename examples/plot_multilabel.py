"""
Multi-label imbalance: rare labels, thresholds and overlapping masks
====================================================================

An image often shows several findings at once, and some of them rarely. A
multi-label classifier has one sigmoid output per label, and each label has
its own imbalance: a label present in 2 % of the images is learned from few
positives, and its probabilities are calibrated to those 2 %, so the usual
threshold of 0.5 seldom fires for it.

This example builds such a task from real data: 2x2 mosaics of
scikit-learn's handwritten digits, where label ``c`` means "digit c appears
in the mosaic" and digit 9 is 100 times rarer than digit 0 per cell. It
compares plain binary cross-entropy, per-(sample, label) balanced weights,
the asymmetric loss, logit adjustment and multi-label over-sampling (ML-ROS),
each with the threshold 0.5 and with one threshold per label tuned on the
validation split (``threshold="auto"``). It ends with overlapping
segmentation masks: nuclei and their borders, one sigmoid channel each.

The classifiers are those of seed 0 of ``benchmarks/bench_multilabel.py``
(3000 mosaics, the default ``SmallCNN``, 20 epochs), so their numbers are
that benchmark's seed-0 numbers; the benchmark's table, over three seeds,
is in the user guide's page "Multi-label". One seed is noisy: the rare
labels have 47 to 135 test positives. The example takes about 80 s of CPU
on one core.
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# The task: mosaics of digits with rare labels
# --------------------------------------------
# Each cell of a mosaic holds a digit drawn with probability proportional to
# ``r**c``; the training and test mosaics are made from disjoint halves of
# the digit images.

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_sample_weight

from skweight import CNNClassifier, CNNSegmenter
from skweight.datasets import load_nuclei_tiles
from skweight.display import MultiLabelPrecisionRecallDisplay
from skweight.metrics import dice_score
from skweight.sampling import MultiLabelRandomOverSampler
from skweight.weighting import effective_sample_size

torch.set_num_threads(1)
start = time.perf_counter()
RARE = [7, 8, 9]


def make_mosaics(images, digits, n, rng, decay=100.0):
    """Return ``n`` 2x2 mosaics of 8x8 digits and their (n, 10) label indicator."""
    p = decay ** (-np.arange(10) / 9)
    cells = rng.choice(10, size=(n, 4), p=p / p.sum())
    by_digit = [np.flatnonzero(digits == c) for c in range(10)]
    X = np.empty((n, 1, 16, 16), dtype=np.float32)
    for k, (r, c) in enumerate(((0, 0), (0, 8), (8, 0), (8, 8))):
        X[:, 0, r:r + 8, c:c + 8] = images[[rng.choice(by_digit[d]) for d in cells[:, k]]]
    Y = np.zeros((n, 10), dtype=np.int64)
    np.put_along_axis(Y, cells, 1, axis=1)
    return X, Y


images, digits = load_digits(return_X_y=True)
images = (images / 16).reshape(-1, 8, 8).astype(np.float32)
Itr, Ite, dtr, dte = train_test_split(images, digits, test_size=0.5, stratify=digits,
                                      random_state=0)
rng = np.random.default_rng(0)
Xtr, Ytr = make_mosaics(Itr, dtr, 3000, rng)
Xte, Yte = make_mosaics(Ite, dte, 3000, rng)
print(f"prevalence of labels 0..9 in training (%): "
      f"{np.round(100 * Ytr.mean(0), 1).tolist()}")
print(f"positives of the rare labels {RARE}: training {Ytr[:, RARE].sum(0).tolist()}, "
      f"test {Yte[:, RARE].sum(0).tolist()}")

fig, axes = plt.subplots(1, 6, figsize=(9, 2.3), layout="constrained")
for ax, i in zip(axes, [*np.flatnonzero(Ytr[:, 9])[:2], *range(4)], strict=True):
    ax.imshow(Xtr[i, 0], cmap="gray_r")
    ax.set_title("{" + ", ".join(map(str, np.flatnonzero(Ytr[i]))) + "}")
    ax.set_axis_off()
fig.suptitle("Training mosaics and their label sets")

# %%
# One weight per (sample, label), not one per sample
# ---------------------------------------------------
# ``class_weight="balanced"`` gives each label's positives and negatives half
# of that label's weight, element by element. scikit-learn's
# ``compute_sample_weight("balanced", Y)`` must put everything into one
# weight per sample: the product over the labels of each label's balanced
# weight. That product is enormous for a mosaic with two rare digits and
# tiny for one with only frequent ones, and it weighs the frequent labels of
# a sample as heavily as its rare one. Kish's effective sample size says how
# many equally weighted samples each label's loss then rests on.

product = compute_sample_weight("balanced", Ytr)
n, n_pos = len(Ytr), Ytr.sum(0)
per_element = np.where(Ytr == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
ess_element = [effective_sample_size(per_element[:, c]) for c in range(10)]
print(f"product weights: largest / smallest {product.max() / product.min():.3g}, "
      f"effective sample size {effective_sample_size(product):.0f} of {n} for every "
      f"label")
print(f"per-element weights: effective sample size of labels 0..9 "
      f"{np.round(ess_element).astype(int).tolist()}")

# %%
# Five ways to train, two ways to threshold
# -----------------------------------------
# Every model is the default ``SmallCNN`` trained for 20 epochs on the same
# 80 % of the training mosaics; the other 20 % (split iteratively stratified
# per label) is where ``threshold="auto"`` picks each label's F1-best
# threshold. The same fitted model is then scored with ``threshold=0.5``.

methods = {
    "BCE": {},
    "BCE + balanced": {"class_weight": "balanced"},
    "ASL": {"criterion": "asl"},
    "logit adjusted": {"criterion": "logit_adjusted"},
    "ML-ROS": {"sampler": MultiLabelRandomOverSampler(percentage=25)},
}
fitted, rows = {}, {}
for name, params in methods.items():
    clf = CNNClassifier(threshold="auto", train_split=0.2, max_epochs=20,
                        random_state=0, **params).fit(Xtr, Ytr)
    fitted[name] = clf
    tuned = clf.predict(Xte)
    half = clf.set_params(threshold=0.5).predict(Xte)
    clf.set_params(threshold="auto")
    rows[name] = {
        "rare recall, 0.5": recall_score(Yte[:, RARE], half[:, RARE], average="macro",
                                         zero_division=0),
        "rare recall, tuned": recall_score(Yte[:, RARE], tuned[:, RARE],
                                           average="macro", zero_division=0),
        "rare precision, 0.5": precision_score(Yte[:, RARE], half[:, RARE],
                                               average="macro", zero_division=0),
        "rare precision, tuned": precision_score(Yte[:, RARE], tuned[:, RARE],
                                                 average="macro", zero_division=0),
        "macro F1, 0.5": f1_score(Yte, half, average="macro", zero_division=0),
        "macro F1, tuned": f1_score(Yte, tuned, average="macro", zero_division=0),
    }
    if len(rows) == 1:
        print(f"{'':<16}{'rare recall':>14}{'rare precision':>16}{'macro F1':>14}"
              f"   tuned thresholds of {RARE}")
        print(f"{'threshold':<16}{'0.5 / tuned':>14}{'0.5 / tuned':>16}"
              f"{'0.5 / tuned':>14}")
    cells = [f"{rows[name][f'{m}, 0.5']:.3f} / {rows[name][f'{m}, tuned']:.3f}"
             for m in ("rare recall", "rare precision", "macro F1")]
    print(f"{name:<16}{cells[0]:>14}{cells[1]:>16}{cells[2]:>14}   "
          f"{np.round(clf.threshold_[RARE], 2).tolist()}")

# %%
# Precision-recall curves per label
# ---------------------------------
# :class:`~skweight.display.MultiLabelPrecisionRecallDisplay` draws one curve
# per label with its average precision; the legend's title gives the macro
# (mean over labels) and micro (all pairs pooled) average precision. The
# frequent labels are learned almost perfectly; the rare labels' precision
# falls fast as their recall grows, which one macro F1 cannot show, and the
# micro average, dominated by the frequent labels, hides them altogether.
# ``chance_level=True`` draws each label's prevalence (dotted), the precision
# of a random ranking. Thresholds do not change these curves: what the loss
# changes is the ranking itself.

shown = [0, 4, 7, 8, 9]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained", sharey=True)
for ax, name in zip(axes, ["BCE", "logit adjusted"], strict=True):
    display = MultiLabelPrecisionRecallDisplay.from_estimator(
        fitted[name], Xte, Yte, labels=shown, name=name, chance_level=True, ax=ax)
    display.ax_.get_legend().set_loc("lower left")

# %%
# Recall on the rare labels, per method
# -------------------------------------
# The mean recall and precision of labels 7, 8 and 9 with the threshold 0.5
# and with the tuned thresholds, and the macro F1 over all ten labels.
# Unweighted BCE misses most rare positives at 0.5, and a tuned threshold
# recovers many of them; so does ML-ROS, whose clones lift the rare labels
# only part of the way. Balanced weights, ASL and logit adjustment move the
# rare labels' probabilities up, so 0.5 already catches most; their tuned
# thresholds trade some of that recall for precision, except with
# ``class_weight="balanced"``, whose thresholds are tuned for the F1 of the
# class-weighted validation split: a rare positive there weighs as much as
# dozens of negatives, and the thresholds fall so low that precision
# collapses.

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
names = list(rows)
x = np.arange(len(names))
for ax, metric in zip(axes, ["rare recall", "rare precision", "macro F1"], strict=True):
    for k, (suffix, color) in enumerate([("0.5", "tab:gray"), ("tuned", "tab:blue")]):
        values = [rows[name][f"{metric}, {suffix}"] for name in names]
        ax.bar(x + (k - 0.5) * 0.38, values, width=0.38, color=color,
               label=f"threshold {suffix}")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1.15), title=f"{metric} (test)" if metric == "macro F1"
           else f"{metric.split()[1]} of labels {RARE} (test)")
axes[0].legend(loc="upper center", ncols=2, fontsize="small")

# %%
# Overlapping masks: nuclei and their borders
# -------------------------------------------
# Segmentation with overlapping structures takes 0/1 masks of shape ``(N, C,
# H, W)``, one channel per structure, and trains one sigmoid channel each.
# Here channel 0 is the nucleus and channel 1 its border (the nucleus pixels
# within 2 pixels of the background or of another nucleus): every border
# pixel is also a nucleus pixel, which label masks of one class per pixel
# cannot say. The border is the rare structure. Tiles of the left half of
# the real nuclei image train a small U-Net with the sigmoid Dice + binary
# cross-entropy loss; the right half is scored per channel.


def nucleus_and_border(instances):
    """0/1 masks (N, 2, H, W): the nuclei, and their pixels near another label."""
    near = (ndimage.maximum_filter(instances, size=(1, 5, 5)) != instances) | (
        ndimage.minimum_filter(instances, size=(1, 5, 5)) != instances)
    return np.stack([instances > 0, (instances > 0) & near], axis=1).astype(np.int8)


Xs, _, Xs_test, _, inst, inst_test = load_nuclei_tiles(64, stride=32,
                                                        return_instances=True)
Ms, Ms_test = nucleus_and_border(inst), nucleus_and_border(inst_test)
print(f"{len(Xs)} training tiles; pixels in nuclei {Ms[:, 0].mean():.1%}, in borders "
      f"{Ms[:, 1].mean():.1%}")
seg = CNNSegmenter(criterion="dice_ce", module__channels=(8, 16, 32), max_epochs=15,
                   random_state=0).fit(Xs, Ms)
pred = seg.predict(Xs_test)
dice = dice_score(Ms_test, pred, multilabel=True, average=None)
print(f"Dice per channel (test): nucleus {dice[0]:.3f}, border {dice[1]:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), layout="constrained")
i = int(np.argmax(Ms_test[:, 1].sum(axis=(1, 2))))
axes[0].imshow(Xs_test[i, 0], cmap="gray")
axes[0].set_title("test tile")
for ax, masks, title in ((axes[1], Ms_test, "truth"), (axes[2], pred, "prediction")):
    overlay = np.zeros((64, 64, 3))
    overlay[masks[i, 0] == 1] = (0.2, 0.5, 1.0)  # nucleus
    overlay[masks[i, 1] == 1] = (1.0, 0.8, 0.0)  # border, drawn over the nucleus
    ax.imshow(overlay)
    ax.set_title(title)
for ax in axes:
    ax.set_axis_off()
fig.suptitle(f"nucleus (blue) and border (yellow): Dice {dice[0]:.2f} and {dice[1]:.2f}")

print(f"total time {time.perf_counter() - start:.0f} s")
plt.show()
