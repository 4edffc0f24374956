"""Input validation and aggregation shared by the mask metrics.

:func:`validate_batch` turns the caller's masks, labels and weights into a
:class:`Batch`; :func:`aggregate` reduces per-image, per-class values to the
result. Overlap and surface metrics differ only in what they compute in
between.
"""

import numbers
from typing import NamedTuple

import numpy as np

from .._validation import (
    check_ignore_index,
    check_sample_weight,
    sample_weight_shape_message,
)


class Batch(NamedTuple):
    """Validated inputs shared by all metrics."""

    y_true: np.ndarray  # (N, *spatial) int64
    y_pred: np.ndarray  # (N, *spatial) int64
    valid: np.ndarray | None  # (N, *spatial) bool, None when nothing is ignored
    labels: np.ndarray  # (K,) int64, in the caller's order
    image_weights: np.ndarray  # (N,) float64
    pixel_weights: np.ndarray | None  # (N, *spatial) float64 or None


def _as_label_array(y, name):
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        # Predictions are often stored as floats (e.g. after a framework
        # conversion); accept them as long as they hold whole numbers, but
        # refuse probabilities or logits, which would be silently truncated.
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinite values.")
        if np.any(y != np.round(y)):
            raise ValueError(
                f"{name} must contain integer class labels; got non-integer "
                "floating point values (did you pass probabilities instead of "
                "predicted labels?)."
            )
        return y.astype(np.int64)
    raise ValueError(
        f"{name} must contain integer class labels; got an array of dtype {y.dtype}."
    )


def _check_integer(value, name):
    # Not skweight._validation.check_int: that raises ValueError for a value
    # of the wrong type, and the metrics have always raised TypeError here.
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Integral
    ):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    return int(value)


def _check_label_arrays(y_true, y_pred):
    """Convert both masks to ``(N, *spatial)`` int64 arrays."""
    y_true = _as_label_array(y_true, "y_true")
    y_pred = _as_label_array(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "y_true and y_pred must have the same shape; got y_true.shape="
            f"{y_true.shape} and y_pred.shape={y_pred.shape}."
        )
    if not 1 <= y_true.ndim <= 4:
        raise ValueError(
            "Expected label masks of shape (H, W) or (N, *spatial) with 1 to 3 "
            f"spatial dimensions; got an array with shape {y_true.shape}."
        )
    if y_true.size == 0:
        raise ValueError(f"y_true and y_pred are empty (shape {y_true.shape}).")
    # A 1-D array is a single profile and a 2-D array a single image; only
    # from three dimensions on is the leading axis a batch axis.
    if y_true.ndim <= 2:
        y_true, y_pred = y_true[np.newaxis], y_pred[np.newaxis]
    return y_true, y_pred


def _check_sample_weight(sample_weight, input_shape, batch_shape,
                         allow_pixel_weights):
    """Split ``sample_weight`` into per-image and per-pixel weights.

    The shape, finiteness and sign rules are the package's
    (:func:`skweight._validation.check_sample_weight`); what is specific to
    the metrics is that distance metrics take no per-pixel weights and that
    per-pixel weights may all be 0 (nothing is scored) while image weights
    may not (the mean over images would be 0/0).
    """
    n_images, spatial_shape = batch_shape[0], batch_shape[1:]
    if sample_weight is None:
        return np.ones(n_images), None
    shape = tuple(np.shape(sample_weight))
    if shape == tuple(input_shape) and len(input_shape) < len(batch_shape) and (
        shape != (n_images,)
    ):
        # A single mask given without its batch axis may come with per-pixel
        # weights of the same shape.
        sample_weight = np.reshape(sample_weight, batch_shape)
        shape = batch_shape
    if not allow_pixel_weights and len(shape) > 1:
        raise ValueError(
            sample_weight_shape_message("sample_weight", shape, n_images, unit="image")
            + " Per-pixel weights are not accepted: a distance between boundaries"
            " is not a sum over pixels that weights could enter."
        )
    weights = check_sample_weight(
        sample_weight, n_images,
        extra_shape=spatial_shape if allow_pixel_weights else None,
        unit="image", element="pixel", allow_all_zero=len(shape) > 1,
    )
    if weights.ndim > 1:
        # A per-pixel weight already says how much each pixel counts; images
        # are then averaged with equal weight.
        return np.ones(n_images), weights.reshape(n_images, -1)
    return weights, None


