"""Calibration of predicted probabilities: reliability curve and ECE.

Both functions bin top-label confidences the same way (:func:`_binned`);
:func:`expected_calibration_error` reduces the bins of
:func:`reliability_curve` to one number, so the two always agree, and
:class:`skweight.display.ReliabilityDisplay` draws exactly these numbers.
"""

import numpy as np

from .._validation import check_int, check_sample_weight, label_positions
from ._docs import fill_calibration_doc

_STRATEGIES = ("uniform", "quantile")

# Relative slack when comparing cumulative weights with quantile targets.
# Without it, rounding decides ties that are exact in real numbers (0.1 * 300
# is 30.000000000000004), and the edges would change when all weights are
# scaled, or when integer weights replace repeated rows.
_QUANTILE_SLACK = 1e-9


def _check_proba(y_prob):
    """Probabilities as a new float64 (N, K) array; 1-D means P(second class)."""
    try:
        proba = np.array(y_prob, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"y_prob must be an array of probabilities; got a {type(y_prob).__name__} "
            f"of values that are not numbers ({exc})."
        ) from None
    if proba.ndim == 1:
        proba = np.column_stack([1 - proba, proba])
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(
            f"y_prob must have shape (N, n_classes) with n_classes >= 2, or (N,) for "
            f"the positive class of a binary problem, got shape {proba.shape}."
        )
    if proba.shape[0] == 0:
        raise ValueError("y_prob is empty: there are no predictions to bin.")
    if not np.all(np.isfinite(proba)):
        raise ValueError("y_prob must hold probabilities in [0, 1]; it contains NaN or "
                         "infinity.")
    if proba.min() < 0 or proba.max() > 1:
        raise ValueError(
            f"y_prob must hold probabilities in [0, 1]; got values from "
            f"{proba.min():.4g} to {proba.max():.4g}."
        )
    sums = proba.sum(axis=1)
    if not np.allclose(sums, 1, rtol=0, atol=1e-3):
        worst = sums[np.argmax(np.abs(sums - 1))]
        raise ValueError(
            f"The rows of y_prob must sum to 1 (probabilities over the classes); one "
            f"sums to {worst:.4g}. Pass predict_proba's output, not logits."
        )
    return proba


def _encode_true(y_true, classes, n_classes):
    """Column of ``y_prob`` that holds each true label's probability."""
    hint = "" if classes is not None else (
        " (pass classes= when the labels are not 0..n_classes-1)")
    classes = np.arange(n_classes) if classes is None else np.asarray(classes)
    if classes.ndim != 1 or len(classes) != n_classes:
        raise ValueError(
            f"classes must list the {n_classes} labels of y_prob's columns, got "
            f"{classes.tolist()}."
        )
    # label_positions searches sorted classes; the columns may be in any order.
    order = np.argsort(classes, kind="stable")
    pos, unknown = label_positions(y_true, classes[order])
    if np.any(unknown):
        raise ValueError(
            f"y_true contains labels that are not classes of y_prob: "
            f"{np.unique(y_true[unknown])[:10].tolist()}; classes are "
            f"{classes.tolist()}{hint}."
        )
    return order[pos]


def _check_strategy(strategy):
    if not isinstance(strategy, str) or strategy not in _STRATEGIES:
        raise ValueError(
            f'strategy must be "uniform" or "quantile"; got {strategy!r}.'
        )
    return strategy


def _top_label(y_true, y_prob, classes, sample_weight):
    """Each prediction's confidence, whether it is right (0/1), and its weight."""
    proba = _check_proba(y_prob)
    n_samples, n_classes = proba.shape
    y_true = np.asarray(y_true).ravel()
    if len(y_true) != n_samples:
        raise ValueError(
            f"y_true has {len(y_true)} labels but y_prob has {n_samples} rows."
        )
    true_column = _encode_true(y_true, classes, n_classes)
    weight = check_sample_weight(sample_weight, n_samples)
    weight = np.ones(n_samples) if weight is None else weight
    correct = (proba.argmax(axis=1) == true_column).astype(np.float64)
    return proba.max(axis=1), correct, weight


def _quantile_edges(confidence, weight, n_bins):
    """Bin edges at the weighted inverted-CDF quantiles of ``confidence``."""
    order = np.argsort(confidence, kind="stable")
    cumulative = np.cumsum(weight[order])
    total = cumulative[-1]
    targets = (np.arange(1, n_bins) / n_bins - _QUANTILE_SLACK) * total
    # The first prediction whose cumulative weight reaches a target; one of
    # weight 0 never comes first, since the one before it reaches as far.
    inner = confidence[order][np.searchsorted(cumulative, targets, side="left")]
    return np.concatenate([[0.0], inner, [1.0]])


def _binned(confidence, correct, weight, n_bins, strategy):
    """Per-bin accuracy, mean confidence and weight, and the bin edges."""
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = _quantile_edges(confidence, weight, n_bins)
    # side="left" makes bins (lo, hi]: a confidence on an edge joins the bin
    # below it, and 0 falls into the first bin.
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    bin_weight = np.bincount(bins, weights=weight, minlength=n_bins)
    hits = np.bincount(bins, weights=weight * correct, minlength=n_bins)
    sure = np.bincount(bins, weights=weight * confidence, minlength=n_bins)
    filled = bin_weight > 0
    accuracy = np.full(n_bins, np.nan)
    mean_confidence = np.full(n_bins, np.nan)
    accuracy[filled] = hits[filled] / bin_weight[filled]
    mean_confidence[filled] = sure[filled] / bin_weight[filled]
    return accuracy, mean_confidence, bin_weight, edges


