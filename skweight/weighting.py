"""Class and sample weights: computation, folding and normalisation.

The estimators minimise the weighted mean ``sum_i w_i l_i / sum_i w_i`` with
``w_i = sample_weight_i * class_weight[y_i]`` (per pixel for a segmenter).
:func:`fold_weights` builds these weights, once, from the rows the network
is trained on (after the validation split and any resampling), and
:func:`normalize_weights` scales them once, in float64, to mean 1: a
mini-batch mean of ``w_i l_i`` is then an unbiased estimate of the
objective, and weights spanning 1e-100..1 survive the cast to float32 (the
largest becomes O(1) instead of the smallest underflowing to 0 first).
"""

import numbers
import warnings

import numpy as np

from ._border import border_weights
from ._density import density_weights
from ._validation import check_sample_weight

__all__ = [
    "ESS_WARN_FRACTION",
    "border_weights",
    "check_sample_weight",
    "compute_class_weight",
    "density_weights",
    "effective_sample_size",
    "fold_weights",
    "normalize_weights",
    "warn_if_small_ess",
]

#: Below this fraction of the number of weighted elements, the effective
#: sample size triggers a warning. With mean-1 weights the variance of a
#: mini-batch loss estimate grows by ``N / ESS``: at 1 %, a batch of 64
#: samples carries less than one sample's worth of information, so training
#: is driven by the few heaviest samples and the gradient noise of the rest.
ESS_WARN_FRACTION = 0.01


def _per_element(weights, shape):
    """Per-sample weights ``(N,)`` broadcast over the trailing axes of ``shape``."""
    w = np.asarray(weights, dtype=np.float64)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


def _scaled_to_max(weights):
    """Weights divided by their maximum: the same ratios, with no overflow in
    sums and no need for their unit (1e-300 and 1e300 scales alike)."""
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size else 0.0
    return w / top if top > 0 else w


def compute_class_weight(class_weight, y, classes, sample_weight=None):
    """Per-class weights for encoded labels.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        ``"balanced"`` gives class ``k`` the weight
        ``sum(w) / (n_classes * sum(w[y == k]))``: the formula of
        :func:`sklearn.utils.class_weight.compute_class_weight`, with counts
        replaced by summed sample weights so that weighted classes are
        balanced too. A class without weight gets 0. A dict maps original
        labels to weights; labels it omits get weight 1.
    y : ndarray of int
        Encoded labels in ``0..len(classes) - 1`` (any shape; e.g. masks).
    classes : ndarray
        The original labels, ``classes[k]`` is encoded as ``k``.
    sample_weight : None or ndarray
        Non-negative weights of shape ``(N,)`` or ``y``'s shape, of any
        magnitude.

    Returns
    -------
    weights : None or ndarray of shape (n_classes,), dtype float64
    """
    if class_weight is None:
        return None
    n_classes = len(classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{label: "
                f"weight}}, got the string {class_weight!r}."
            )
        y = np.asarray(y)
        if sample_weight is None:
            counts = np.bincount(y.ravel(), minlength=n_classes).astype(np.float64)
        else:
            # The formula is invariant to the weights' scale; dividing by the
            # maximum first keeps the sums finite for weights near 1e308.
            sw = _per_element(_scaled_to_max(sample_weight), y.shape)
            counts = np.bincount(y.ravel(), weights=sw.ravel(), minlength=n_classes)
        present = counts > 0
        weights = np.zeros(n_classes)
        weights[present] = counts.sum() / (n_classes * counts[present])
        return weights
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
            f"got {type(class_weight).__name__}: {class_weight!r}."
        )
    weights = np.ones(n_classes, dtype=np.float64)
    index = {_label_key(c): k for k, c in enumerate(classes)}
    unknown = [label for label in class_weight if _label_key(label) not in index]
    if unknown:
        raise ValueError(
            f"class_weight has labels {unknown!r} that are not in the classes "
            f"found in y: {list(classes)!r}."
        )
    for label, value in class_weight.items():
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, (bool, np.bool_))
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"class_weight[{label!r}] must be a finite number >= 0, got "
                f"{value!r}."
            )
        weights[index[_label_key(label)]] = float(value)
    if not np.any(weights > 0):
        raise ValueError("class_weight gives every class a weight of 0.")
    return weights


