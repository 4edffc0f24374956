"""Overlap metrics: the Dice score and intersection over union."""

import numbers

import numpy as np

from .._validation import is_zero_one
from ._docs import fill_overlap_doc
from ._validation import aggregate, mean_over_classes, validate_batch

_OVERLAP_AVERAGES = ("macro", "micro", None)


def _class_index(y, labels):
    """Map every pixel to the position of its label in ``labels``, or -1."""
    if labels.size == 0:
        return np.full(y.shape, -1)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    pos = np.clip(np.searchsorted(sorted_labels, y), 0, labels.size - 1)
    return np.where(sorted_labels[pos] == y, order[pos], -1)


def _overlap_counts(batch):
    """(Weighted) |A ∩ B|, |A| and |B| per image and class, each ``(N, K)``.

    A single ``bincount`` over a combined (image, class) index counts every
    class in one pass over the pixels instead of one pass per class.
    """
    n_images, n_labels = batch.y_true.shape[0], batch.labels.size
    t = _class_index(batch.y_true.reshape(n_images, -1), batch.labels)
    p = _class_index(batch.y_pred.reshape(n_images, -1), batch.labels)
    if batch.valid is not None:
        valid = batch.valid.reshape(n_images, -1)
        t = np.where(valid, t, -1)
        p = np.where(valid, p, -1)
    offset = np.arange(n_images)[:, np.newaxis] * n_labels
    w = batch.pixel_weights
    size = n_images * n_labels

    def count(cls, selected):
        weights = None if w is None else w[selected]
        return np.bincount(
            (cls + offset)[selected], weights=weights, minlength=size
        ).astype(np.float64).reshape(n_images, n_labels)

    return (
        count(t, (t >= 0) & (t == p)),
        count(t, t >= 0),
        count(p, p >= 0),
    )


def _overlap_ratio(intersection, size_true, size_pred, kind, zero_division):
    if kind == "dice":
        numerator, denominator = 2.0 * intersection, size_true + size_pred
    else:
        numerator = intersection
        denominator = size_true + size_pred - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, zero_division)


def _check_zero_division(zero_division):
    if isinstance(zero_division, (bool, np.bool_)) or not isinstance(
        zero_division, numbers.Real
    ):
        raise TypeError(
            f"zero_division must be a real number or np.nan; got {zero_division!r}."
        )
    return float(zero_division)


def _overlap_score(kind, y_true, y_pred, *, labels, average, include_background,
                   background, ignore_index, sample_weight, zero_division,
                   multilabel=False):
    if multilabel:
        return _per_channel(kind, y_true, y_pred, labels=labels, average=average,
                            sample_weight=sample_weight, zero_division=zero_division)
    zero_division = _check_zero_division(zero_division)
    batch = validate_batch(
        y_true, y_pred, labels=labels, average=average,
        allowed_averages=_OVERLAP_AVERAGES, include_background=include_background,
        background=background, ignore_index=ignore_index,
        sample_weight=sample_weight, allow_pixel_weights=True,
    )
    intersection, size_true, size_pred = _overlap_counts(batch)
    if average == "micro":
        # Pool the counts of all images (weighted, so that an integer weight
        # acts like repeating the image) before forming one ratio per class.
        w = batch.image_weights[:, np.newaxis]
        per_class = _overlap_ratio(
            (w * intersection).sum(0), (w * size_true).sum(0),
            (w * size_pred).sum(0), kind, zero_division,
        )
        return mean_over_classes(per_class, zero_division)
    scores = _overlap_ratio(intersection, size_true, size_pred, kind, zero_division)
    return aggregate(scores, batch.image_weights, average, zero_division)