@fill_calibration_doc
def reliability_curve(y_true, y_prob, *, n_bins=10, strategy="uniform",
                      sample_weight=None, classes=None):
    """Compute the top-label reliability curve of predicted probabilities.

    The predictions are grouped into bins by their confidence, the largest
    probability of their row. For each bin the curve gives the (weighted)
    fraction of right predictions and their mean confidence; a calibrated
    model has the two equal in every bin. This is the curve of a reliability
    diagram [1]_ for any number of classes.

    Parameters
    ----------
    %(calibration_parameters)s

    Returns
    -------
    accuracy : ndarray of shape (n_bins,)
        Weighted fraction of right predictions in each bin; NaN for a bin
        without weight.

    confidence : ndarray of shape (n_bins,)
        Weighted mean confidence in each bin; NaN for a bin without weight.

    bin_weight : ndarray of shape (n_bins,)
        Sum of the weights in each bin (the number of predictions when
        unweighted).

    bin_edges : ndarray of shape (n_bins + 1,)
        Edges of the bins, from 0 to 1.

    See Also
    --------
    expected_calibration_error : The mean gap between the two curves.
    skweight.display.ReliabilityDisplay : Draws this curve.
    sklearn.calibration.calibration_curve : Reliability of the positive
        class of a binary problem; it leaves out empty bins.

    Notes
    -----
    %(calibration_bins)s

    Unlike :func:`sklearn.calibration.calibration_curve`, every bin has an
    entry, so that the entries line up with ``bin_edges``; empty bins have
    ``bin_weight`` 0 and NaN accuracy and confidence.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration
       of Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.metrics import reliability_curve
    >>> y_true = np.array([0, 1, 1, 2])
    >>> y_prob = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1],
    ...                    [0.7, 0.2, 0.1], [0.15, 0.15, 0.7]])
    >>> accuracy, confidence, bin_weight, bin_edges = reliability_curve(
    ...     y_true, y_prob, n_bins=5)
    >>> bin_weight
    array([0., 0., 1., 2., 1.])
    >>> accuracy
    array([nan, nan, 1. , 0.5, 1. ])
    >>> confidence
    array([nan, nan, 0.6, 0.7, 0.9])
    """
    n_bins = check_int(n_bins, "n_bins", low=1)
    strategy = _check_strategy(strategy)
    confidence, correct, weight = _top_label(y_true, y_prob, classes, sample_weight)
    return _binned(confidence, correct, weight, n_bins, strategy)


@fill_calibration_doc
def expected_calibration_error(y_true, y_prob, *, n_bins=10, strategy="uniform",
                               sample_weight=None, classes=None):
    """Compute the top-label expected calibration error (ECE).

    The predictions are binned by their confidence as in
    :func:`reliability_curve`. The ECE is the mean absolute gap between
    accuracy and confidence over the bins, each bin weighted by its share
    of the total weight [1]_::

        ECE = sum_b (W_b / W) * |acc_b - conf_b|

    with ``W_b``, ``acc_b`` and ``conf_b`` the weight, accuracy and mean
    confidence of bin ``b`` (see Notes) and ``W`` the total weight. Empty
    bins add nothing. It lies in [0, 1], lower is better, and it is 0 when
    accuracy equals confidence in every bin.

    Parameters
    ----------
    %(calibration_parameters)s

    Returns
    -------
    ece : float
        The expected calibration error.

    See Also
    --------
    reliability_curve : The per-bin accuracy and confidence.
    skweight.display.ReliabilityDisplay : The reliability diagram, with the
        ECE in its legend.

    Notes
    -----
    %(calibration_bins)s

    The ECE is an estimate that depends on the binning: more bins or fewer
    predictions tend to make it larger, so compare models with the same
    ``n_bins`` and ``strategy`` on the same data.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration
       of Modern Neural Networks", ICML 2017.

    Examples
    --------
    Four predictions in bins of width 0.2, three of them filled: confidence
    0.6 (right), 0.7 (wrong) and 0.7 (right), 0.9 (right).

    >>> import numpy as np
    >>> from skweight.metrics import expected_calibration_error
    >>> y_true = np.array([0, 1, 1, 2])
    >>> y_prob = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1],
    ...                    [0.7, 0.2, 0.1], [0.15, 0.15, 0.7]])
    >>> # (1 * |1 - 0.6| + 2 * |0.5 - 0.7| + 1 * |1 - 0.9|) / 4
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=5), 6)
    0.225
    >>> # the wrong prediction counted twice: the middle bin's accuracy is 1/3
    >>> w = [1, 1, 2, 1]
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=5, sample_weight=w), 6)
    0.32

    Two bins of equal weight, split at confidence 0.7: the first holds
    three predictions, two of them right, of mean confidence 2/3.

    >>> round(expected_calibration_error(y_true, y_prob, n_bins=2,
    ...                                  strategy="quantile"), 6)  # 0.1 / 4
    0.025

    A binary problem, given the probability of the positive class: the
    confidences ``max(p, 1 - p)`` are 0.9, 0.7, 0.6 (wrong) and 0.75.

    >>> expected_calibration_error([0, 1, 1, 0], [0.1, 0.7, 0.4, 0.25], n_bins=5)
    0.3125
    """
    accuracy, confidence, bin_weight, _ = reliability_curve(
        y_true, y_prob, n_bins=n_bins, strategy=strategy,
        sample_weight=sample_weight, classes=classes,
    )
    filled = bin_weight > 0
    gaps = np.abs(accuracy[filled] - confidence[filled])
    return float(np.sum(bin_weight[filled] * gaps) / bin_weight.sum())
