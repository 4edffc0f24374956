"""Class and sample weights for imbalanced data.

The estimators minimise the weighted mean ``sum_i w_i l_i / sum_i w_i``
with ``w_i = sample_weight_i * class_weight[y_i]`` (per pixel for a
segmenter), folded and normalised once inside ``fit``. This module holds
the weights a user may want to compute, inspect or pass in:

- :func:`compute_class_weight`: scikit-learn's function, with sample
  weights counted as fractional samples;
- :func:`effective_number_weights`: class weights from the effective number
  of samples (Cui et al., 2019);
- :func:`density_weights`: sample weights for imbalanced regression;
- :func:`border_weights`: U-Net border weight maps for touching objects;
- :func:`effective_sample_size`: Kish's effective sample size, which
  ``fit`` checks against :data:`ESS_WARN_FRACTION`.
"""

import numpy as np

from ._border import border_weights
from ._class_weight import class_sums, resolve_class_weight
from ._density import density_weights
from ._validation import (
    check_real,
    check_sample_weight,
    encode_labels,
    label_positions,
    per_element,
)

__all__ = [
    "ESS_WARN_FRACTION",
    "border_weights",
    "compute_class_weight",
    "density_weights",
    "effective_number_weights",
    "effective_sample_size",
]

#: Below this fraction of the number of weighted elements, the effective
#: sample size triggers a warning. With mean-1 weights the variance of a
#: mini-batch loss estimate grows by ``N / ESS``: at 1 %, a batch of 64
#: samples carries less than one sample's worth of information, so training
#: is driven by the few heaviest samples and the gradient noise of the rest.
ESS_WARN_FRACTION = 0.01


def compute_class_weight(class_weight, *, classes, y, sample_weight=None):
    """Estimate class weights for imbalanced data, with sample weights.

    The signature of :func:`sklearn.utils.class_weight.compute_class_weight`
    (``classes`` and ``y`` keyword-only, in its order), extended to sample
    weights and to label masks.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        ``"balanced"`` gives class ``k`` the weight
        ``sum(w) / (n_classes * sum(w[y == k]))``: scikit-learn's formula,
        with counts replaced by summed sample weights so that weighted
        classes are balanced too. A class without weight gets 0. A dict
        maps labels to weights; labels it omits get weight 1. ``None``
        gives every class the weight 1.
    classes : array-like of shape (n_classes,)
        The labels, each once; the weights follow their sorted order.
    y : array-like of shape (n_samples,) or (n_samples, ...)
        Labels, all among ``classes``; with more than one axis (e.g.
        segmentation masks) every element counts.
    sample_weight : None or array-like of shape (n_samples,) or y's shape
        Non-negative weights of any magnitude, counted as fractional
        samples.

    Returns
    -------
    class_weight : ndarray of shape (n_classes,), dtype float64
        ``class_weight[k]`` is the weight of ``np.unique(classes)[k]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.weighting import compute_class_weight
    >>> y = np.array(["cat"] * 6 + ["dog"] * 2)
    >>> compute_class_weight("balanced", classes=np.array(["cat", "dog"]), y=y)
    array([0.66666667, 2.        ])
    >>> compute_class_weight("balanced", classes=np.array(["cat", "dog"]), y=y,
    ...                      sample_weight=[1] * 6 + [3] * 2)
    array([1., 1.])
    """
    classes = np.unique(np.asarray(classes))
    y = np.asarray(y)
    if y.size == 0:
        raise ValueError(f"y must hold at least one label, got shape {y.shape}.")
    codes, unknown = label_positions(y.ravel(), classes)
    if unknown.any():
        raise ValueError(
            f"y has labels {np.unique(y.ravel()[unknown]).tolist()} that are not "
            f"among classes {classes.tolist()}."
        )
    codes = codes.reshape(y.shape)
    mass = check_sample_weight(
        sample_weight, y.shape[0], extra_shape=y.shape[1:] if y.ndim > 1 else None,
        allow_all_zero=True,
    )
    if class_weight is None:
        return np.ones(len(classes))
    return resolve_class_weight(class_weight, codes, classes, mass)


def effective_sample_size(weights, counts=None):
    """Compute Kish's effective sample size ``(sum w)^2 / sum w^2``.

    Parameters
    ----------
    weights : array-like
        Non-negative weights, at least one positive, of any magnitude.
    counts : None or array-like of shape (N,)
        How many times each row is served (each counts that many times).

    Returns
    -------
    ess : float
        Between 1 (one weight dominates) and the number of weights (all
        equal).

    Examples
    --------
    >>> from skweight.weighting import effective_sample_size
    >>> effective_sample_size([1, 1, 1, 1])
    4.0
    >>> round(effective_sample_size([1, 1e-100, 1e-100]), 6)
    1.0
    """
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size else 0.0
    w = w / top if top > 0 else w
    if counts is None:
        return float(w.sum() ** 2 / np.vdot(w, w))
    c = per_element(counts, w.shape)
    return float(np.sum(c * w) ** 2 / np.sum(c * w * w))


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
    counts = class_sums(encoded, len(classes), weight)
    present = counts > 0
    log_effective = _log_one_minus_power(counts[present], beta)
    # Ratios to the smallest effective number: in (0, 1], so no overflow.
    inverse = np.exp(log_effective.min() - log_effective)
    weights = np.zeros(len(classes))
    weights[present] = present.sum() * inverse / inverse.sum()
    return dict(zip(classes.tolist(), weights.tolist(), strict=True))