def _per_channel(kind, y_true, y_pred, *, labels, average, sample_weight,
                 zero_division):
    """Score overlapping 0/1 masks ``(N, C, ...)``: each channel as a binary mask."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim < 3:
        raise ValueError(
            f"With multilabel=True, y_true and y_pred must be 0/1 masks of the same "
            f"shape (N, C, H, W) or (N, C, D, H, W), got {y_true.shape} and "
            f"{y_pred.shape}."
        )
    for name, masks in (("y_true", y_true), ("y_pred", y_pred)):
        if not is_zero_one(masks):
            raise ValueError(
                f"With multilabel=True, {name} must hold 0/1 masks (one channel per "
                f"structure), got other values."
            )
    channels = range(y_true.shape[1]) if labels is None else list(labels)
    weight = None if sample_weight is None else np.asarray(sample_weight)
    per_channel = []
    for c in channels:
        w = weight
        if weight is not None and weight.shape == y_true.shape:
            w = weight[:, c]
        per_channel.append(_overlap_score(
            kind, y_true[:, c], y_pred[:, c], labels=[1],
            average="micro" if average == "micro" else None, include_background=True,
            background=0, ignore_index=None, sample_weight=w,
            zero_division=zero_division,
        ))
    scores = np.array([float(np.ravel(v)[0]) for v in per_channel])
    if average is None:
        return scores
    return mean_over_classes(scores, _check_zero_division(zero_division))


@fill_overlap_doc
def dice_score(y_true, y_pred, *, labels=None, average="macro",
               include_background=False, background=0, ignore_index=None,
               sample_weight=None, zero_division=1.0, multilabel=False):
    """Dice similarity coefficient between label masks.

    For one class ``k`` with masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)``, ``Dice = 2 |A ∩ B| / (|A| + |B|)`` [1]_. It equals
    the F1 score of the pixel-wise classification ``k`` vs. not ``k``. See
    [2]_ for a comparison of segmentation metrics.

    Parameters
    ----------
    %(mask_parameters)s

    %(overlap_weights)s

    %(multilabel)s

    Returns
    -------
    score : float or ndarray of shape (n_labels,)
        Mean Dice over classes, or one value per class if ``average=None``.

    See Also
    --------
    iou_score : Intersection over union, ``Dice / (2 - Dice)`` per image.
    hausdorff_distance : Boundary distance between the masks.

    Notes
    -----
    %(overlap_aggregation)s

    References
    ----------
    .. [1] L. R. Dice, "Measures of the amount of ecologic association between
       species", Ecology 26(3), pp. 297-302, 1945.
    .. [2] A. A. Taha and A. Hanbury, "Metrics for evaluating 3D medical image
       segmentation: analysis, selection, and tool", BMC Medical Imaging 15,
       29, 2015.
    .. [3] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.metrics import dice_score
    >>> y_true = np.array([[0, 1, 1],
    ...                    [0, 1, 2]])
    >>> y_pred = np.array([[0, 1, 1],
    ...                    [0, 2, 2]])
    >>> dice_score(y_true, y_pred, average=None)  # classes 1 and 2
    array([0.8       , 0.66666667])
    >>> dice_score(y_true, y_pred, labels=[2, 1, 0], average=None)
    array([0.66666667, 0.8       , 1.        ])
    >>> dice_score(y_true, y_pred)  # mean of the two foreground classes
    0.7333333333333334
    """
    return _overlap_score(
        "dice", y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight,
        zero_division=zero_division, multilabel=multilabel,
    )


@fill_overlap_doc
def iou_score(y_true, y_pred, *, labels=None, average="macro",
              include_background=False, background=0, ignore_index=None,
              sample_weight=None, zero_division=1.0, multilabel=False):
    """Intersection over union (Jaccard index) between label masks.

    For one class ``k`` with masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)``, ``IoU = |A ∩ B| / |A ∪ B|`` [1]_. On a single image
    and class, ``IoU = Dice / (2 - Dice)``; averages of the two over images or
    classes are not related that simply. See [2]_ for a comparison of
    segmentation metrics.

    Parameters
    ----------
    %(mask_parameters)s

    %(overlap_weights)s

    %(multilabel)s

    Returns
    -------
    score : float or ndarray of shape (n_labels,)
        Mean IoU over classes, or one value per class if ``average=None``.

    See Also
    --------
    dice_score : Dice coefficient, same conventions.

    Notes
    -----
    %(overlap_aggregation)s

    References
    ----------
    .. [1] P. Jaccard, "The distribution of the flora in the alpine zone",
       New Phytologist 11(2), pp. 37-50, 1912.
    .. [2] A. A. Taha and A. Hanbury, "Metrics for evaluating 3D medical image
       segmentation: analysis, selection, and tool", BMC Medical Imaging 15,
       29, 2015.
    .. [3] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.metrics import iou_score
    >>> y_true = np.array([[0, 1, 1],
    ...                    [0, 1, 2]])
    >>> y_pred = np.array([[0, 1, 1],
    ...                    [0, 2, 2]])
    >>> iou_score(y_true, y_pred, average=None)
    array([0.66666667, 0.5       ])
    """
    return _overlap_score(
        "iou", y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight,
        zero_division=zero_division, multilabel=multilabel,
    )
