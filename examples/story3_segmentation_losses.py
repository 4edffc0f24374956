"""Story 3: Dice loss or cross-entropy for segmentation?

One grid search trains the same U-Net with five losses on the same noisy
scenes (small disks, class 1, ~4 % of the pixels; one larger square,
class 2, ~10 %) and scores every fold with Dice, IoU and the 95th
percentile Hausdorff distance, overall and for the small disks alone.

Run: python examples/story3_segmentation_losses.py   (about 1-2 minutes on 2 CPU cores)
"""

import time

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from skweight import CNNSegmenter
from skweight.datasets import make_disk_scenes
from skweight.metrics import dice_scorer, iou_scorer, make_segmentation_scorer

X, y = make_disk_scenes(300, random_state=0)
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
    "hd95": make_segmentation_scorer("hausdorff", percentile=95),
}
search = GridSearchCV(
    CNNSegmenter(max_epochs=10, random_state=0),
    grid, scoring=scoring, refit=False, cv=KFold(3, shuffle=True, random_state=0),
)
start = time.perf_counter()
search.fit(X, y)
elapsed = time.perf_counter() - start

res = search.cv_results_
print(f"\n3-fold cross-validation, {elapsed:.0f} s in all\n")
print(f"{'loss':<34}{'Dice':>7}{'Dice disks':>12}{'IoU':>7}{'HD95 (px)':>11}"
      f"{'fit (s)':>9}")
for i, params in enumerate(res["params"]):
    name = params["criterion"]
    if params.get("class_weight") == "balanced":
        name += " + balanced weights"
    print(f"{name:<34}{res['mean_test_dice'][i]:>7.3f}"
          f"{res['mean_test_dice_disks'][i]:>12.3f}{res['mean_test_iou'][i]:>7.3f}"
          f"{-res['mean_test_hd95'][i]:>11.2f}{res['mean_fit_time'][i]:>9.1f}")
print("\nDice and IoU: higher is better; HD95: lower is better.")
