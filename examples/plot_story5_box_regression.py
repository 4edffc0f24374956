"""
Box regression that collapses to the mean
=========================================

Predict the (x, y) centre of a small bright box in a noisy uint8 image.
The untuned default ``CNNRegressor()`` is compared with a linear baseline
(ridge regression on the flattened pixels) and with the causes discussed
in the forum thread: unscaled inputs, unscaled targets and too high a
learning rate. Together they make the network predict the mean, and
:class:`~skweight.exceptions.PredictionCollapseWarning` says so.

To run in about 30 s on 2 CPU cores, the gallery version uses 600
training images of 24 x 24 pixels (the full experiment: 1000 images of
32 x 32 pixels, with the same conclusions), and holds out a fifth of them
as a validation set to draw the loss curves.
"""

# sphinx_gallery_thumbnail_number = 3

# %%
# The data
# --------

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import RidgeCV

from skweight import CNNRegressor
from skweight.display import TrainingCurveDisplay
from skweight.exceptions import PredictionCollapseWarning


def make_boxes(n, size=32, seed=0):
    """Noisy uint8 images with one bright square; y is its (x, y) centre."""
    rng = np.random.default_rng(seed)
    images = rng.normal(60, 30, size=(n, size, size))
    side = rng.integers(3, 7, size=n)
    left = rng.integers(0, size - side + 1)
    top = rng.integers(0, size - side + 1)
    for i in range(n):
        images[i, top[i]:top[i] + side[i], left[i]:left[i] + side[i]] += 120
    X = np.clip(images, 0, 255).astype(np.uint8)
    y = np.stack([left + (side - 1) / 2, top + (side - 1) / 2], axis=1)
    return X, y


X, y = make_boxes(600, size=24, seed=0)
Xt, yt = make_boxes(400, size=24, seed=1)

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), layout="constrained")
for ax, image, centre in zip(axes, X, y, strict=False):
    ax.imshow(image, cmap="gray")
    ax.plot(*centre, marker="+", color="tab:red", markersize=12)
    ax.set_title(f"centre ({centre[0]:.1f}, {centre[1]:.1f})")
    ax.set_axis_off()

# %%
# Four networks and a linear baseline
# -----------------------------------

raw, raw_t = X.astype(np.float32), Xt.astype(np.float32)  # 0..255, unscaled

flat, flat_t = X.reshape(len(X), -1) / 255, Xt.reshape(len(Xt), -1) / 255
ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(flat, y)
results = [("linear baseline: RidgeCV on pixels / 255", ridge.score(flat_t, yt), 0.0, "")]
predictions = {results[0][0]: ridge.predict(flat_t)}
models = {}

cases = [
    ("CNNRegressor() defaults (uint8 -> [0, 1])", {}, X, Xt),
    ("unscaled float inputs (0..255)", {}, raw, raw_t),
    ("standardize_target=False", {"standardize_target": False}, X, Xt),
    ("unscaled inputs, raw targets, lr=1e-2",
     {"standardize_target": False, "lr": 1e-2}, raw, raw_t),
]
for name, params, X_fit, X_test in cases:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PredictionCollapseWarning)
        reg = CNNRegressor(train_split=0.2, random_state=0, **params).fit(X_fit, y)
    seconds = time.perf_counter() - start
    collapsed = any(issubclass(w.category, PredictionCollapseWarning) for w in caught)
    flag = "PredictionCollapseWarning" if collapsed else ""
    results.append((name, reg.score(X_test, yt), seconds, flag))
    predictions[name] = reg.predict(X_test)
    models[name] = reg

print(f"{'model':48s}{'test R^2':>10s}{'fit s':>8s}  warning")
for name, r2, seconds, flag in results:
    print(f"{name:48s}{r2:10.4f}{seconds:8.1f}  {flag}")

# %%
# Training and validation loss
# ----------------------------
# :class:`~skweight.display.TrainingCurveDisplay` reads each fit's
# ``history_``. The losses are on the scale the network sees: standardised
# targets for the first two, raw pixel coordinates for the others (hence
# the log scale). The collapsed fit's loss drops from its huge start and
# then stalls at the targets' variance after a few epochs.

fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), layout="constrained")
for ax, (name, reg) in zip(axes, models.items(), strict=True):
    TrainingCurveDisplay.from_estimator(reg, ax=ax, log_scale=True)
    ax.set_title(name, fontsize="small")

# %%
# Predicted against true centres
# ------------------------------
# The x coordinate of each test box. The default network follows the
# diagonal; the collapsed one predicts about the mean, a horizontal line.

fig, axes = plt.subplots(1, 5, figsize=(15, 3.4), layout="constrained", sharex=True,
                         sharey=True)
for ax, (name, r2, _, flag) in zip(axes, results, strict=True):
    ax.scatter(yt[:, 0], predictions[name][:, 0], s=4, alpha=0.6)
    ax.plot([0, 23], [0, 23], color="gray", linestyle="--", linewidth=1)
    ax.set_title(f"{name}\nR^2 = {r2:.3f}" + (" (collapsed)" if flag else ""),
                 fontsize="small")
    ax.set_xlabel("true x")
axes[0].set_ylabel("predicted x")
plt.show()