def _check_labels(labels, y_true, y_pred, scored, include_background, background,
                  ignore_index):
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 0:
            labels = labels.reshape(1)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError("labels must be a non-empty 1-D sequence of integers.")
        labels = _as_label_array(labels, "labels")
        if np.unique(labels).size != labels.size:
            raise ValueError(f"labels contains duplicates: {labels.tolist()}.")
        if ignore_index is not None and np.any(labels == ignore_index):
            raise ValueError(
                f"labels contains ignore_index={ignore_index}, whose pixels are "
                "excluded from scoring."
            )
        return labels
    # Only pixels that are scored can contribute classes: a class predicted
    # solely on ignored pixels would otherwise be reported as "absent in both"
    # and inflate the average.
    if scored is None:
        present = np.union1d(np.unique(y_true), np.unique(y_pred))
    else:
        present = np.union1d(np.unique(y_true[scored]), np.unique(y_pred[scored]))
    excluded = [] if include_background else [background]
    if ignore_index is not None:
        excluded.append(ignore_index)
    return np.setdiff1d(present, excluded).astype(np.int64)


def validate_batch(y_true, y_pred, *, labels, average, allowed_averages,
                   include_background, background, ignore_index, sample_weight,
                   allow_pixel_weights):
    """Check a metric's masks and options; return them as a :class:`Batch`."""
    if average not in allowed_averages:
        raise ValueError(
            f"average must be one of {allowed_averages}; got {average!r}."
        )
    background = _check_integer(background, "background")
    ignore_index = check_ignore_index(ignore_index)
    input_shape = np.shape(y_true)
    y_true, y_pred = _check_label_arrays(y_true, y_pred)
    image_weights, pixel_weights = _check_sample_weight(
        sample_weight, input_shape, y_true.shape, allow_pixel_weights
    )
    valid = None if ignore_index is None else y_true != ignore_index
    scored = valid
    if pixel_weights is not None:
        # Zero-weight pixels are not scored either, so they must not add
        # classes, just as ignored pixels do not.
        scored = pixel_weights.reshape(y_true.shape) > 0
        if valid is not None:
            scored &= valid
    labels = _check_labels(
        labels, y_true, y_pred, scored, include_background, background, ignore_index
    )
    return Batch(y_true, y_pred, valid, labels, image_weights, pixel_weights)


# ---------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------


def _weighted_nanmean(values, weights, axis):
    """Weighted mean that skips NaN entries; NaN where nothing is left.

    Written out rather than using ``np.nanmean`` so that all-NaN slices give
    NaN silently instead of a RuntimeWarning, and so that weights apply.
    """
    present = ~np.isnan(values)
    weights = np.broadcast_to(weights, values.shape) * present
    total = weights.sum(axis=axis)
    weighted = np.where(present, values, 0.0) * weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted.sum(axis=axis) / total, np.nan)


def mean_over_classes(per_class, no_label_value):
    """Unweighted mean over classes, skipping NaN; ``no_label_value`` if none."""
    if per_class.size == 0:
        return float(no_label_value)
    return float(_weighted_nanmean(per_class, 1.0, axis=0))


def aggregate(per_image_class, image_weights, average, no_label_value):
    """Reduce ``(N, K)`` scores: images first (weighted), then classes."""
    per_class = _weighted_nanmean(
        per_image_class, image_weights[:, np.newaxis], axis=0
    )
    if average is None:
        return per_class
    return mean_over_classes(per_class, no_label_value)
