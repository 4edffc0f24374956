"""Story 1: weighted multi-target CNN regression, weights from 1 to 1e-100.

A point of interest on a sphere, at angles ``phi`` (azimuth) and ``theta``
(polar), is seen from above: the image shows a bright spot on a ring whose
radius grows with ``sin(theta)``. The CNN regresses ``sin(phi), cos(phi),
sin(theta), cos(theta)``. The view cannot tell ``theta`` from
``pi - theta`` (front or back of the sphere), but the configurations are not
equally likely: each has the probability ``p = 10**(-100 u^2)``,
``u = theta / pi``, between 1 and 1e-100, used as its sample weight. The
error that matters is the p-weighted test error.

Unweighted training averages the front and the back (it predicts
``cos(theta)`` near 0 for every ring); weighted training learns that the
back is improbable. The script also shows that weights that small stay
finite, that rescaling them changes nothing, the effective-sample-size
warning, per-target weights and target standardisation.

Run: ``python examples/story1_importance_weights.py`` (about a minute on 2
free CPU cores).
"""

import time
import warnings

import numpy as np

from skweight import CNNRegressor
from skweight.exceptions import PredictionCollapseWarning
from skweight.weighting import effective_sample_size

TARGETS = ["sin(phi)", "cos(phi)", "sin(theta)", "cos(theta)"]


def make_scenes(n, size=24, seed=0):
    """Noisy uint8 images of a spot at angles (phi, theta), and p(theta)."""
    rng = np.random.default_rng(seed)
    phi = rng.uniform(-np.pi, np.pi, n)
    u = rng.uniform(0, 1, n)
    theta = u * np.pi
    radius = 2 + 8 * np.sin(theta)
    cx = size / 2 + radius * np.cos(phi)
    cy = size / 2 + radius * np.sin(phi)
    rows, cols = np.mgrid[:size, :size]
    d2 = (cols - cx[:, None, None]) ** 2 + (rows - cy[:, None, None]) ** 2
    images = 40 + 180 * np.exp(-d2 / 2) + rng.normal(0, 15, (n, size, size))
    X = np.clip(images, 0, 255).astype(np.uint8)
    y = np.column_stack([np.sin(phi), np.cos(phi), np.sin(theta), np.cos(theta)])
    p = 10.0 ** (-100 * u**2)
    return X, y, p


def weighted_mse(reg, X, y, p):
    """Per-target p-weighted test MSE (weights divided by their max first)."""
    return np.average((reg.predict(X) - y) ** 2, axis=0, weights=p / p.max())


def main():
    X, y, p = make_scenes(800, seed=0)
    Xt, yt, pt = make_scenes(1000, seed=1)
    print(f"weights span {p.min():.1e} .. {p.max():.1e}; effective sample size "
          f"(sum p)^2 / sum p^2 = {effective_sample_size(p):.0f} of {len(p)}")
    # Weighting the targets by their p-weighted variance makes the loss on
    # standardised targets equal the plain (raw-scale) weighted MSE.
    mean = np.average(y, axis=0, weights=p)
    variance = np.average((y - mean) ** 2, axis=0, weights=p)

    rows = {}

    def run(name, sample_weight, **params):
        start = time.perf_counter()
        reg = CNNRegressor(random_state=0, **params)
        with warnings.catch_warnings():
            # cos(theta) barely varies where p is large: with raw targets,
            # "balanced" (1/variance) weights starve the other targets and
            # the collapse warning fires; the table shows the result.
            warnings.simplefilter("ignore", PredictionCollapseWarning)
            reg.fit(X, y, sample_weight=sample_weight)
        rows[name] = weighted_mse(reg, Xt, yt, pt)
        print(f"  fitted {name!r} in {time.perf_counter() - start:.0f} s")
        return reg

    run("unweighted", None)
    weighted = run("weighted by p", p)
    tiny = run("weighted by p * 1e-200", p * 1e-200)
    run("weighted by p**0.1 (tempered)", p**0.1)
    run("weighted, target_weight=variance", p, target_weight=variance)
    run("weighted, raw targets", p, standardize_target=False)
    run("weighted, raw targets, 'balanced'", p, standardize_target=False,
        target_weight="balanced")

    print("\np-weighted test MSE (lower is better)")
    print(f"{'':36s}" + "".join(f"{t:>12s}" for t in TARGETS) + f"{'mean':>10s}")
    for name, err in rows.items():
        print(f"{name:36s}" + "".join(f"{e:12.5f}" for e in err) + f"{err.mean():10.5f}")

    ratio = rows["weighted by p"].mean() / rows["unweighted"].mean()
    print(f"\nweighted / unweighted p-weighted test MSE: {ratio:.3f}")
    gap = np.abs(weighted.predict(Xt) - tiny.predict(Xt)).max()
    print(f"weights * 1e-200: largest change of a prediction {gap:.1e} "
          f"(float64 rounding of the rescaled weights)")
    print(f"finite predictions with weights down to {p.min():.0e}: "
          f"{bool(np.isfinite(weighted.predict(Xt)).all())}")
    print(f"learned target scaling: mean {np.round(weighted.target_mean_, 3)}, "
          f"scale {np.round(weighted.target_scale_, 3)}")

    # The forum recipe for per-target weights, max(mean) / mean of each
    # target, divides by means near 0 (sin and cos of a uniform angle).
    with np.errstate(divide="ignore"):
        recipe = np.abs(mean).max() / np.abs(mean)
    print("'max mean / mean' target weights would be",
          np.array2string(recipe, precision=1), "(driven by means near 0)")

    # Log-uniform probabilities: one sample dominates, and skweight says so.
    log_uniform = 10.0 ** -np.random.default_rng(2).uniform(0, 100, len(y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CNNRegressor(max_epochs=1, random_state=0).fit(X, y, sample_weight=log_uniform)
    ess = [str(w.message) for w in caught if "effective sample size" in str(w.message)]
    message = ess[0][:105] + "..." if ess else "no warning"
    print("\nlog-uniform weights 1..1e-100 ->", message)


if __name__ == "__main__":
    main()