def _label_key(label):
    # NumPy scalars and Python scalars of equal value must match (np.int64(3)
    # vs 3, np.str_('a') vs 'a').
    return label.item() if isinstance(label, np.generic) else label


def fold_weights(y, sample_weight=None, class_weight=None, mask=None):
    """The weight of every element the loss sees, or None if all are 1.

    ``w = sample_weight * class_weight[y] * mask``, each factor optional.
    This is the one place where the estimators combine weights; it runs
    once, on the rows a network is trained (or validated) on.

    Parameters
    ----------
    y : ndarray of int or None
        Encoded labels ``(N,)`` or ``(N, *spatial)``; only needed with
        ``class_weight``, and its shape with ``mask``.
    sample_weight : None or ndarray
        ``(N,)`` or ``y``'s shape, non-negative.
    class_weight : None or ndarray of shape (n_classes,)
    mask : None or ndarray of bool
        ``y``'s shape; False marks elements that neither teach nor count
        (e.g. ``ignore_index`` pixels).

    Returns
    -------
    weights : None or ndarray of dtype float64
        ``(N,)`` when only per-sample weights are given, else ``y``'s shape.
        Every factor is divided by its maximum first, so that the product
        neither overflows nor underflows for factors of any scale.
    """
    if class_weight is None and mask is None:
        return None if sample_weight is None else _scaled_to_max(sample_weight)
    shape = np.shape(y) if y is not None else np.shape(mask)
    w = np.ones(shape) if sample_weight is None else np.array(
        _per_element(_scaled_to_max(sample_weight), shape)
    )
    if class_weight is not None:
        w *= _scaled_to_max(class_weight)[y]
    if mask is not None:
        w *= mask
    return w


def _served(weights, counts):
    """Weights and how often each element is served: ``counts`` per row."""
    if counts is None:
        return weights, None
    return weights, _per_element(counts, np.shape(weights))


def normalize_weights(weights, counts=None):
    """Scale weights to mean 1, in float64, without underflow.

    Parameters
    ----------
    weights : ndarray
        Non-negative weights, at least one positive.
    counts : None or ndarray of shape (N,)
        How many times each row is served per epoch (a sampler's output);
        the mean is then taken over the rows served.

    Returns
    -------
    weights : ndarray of dtype float64, mean 1
    """
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size else 0.0
    if not top > 0:
        raise ValueError("The training weights are all zero: nothing to learn from.")
    # Dividing by the maximum first keeps the sum finite and away from the
    # subnormal range whatever the original scale (1e-300 or 1e300).
    w = w / top
    w, c = _served(w, counts)
    mean = w.mean() if c is None else np.sum(c * w) / np.sum(c)
    return w / mean


def effective_sample_size(weights, counts=None):
    """Kish's effective sample size ``(sum w)^2 / sum w^2``.

    Parameters
    ----------
    weights : ndarray
    counts : None or ndarray of shape (N,)
        How many times each row is served (each counts that many times).

    Returns
    -------
    ess : float
    """
    w = _scaled_to_max(np.asarray(weights, dtype=np.float64))
    w, c = _served(w, counts)
    if c is None:
        return float(w.sum() ** 2 / np.vdot(w, w))
    return float(np.sum(c * w) ** 2 / np.sum(c * w * w))


def warn_if_small_ess(weights, what="samples", counts=None):
    """Warn when the effective sample size is below ``ESS_WARN_FRACTION * N``.

    Parameters
    ----------
    weights : ndarray
    what : str
        What the weights are attached to, for the message.
    counts : None or ndarray of shape (N,)
        How many times each row is served per epoch.

    Returns
    -------
    ess : float
    """
    n = np.size(weights) if counts is None else float(
        np.sum(_per_element(counts, np.shape(weights)))
    )
    ess = effective_sample_size(weights, counts)
    if ess < ESS_WARN_FRACTION * n:
        warnings.warn(
            f"The effective sample size of the training weights, "
            f"(sum w)^2 / sum w^2 = {ess:.3g}, is below "
            f"{ESS_WARN_FRACTION:.0%} of the {round(n)} weighted {what}: a few heavy "
            f"{what} dominate the objective and mini-batch gradients are "
            f"noisy. Consider flattening the weights (e.g. a power < 1 or a "
            f"log transform), larger batches, or more data.",
            UserWarning,
            stacklevel=2,
        )
    return ess
