"""
Dice loss or cross-entropy for segmentation?
============================================

One grid search trains the same U-Net with five losses on the same noisy
scenes (small disks, class 1, about 6 % of the pixels; one larger square,
class 2, about 17 %) and scores every fold with Dice, IoU and the 95th percentile
Hausdorff distance, overall and for the small disks alone. Then a U-Net
segments the nuclei of a real fluorescence microscopy image, shown with
its errors.

To run in about 40 s on 2 CPU cores, the gallery version uses 150 scenes
of 24 x 24 pixels, 2-fold cross-validation and mini-batches of 8 images
(the full experiment: 300 scenes of 32 x 32 pixels, 3 folds, mini-batches
of 16, with the same ranking of the losses).
"""

# sphinx_gallery_thumbnail_number = 3

# %%
# Five losses in one grid
# -----------------------

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from skweight import CNNSegmenter
from skweight.datasets import load_nuclei, load_nuclei_tiles, make_disk_scenes
from skweight.display import ReliabilityDisplay, SegmentationDisplay, TrainingCurveDisplay
from skweight.metrics import dice_score, dice_scorer, iou_scorer, make_segmentation_scorer

X, y = make_disk_scenes(150, image_size=24, random_state=0)
print(f"{len(X)} scenes {X.shape[2:]}, pixel share of background/disks/square:",
      np.round(np.bincount(y.ravel()) / y.size, 3))

# Weighted cross-entropy is cross-entropy with class_weight="balanced":
# pixel weights from the inverse class frequencies, computed per fold.
grid = [
    {"criterion": ["cross_entropy", "dice", "dice_ce", "focal"]},
    {"criterion": ["cross_entropy"], "class_weight": ["balanced"]},
]
scoring = {
    "dice": dice_scorer,  # mean over foreground classes, per image
    "dice_disks": make_segmentation_scorer("dice", labels=[1]),
    "iou": iou_scorer,
    # negated by the scorer (greater is better); a missed or hallucinated
    # structure costs the image diagonal
    "hd95": make_segmentation_scorer("neg_hausdorff_distance", percentile=95),
}
search = GridSearchCV(
    CNNSegmenter(max_epochs=10, batch_size=8, random_state=0),
    grid, scoring=scoring, refit=False, cv=KFold(2, shuffle=True, random_state=0),
)
start = time.perf_counter()
search.fit(X, y)
elapsed = time.perf_counter() - start

res = search.cv_results_
names = []
print(f"\n2-fold cross-validation, {elapsed:.0f} s in all\n")
print(f"{'loss':<34}{'Dice':>7}{'Dice disks':>12}{'IoU':>7}{'HD95 (px)':>11}"
      f"{'fit (s)':>9}")
for i, params in enumerate(res["params"]):
    name = params["criterion"]
    if params.get("class_weight") == "balanced":
        name += " + balanced weights"
    names.append(name)
    print(f"{name:<34}{res['mean_test_dice'][i]:>7.3f}"
          f"{res['mean_test_dice_disks'][i]:>12.3f}{res['mean_test_iou'][i]:>7.3f}"
          f"{-res['mean_test_hd95'][i]:>11.2f}{res['mean_fit_time'][i]:>9.1f}")
print("\nDice and IoU: higher is better; HD95: lower is better.")

# %%
# With this short budget, plain cross-entropy (and Dice + cross-entropy,
# whose cross-entropy term dominates early on) labels the small disks as
# background: a Dice of 0 on the disks and a large HD95, since a missed
# structure costs the image diagonal. Dice, focal loss and class weights
# find them.

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained",
                                  sharey=True)
rows = np.arange(len(names))
left.barh(rows - 0.2, res["mean_test_dice"], 0.4, label="all classes")
left.barh(rows + 0.2, res["mean_test_dice_disks"], 0.4, label="small disks")
left.set(xlabel="Dice (higher is better)", xlim=(0, 1))
left.set_yticks(rows, names)
left.invert_yaxis()
left.legend(loc="upper right", fontsize="small")
right.barh(rows, -res["mean_test_hd95"], 0.5, color="tab:red")
right.set(xlabel="HD95 in pixels (lower is better)")
fig.suptitle("Segmentation losses, 2-fold cross-validation")

# %%
# A real image: nuclei
# --------------------
# :func:`~skweight.datasets.load_nuclei` is a 512 x 512 fluorescence image
# of cell nuclei from the 2018 Data Science Bowl, with hand-made labels
# (CC0). The U-Net trains on 64 x 64 tiles of its left half, a fifth of
# them held out to draw the validation loss, and is evaluated on the whole
# right half, which no training tile touches.

X_train, y_train, X_test, y_test = load_nuclei_tiles(64, stride=32)
nuclei = load_nuclei()
right_half = nuclei.image[None, None, :, 256:]  # (1, 1, 512, 256)
right_mask = nuclei.mask[None, :, 256:].astype(np.int64)

start = time.perf_counter()
seg = CNNSegmenter(max_epochs=8, train_split=0.2, random_state=0).fit(X_train, y_train)
print(f"{len(X_train)} training tiles, fitted in {time.perf_counter() - start:.0f} s")
print(f"Dice of the nuclei on the right half: "
      f"{dice_score(right_mask, seg.predict(right_half)):.3f}")

TrainingCurveDisplay.from_estimator(seg).ax_.set_title("U-Net on nuclei tiles")

# %%
# The prediction and its errors
# -----------------------------
# :class:`~skweight.display.SegmentationDisplay` shows the image, the
# true and predicted masks, and the errors: false positives in red (nucleus
# predicted on background), false negatives in blue (nucleus missed).
# Almost all errors are thin rims on the nuclei's borders, where the hand
# labels are themselves uncertain: mostly false positives, as the network
# draws the nuclei a little larger than the annotator did. Hardly a whole
# nucleus is missed or invented.

SegmentationDisplay.from_estimator(seg, right_half, right_mask)

# %%
# Are the pixel probabilities calibrated? For a segmenter,
# :class:`~skweight.display.ReliabilityDisplay` takes every pixel as one
# prediction.

ReliabilityDisplay.from_estimator(seg, right_half, right_mask, name="U-Net, pixels")
plt.show()
