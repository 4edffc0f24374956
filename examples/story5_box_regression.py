"""Story 5: CNN regression of a box position that collapses to the mean.

Predict the (x, y) centre of a small bright box in a noisy 32x32 uint8 image.
The untuned default ``CNNRegressor()`` is compared with a linear baseline
(ridge regression on the flattened pixels) and with the causes discussed in
the forum thread: unscaled inputs, unscaled targets and too high a learning
rate. Together they make the network predict the mean, and
``PredictionCollapseWarning`` says so.

Run: ``python examples/story5_box_regression.py`` (about a minute on 2 free
CPU cores).
"""

import time
import warnings

import numpy as np
from sklearn.linear_model import RidgeCV

from skweight import CNNRegressor
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


def main():
    X, y = make_boxes(1000, seed=0)
    Xt, yt = make_boxes(500, seed=1)
    raw, raw_t = X.astype(np.float32), Xt.astype(np.float32)  # 0..255, unscaled

    flat, flat_t = X.reshape(len(X), -1) / 255, Xt.reshape(len(Xt), -1) / 255
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(flat, y)
    results = [("linear baseline: RidgeCV on pixels / 255", ridge.score(flat_t, yt), 0.0,
                "")]

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
            reg = CNNRegressor(random_state=0, **params).fit(X_fit, y)
        seconds = time.perf_counter() - start
        collapsed = any(issubclass(w.category, PredictionCollapseWarning)
                        for w in caught)
        flag = "PredictionCollapseWarning" if collapsed else ""
        results.append((name, reg.score(X_test, yt), seconds, flag))

    print(f"{'model':48s}{'test R^2':>10s}{'fit s':>8s}  warning")
    for name, r2, seconds, flag in results:
        print(f"{name:48s}{r2:10.4f}{seconds:8.1f}  {flag}")


if __name__ == "__main__":
    main()
