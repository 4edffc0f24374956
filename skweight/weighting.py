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
from ._validation import check_real, check_sample_weight, encode_labels

__all__ = [
    "ESS_WARN_FRACTION",
    "border_weights",
    "check_sample_weight",
    "compute_class_weight",
    "density_weights",
    "effective_number_weights",
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
    """Divide weights by their maximum.

    The same ratios, with no overflow in sums and no need for their unit
    (1e-300 and 1e300 scales alike).
    """
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
    """Return the weight of every element the loss sees, or None if all are 1.

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


#: Below this ``|n * log(beta)|``, ``log(1 - beta**n)`` is taken from its
#: series, ``log(n * -log(beta)) + n * log(beta) / 2`` (error below 1e-17),
#: which stays finite where the product ``n * log(beta)`` would underflow.
_SERIES_BELOW = 1e-8


def _log_one_minus_power(counts, beta):
    """``log(1 - beta ** n)`` for positive (possibly fractional) counts ``n``.

    ``1 - beta**n`` written out cancels when ``beta**n`` is close to 1 (beta
    near 1, small n): ``-expm1(n * log(beta))`` keeps full precision.
    """
    if beta == 0:
        return np.zeros_like(counts)  # beta**n = 0 for every n > 0
    log_beta = np.log(beta)
    x = counts * log_beta
    small = -x < _SERIES_BELOW
    out = np.empty_like(counts)
    out[~small] = np.log(-np.expm1(x[~small]))
    out[small] = np.log(counts[small]) + np.log(-log_beta) + x[small] / 2
    return out


def _check_beta(beta):
    try:
        value = check_real(beta, "beta", low=0.0, high=1.0)
    except ValueError:
        value = 1.0
    if value == 1.0:
        raise ValueError(
            f"beta must be a finite real number in [0, 1); got {beta!r}. beta = 0 "
            f"gives equal class weights, beta close to 1 (e.g. 0.999) approaches "
            f"inverse class frequency."
        )
    return value


def effective_number_weights(y, beta=0.999, sample_weight=None):
    """Class weights from the effective number of samples (Cui et al., 2019).

    Each class is weighted by the inverse of its effective number of samples
    ``E_c = (1 - beta**n_c) / (1 - beta)``, a count that saturates: every new
    sample of a class adds less information (it overlaps more with the ones
    already there), and ``E_c`` never exceeds ``1 / (1 - beta)``.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, ...)
        Labels, of any type NumPy can sort (integers, strings, ...). With
        more than one axis (e.g. segmentation masks) every element counts
        as a sample.
    beta : float, default=0.999
        In [0, 1). ``beta=0`` gives every class the weight 1; as beta
        approaches 1 the weights approach inverse class frequency. Cui et
        al. try 0.9, 0.99, 0.999 and 0.9999.
    sample_weight : array-like of shape (n_samples,) or y's shape, default=None
        Non-negative weights, counted as fractional samples, see Notes.

    Returns
    -------
    class_weight : dict
        ``{label: weight}`` for every label in ``y`` (keys as
        ``np.unique(y).tolist()`` gives them, Python scalars or strings),
        summing to the number of classes of positive count, as Cui et al.
        normalise. A class whose samples all have weight 0 gets weight 0.
        It can be passed as ``class_weight=`` to the estimators.

    Notes
    -----
    With ``n_c`` samples of class ``c`` and ``C`` classes of positive
    count::

        w_c = C * (1 / E_c) / sum_k (1 / E_k),   E_c = (1 - beta**n_c) / (1 - beta)

    With ``sample_weight``, ``n_c`` is the sum of the weights of class
    ``c``'s samples (per-sample weights count once per element of a mask):
    a weight of 2 counts as two samples and an integer weight ``k`` is the
    same as repeating the sample ``k`` times. Unlike the estimators'
    training weights, these are not rescaled: ``E_c`` depends on the
    absolute count, so multiplying all weights by 10 changes the result.

    ``1 - beta**n_c`` is computed as ``-expm1(n_c * log(beta))``, which
    keeps full precision when ``beta**n_c`` is close to 1, and the
    normalisation works with ratios of ``E_c``, so counts of any magnitude
    (1e-100 to 1e300) give finite weights.

    References
    ----------
    Y. Cui, M. Jia, T.-Y. Lin, Y. Song and S. Belongie, "Class-Balanced Loss
    Based on Effective Number of Samples", CVPR 2019.

    Examples
    --------
    >>> from skweight.weighting import effective_number_weights
    >>> y = ["cat"] * 90 + ["dog"] * 10
    >>> weights = effective_number_weights(y, beta=0.99)
    >>> {label: round(w, 4) for label, w in weights.items()}
    {'cat': 0.2768, 'dog': 1.7232}
    >>> effective_number_weights(y, beta=0.0)
    {'cat': 1.0, 'dog': 1.0}
    """
    beta = _check_beta(beta)
    y = np.asarray(y)
    if y.ndim == 0 or y.size == 0:
        raise ValueError(
            f"y must be a non-empty array of labels of shape (n_samples,) or "
            f"(n_samples, ...); got shape {y.shape}."
        )
    weight = check_sample_weight(
        sample_weight, y.shape[0], extra_shape=y.shape[1:] if y.ndim > 1 else None
    )
    classes, encoded = encode_labels(y)
    if weight is not None:
        weight = _per_element(weight, y.shape).ravel()
    counts = np.bincount(encoded.ravel(), weights=weight, minlength=len(classes))
    counts = counts.astype(np.float64)
    present = counts > 0
    log_effective = _log_one_minus_power(counts[present], beta)
    # Ratios to the smallest effective number: in (0, 1], so no overflow.
    inverse = np.exp(log_effective.min() - log_effective)
    weights = np.zeros(len(classes))
    weights[present] = present.sum() * inverse / inverse.sum()
    return dict(zip(classes.tolist(), weights.tolist(), strict=True))
