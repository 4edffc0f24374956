"""Story 4: focal loss with class weights for an imbalanced 4-class problem.

Should class weights be used with focal loss, and how? Yes: in the focal loss
of Lin et al. (2017) ``alpha_t`` *is* a per-class weight, applied to each
sample's loss before the mean:

    FL_i = -alpha[y_i] * (1 - p_i)**gamma * log p_i

A common implementation gets two things wrong: it uses one scalar alpha for
all classes, and it computes ``(1 - p)**gamma`` from a cross-entropy that was
already averaged over the batch, so the focusing term no longer acts per
sample. This script shows the difference numerically, then trains
``CNNClassifier(criterion="focal", class_weight=...)``, where the class
weights act as alpha exactly once.

Run: ``python examples/story4_focal_class_weights.py`` (about 20 s on 2 cores).
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from skweight import CNNClassifier
from skweight.losses import FocalLoss


def wrong_focal(logits, target, alpha=0.25, gamma=2.0):
    """The flawed version often posted online (kept here to compare)."""
    ce = torch.nn.functional.cross_entropy(logits, target)  # already averaged
    p = torch.exp(-ce)
    return alpha * (1 - p) ** gamma * ce


def compare_losses():
    torch.manual_seed(0)
    logits = torch.randn(6, 4) * 3
    target = torch.tensor([0, 0, 0, 1, 2, 3])
    alpha = torch.tensor([0.25, 1.0, 2.0, 4.0])
    ce = torch.nn.functional.cross_entropy(logits, target)
    print("1) FocalLoss as a plain PyTorch loss")
    fl0 = FocalLoss(gamma=0)(logits, target)
    print(f"   gamma=0, no alpha  == cross-entropy:  {fl0:.6f} vs {ce:.6f}")
    per_sample = FocalLoss(gamma=2, alpha=alpha, reduction="none")(logits, target)
    plain = FocalLoss(gamma=2, reduction="none")(logits, target)
    print(f"   per-sample alpha_t = loss / unweighted loss: "
          f"{np.round((per_sample / plain).numpy(), 3).tolist()}")
    print(f"   correct focal, alpha per class (mean): "
          f"{FocalLoss(gamma=2, alpha=alpha)(logits, target):.4f}")
    print(f"   flawed focal, scalar alpha on averaged CE: "
          f"{wrong_focal(logits, target):.4f}")


def load_data():
    X, y = load_digits(n_class=4, return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.choice(np.flatnonzero(ytr == c), n, replace=False)
                           for c, n in zip(range(4), (80, 25, 10, 5), strict=True)])
    return Xtr[keep], ytr[keep], Xte, yte


def compare_estimators():
    Xtr, ytr, Xte, yte = load_data()
    cw = compute_class_weight("balanced", classes=np.arange(4), y=ytr)
    print(f"\n2) CNNClassifier on 4 digit classes, training counts "
          f"{np.bincount(ytr).tolist()}")
    print(f"   balanced class weights (= focal alpha): {np.round(cw, 2).tolist()}")
    print(f"   {'model':<28}{'balanced acc':>13}{'recall per class':>30}")
    configs = {
        "cross-entropy": {},
        "cross-entropy, balanced": {"class_weight": "balanced"},
        "focal gamma=2": {"criterion": "focal"},
        "focal gamma=2, alpha=cw": {"criterion": "focal", "class_weight": "balanced"},
    }
    for name, params in configs.items():
        scores = []
        for seed in range(3):
            clf = CNNClassifier(max_epochs=15, random_state=seed, **params).fit(Xtr, ytr)
            pred = clf.predict(Xte)
            scores.append([balanced_accuracy_score(yte, pred),
                           *recall_score(yte, pred, average=None)])
        mean = np.mean(scores, axis=0)
        print(f"   {name:<28}{mean[0]:>13.3f}{str(np.round(mean[1:], 2).tolist()):>30}")
    print("   (mean over 3 seeds; the test set is balanced)")


if __name__ == "__main__":
    compare_losses()
    compare_estimators()
