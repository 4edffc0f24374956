"""Scikit-learn scorers for the mask metrics.

A scorer's name follows scikit-learn's: the metric function's name without a
trailing ``_score``, and ``neg_`` in front where the scorer negates a
distance (lower is better) so that greater is better, as model selection
expects (scikit-learn's ``"neg_mean_squared_error"``). The ready-made scorer
objects are that name plus ``_scorer``; they are built in the package's
``__init__``.
"""

from sklearn.metrics import make_scorer

from ._overlap import dice_score, iou_score
from ._surface import hausdorff_distance, mean_surface_distance, normalized_surface_dice

# name -> (metric, greater_is_better)
_SCORE_FUNCS = {
    "dice": (dice_score, True),
    "iou": (iou_score, True),
    "neg_hausdorff_distance": (hausdorff_distance, False),
    "neg_mean_surface_distance": (mean_surface_distance, False),
    "normalized_surface_dice": (normalized_surface_dice, True),
}


def make_segmentation_scorer(metric, **kwargs):
    """Build a scikit-learn scorer from one of the segmentation metrics.

    Parameters
    ----------
    metric : {"dice", "iou", "neg_hausdorff_distance", \
"neg_mean_surface_distance", "normalized_surface_dice"}
        Metric to wrap, named as scikit-learn names its scorers: the metric
        function's name without ``_score``, and ``neg_`` in front of the two
        distances, whose scorers return the negated distance
        (``greater_is_better=False``) so that larger is better, as model
        selection expects.

    **kwargs
        Keyword arguments of the metric, fixed for every call, e.g.
        ``labels=[1, 2]``, ``percentile=95`` or ``tolerance=2.0``. For the
        two distances, ``empty_value`` defaults to ``"diagonal"``: a
        structure missed in, or hallucinated into, an image is then charged
        the largest possible distance instead of being skipped, and the
        score is never NaN.

    Returns
    -------
    scorer : callable
        Object from :func:`sklearn.metrics.make_scorer` with signature
        ``scorer(estimator, X, y_true, sample_weight=None)``; it compares
        ``estimator.predict(X)`` with ``y_true``. ``sample_weight`` is passed
        to the metric. With metadata routing enabled, request it via
        ``scorer.set_score_request(sample_weight=True)``. With default
        options, the scorer of ``metric`` is ready-made as
        ``skweight.metrics.<metric>_scorer``.

    Examples
    --------
    >>> from skweight.metrics import make_segmentation_scorer
    >>> hd95_scorer = make_segmentation_scorer("neg_hausdorff_distance", percentile=95)
    >>> nsd2_scorer = make_segmentation_scorer("normalized_surface_dice",
    ...                                        tolerance=2.0, spacing=(3.0, 0.8, 0.8))
    """
    try:
        func, greater_is_better = _SCORE_FUNCS[metric]
    except (KeyError, TypeError):
        raise ValueError(
            f"metric must be one of {sorted(_SCORE_FUNCS)}; got {metric!r}."
        ) from None
    if func in (hausdorff_distance, mean_surface_distance):
        kwargs.setdefault("empty_value", "diagonal")
    return make_scorer(func, greater_is_better=greater_is_better, **kwargs)
