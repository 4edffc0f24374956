"""Overlap and boundary-distance metrics for label images.

The functions in this module compare integer label masks such as those
returned by the ``predict`` method of a segmentation estimator:

- :func:`dice_score` -- Dice (F1) overlap, greater is better;
- :func:`iou_score` -- intersection over union (Jaccard index), greater is
  better;
- :func:`hausdorff_distance` -- symmetric Hausdorff distance between mask
  boundaries (optionally the percentile variant, e.g. HD95), lower is better.

All three share the same input conventions, class selection and aggregation
over images and classes, and each has a ready-made scikit-learn scorer
(:data:`dice_scorer`, :data:`iou_scorer`, :data:`hausdorff_scorer`) for use as
``GridSearchCV(..., scoring=...)``. :func:`make_segmentation_scorer` builds
scorers with non-default options.
"""

import numbers
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from sklearn.metrics import make_scorer

__all__ = [
    "dice_score",
    "dice_scorer",
    "hausdorff_distance",
    "hausdorff_scorer",
    "iou_score",
    "iou_scorer",
    "make_segmentation_scorer",
]

_OVERLAP_AVERAGES = ("macro", "micro", None)
_DISTANCE_AVERAGES = ("macro", None)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


class _Batch(NamedTuple):
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


def _check_integer(value, name, allow_none=False):
    if value is None and allow_none:
        return None
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


def _check_sample_weight(sample_weight, input_shape, n_images, allow_pixel_weights):
    """Split ``sample_weight`` into per-image and per-pixel weights."""
    if sample_weight is None:
        return np.ones(n_images), None
    sample_weight = np.asarray(sample_weight)
    if sample_weight.dtype.kind not in "biuf":
        raise ValueError(
            f"sample_weight must be numeric; got an array of dtype {sample_weight.dtype}."
        )
    sample_weight = sample_weight.astype(np.float64)
    is_pixel = allow_pixel_weights and sample_weight.shape == tuple(input_shape)
    is_image = sample_weight.shape == (n_images,)
    if not (is_pixel or is_image):
        if allow_pixel_weights:
            expected = f"({n_images},) (one weight per image) or {tuple(input_shape)}"
            expected += " (one weight per pixel, same shape as y_true)"
        else:
            expected = f"({n_images},), i.e. one weight per image"
        raise ValueError(
            f"sample_weight must have shape {expected}; got shape {sample_weight.shape}."
        )
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight contains NaN or infinite values.")
    if np.any(sample_weight < 0):
        raise ValueError("sample_weight must be non-negative.")
    if is_pixel:
        # A per-pixel weight already says how much each pixel counts; images
        # are then averaged with equal weight.
        return np.ones(n_images), sample_weight.reshape(n_images, -1)
    if not sample_weight.sum() > 0:
        raise ValueError("sample_weight must not sum to zero.")
    return sample_weight, None


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


def _validate(y_true, y_pred, *, labels, average, allowed_averages,
              include_background, background, ignore_index, sample_weight,
              allow_pixel_weights):
    if average not in allowed_averages:
        raise ValueError(
            f"average must be one of {allowed_averages}; got {average!r}."
        )
    background = _check_integer(background, "background")
    ignore_index = _check_integer(ignore_index, "ignore_index", allow_none=True)
    input_shape = np.shape(y_true)
    y_true, y_pred = _check_label_arrays(y_true, y_pred)
    image_weights, pixel_weights = _check_sample_weight(
        sample_weight, input_shape, y_true.shape[0], allow_pixel_weights
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
    return _Batch(y_true, y_pred, valid, labels, image_weights, pixel_weights)


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


def _mean_over_classes(per_class, no_label_value):
    if per_class.size == 0:
        return float(no_label_value)
    return float(_weighted_nanmean(per_class, 1.0, axis=0))


def _aggregate(per_image_class, image_weights, average, no_label_value):
    """Reduce ``(N, K)`` scores: images first (weighted), then classes."""
    per_class = _weighted_nanmean(
        per_image_class, image_weights[:, np.newaxis], axis=0
    )
    if average is None:
        return per_class
    return _mean_over_classes(per_class, no_label_value)


# ---------------------------------------------------------------------------
# Overlap metrics
# ---------------------------------------------------------------------------


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
                   background, ignore_index, sample_weight, zero_division):
    zero_division = _check_zero_division(zero_division)
    batch = _validate(
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
        return _mean_over_classes(per_class, zero_division)
    scores = _overlap_ratio(intersection, size_true, size_pred, kind, zero_division)
    return _aggregate(scores, batch.image_weights, average, zero_division)


_AGGREGATION_NOTES = """\
    **Aggregation.** Scores are computed for every image and every class
    separately. With ``average="macro"`` (default) or ``average=None`` the
    per-image values of each class are then averaged over the images, as a
    weighted mean when ``sample_weight`` has shape ``(N,)``; ``average=None``
    returns these per-class means in the order of ``labels`` and ``"macro"``
    their unweighted mean over classes, so that every class counts the same
    however large it is. Averaging per image is the convention of medical
    image segmentation challenges [3]_: every case counts once, so a small
    structure in one image is not swamped by a large one in another, and the
    result does not depend on how images are grouped into batches.

    ``average="micro"`` instead pools the (weighted) intersection and mask
    sizes of each class over all images of the batch and forms one ratio per
    class from the pooled sums, then averages those over classes. Unlike
    ``average="micro"`` in :func:`sklearn.metrics.f1_score`, classes are not
    pooled, so each class still counts equally; but within a class, large
    images and large objects weigh more. The pooled score depends
    on which images are scored together (e.g. the cross-validation fold).

    A per-pixel ``sample_weight`` (same shape as ``y_true``) enters the sums:
    with ``a = (y_true == k)``, ``b = (y_pred == k)`` and weights ``w``, the
    intersection is ``sum(w * a * b)`` and the mask sizes ``sum(w * a)`` and
    ``sum(w * b)``. Images are then averaged with equal weight. A pixel weight
    of 0 is equivalent to ignoring the pixel.

    When a class is absent from both masks of an image (or all of its pixels
    have weight 0) the ratio is 0/0; ``zero_division`` is used instead. The
    default 1.0 credits the prediction for correctly finding nothing. With
    ``zero_division=np.nan`` such entries are skipped by the averages (NaN
    only if nothing is left).

    If no class is left to score (e.g. both masks contain only background and
    ``labels`` is not given), ``average=None`` returns an empty array and
    the averaged scores return ``zero_division``.
"""

_SHARED_PARAMETERS = """\
    y_true : array-like of int of shape (N, \\*spatial) or (H, W)
        Ground-truth label masks: a batch of ``N`` masks with one to three
        spatial dimensions, or a single 2-D mask (a 1-D array is a single 1-D
        profile). A single 3-D volume must be given as ``(1, D, H, W)``.
        Floating point arrays are accepted if they hold whole numbers.

    y_pred : array-like of int of the same shape as y_true
        Predicted label masks, e.g. the output of a segmenter's ``predict``.

    labels : array-like of int, default=None
        Classes to score, in the order used for ``average=None``. By default,
        all labels that occur in ``y_true`` or ``y_pred`` on scored pixels
        (not ignored, non-zero weight), sorted, except ``background`` (unless
        ``include_background=True``) and ``ignore_index``. When given,
        ``include_background`` has no effect.

    average : {average_options}, default="macro"
        How per-image, per-class values are reduced; see Notes.

    include_background : bool, default=False
        Whether the default ``labels`` include ``background``.

    background : int, default=0
        Label of the background class.

    ignore_index : int, default=None
        Pixels where ``y_true == ignore_index`` (e.g. unlabelled or "void"
        regions) are excluded from both masks and from every class.
"""


def dice_score(y_true, y_pred, *, labels=None, average="macro",
               include_background=False, background=0, ignore_index=None,
               sample_weight=None, zero_division=1.0):
    """Dice similarity coefficient between label masks.

    For one class ``k`` with masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)``, ``Dice = 2 |A ∩ B| / (|A| + |B|)`` [1]_. It equals
    the F1 score of the pixel-wise classification ``k`` vs. not ``k``. See
    [2]_ for a comparison of segmentation metrics.

    Parameters
    ----------
{shared}
    sample_weight : array-like of shape (N,) or of y_true's shape, default=None
        Non-negative weights, either one per image (weighted mean over
        images) or one per pixel (weighted sums inside each image).

    zero_division : float or np.nan, default=1.0
        Score of a class that is absent from both masks of an image.

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
{notes}
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
        zero_division=zero_division,
    )


def iou_score(y_true, y_pred, *, labels=None, average="macro",
              include_background=False, background=0, ignore_index=None,
              sample_weight=None, zero_division=1.0):
    """Intersection over union (Jaccard index) between label masks.

    For one class ``k`` with masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)``, ``IoU = |A ∩ B| / |A ∪ B|`` [1]_. On a single image
    and class, ``IoU = Dice / (2 - Dice)``; averages of the two over images or
    classes are not related that simply. See [2]_ for a comparison of
    segmentation metrics.

    Parameters
    ----------
{shared}
    sample_weight : array-like of shape (N,) or of y_true's shape, default=None
        Non-negative weights, either one per image (weighted mean over
        images) or one per pixel (weighted sums inside each image).

    zero_division : float or np.nan, default=1.0
        Score of a class that is absent from both masks of an image.

    Returns
    -------
    score : float or ndarray of shape (n_labels,)
        Mean IoU over classes, or one value per class if ``average=None``.

    See Also
    --------
    dice_score : Dice coefficient, same conventions.

    Notes
    -----
{notes}
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
        zero_division=zero_division,
    )


# ---------------------------------------------------------------------------
# Hausdorff distance
# ---------------------------------------------------------------------------


def _boundary(mask, structure):
    # border_value=0 makes pixels on the image edge boundary pixels, so that
    # a mask filling the whole image still has a boundary.
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _pair_hausdorff(a, b, percentile, structure):
    """Hausdorff distance between the boundaries of two non-empty masks."""
    # Cropping to the bounding box of both masks changes nothing: any mask
    # pixel on the crop edge is either on the image edge or next to a pixel
    # outside both masks, so boundaries are the same, and all boundary
    # pixels lie inside the crop, so nearest-boundary distances are too.
    # It keeps the distance transforms small for small structures.
    (box,) = ndimage.find_objects((a | b).astype(np.int8))
    a, b = a[box], b[box]
    edge_a, edge_b = _boundary(a, structure), _boundary(b, structure)
    a_to_b = ndimage.distance_transform_edt(~edge_b)[edge_a]
    b_to_a = ndimage.distance_transform_edt(~edge_a)[edge_b]
    if percentile is None:
        return max(a_to_b.max(), b_to_a.max())
    return np.percentile(np.concatenate([a_to_b, b_to_a]), percentile)


def _check_percentile(percentile):
    if percentile is None:
        return None
    if (
        isinstance(percentile, (bool, np.bool_))
        or not isinstance(percentile, numbers.Real)
        or not 0 < percentile <= 100
    ):
        raise ValueError(
            f"percentile must be None or a number in (0, 100]; got {percentile!r}."
        )
    return float(percentile)


def _check_empty_value(empty_value, spatial_shape):
    if isinstance(empty_value, str):
        if empty_value != "diagonal":
            raise ValueError(
                'empty_value must be a number or "diagonal"; got '
                f"{empty_value!r}."
            )
        # The length of the image diagonal exceeds every distance between
        # two pixels of the image, so a missed or hallucinated structure
        # always scores worse than any detected one.
        return float(np.sqrt(np.sum(np.square(spatial_shape))))
    if isinstance(empty_value, (bool, np.bool_)) or not isinstance(
        empty_value, numbers.Real
    ):
        raise TypeError(
            f'empty_value must be a number or "diagonal"; got {empty_value!r}.'
        )
    return float(empty_value)


def hausdorff_distance(y_true, y_pred, *, labels=None, average="macro",
                       include_background=False, background=0, ignore_index=None,
                       percentile=None, sample_weight=None, empty_value=np.nan):
    """Symmetric Hausdorff distance between mask boundaries, in pixels.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries: the mask pixels
    with at least one face-connected neighbour (4 in 2-D, 6 in 3-D) outside
    the mask, pixels on the image edge included. For each boundary pixel of
    ``A`` the Euclidean distance to the nearest boundary pixel of ``B`` is
    taken, and vice versa. The Hausdorff distance [1]_ is the largest of all
    these distances; with ``percentile=p`` it is instead the ``p``-th
    percentile of both sets of distances together (``p=95`` gives the
    common "HD95", which is robust to a few outlying pixels [2]_).

    Parameters
    ----------
{shared}
    percentile : float in (0, 100], default=None
        If given, report this percentile of the pooled directed distances
        (linear interpolation, as :func:`numpy.percentile`) instead of their
        maximum. ``percentile=100`` is the same as ``None``.

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights have no meaning for a maximum distance and are rejected.

    empty_value : float or "diagonal", default=np.nan
        Value used when a class is present in exactly one of the two masks of
        an image, where the distance is undefined. ``"diagonal"`` uses the
        length of the image diagonal, ``sqrt(sum(s ** 2 for s in spatial
        shape))``, which is larger than any attainable distance.

    Returns
    -------
    distance : float or ndarray of shape (n_labels,)
        Mean distance over classes, or one value per class if
        ``average=None``. Lower is better.

    See Also
    --------
    dice_score : Overlap-based score with the same conventions.

    Notes
    -----
    Distances are in pixel units of the array grid; anisotropic voxel
    spacing is not taken into account. Pixels excluded by ``ignore_index``
    count as outside both masks, so mask pixels next to them are boundary
    pixels.

    When a class is absent from both masks of an image the distance is 0.0.
    When it is absent from exactly one, ``empty_value`` is used. With the
    default NaN these entries are skipped: the mean over images and the mean
    over classes are NaN-ignoring (weighted) means, and the result is NaN
    only when every value it averages is NaN (e.g. the class is missed in
    every image). NaN breaks model selection, which is why
    :data:`hausdorff_scorer` uses ``empty_value="diagonal"``.

    Aggregation is the same as for :func:`dice_score`: values are computed
    per image and class, averaged over images (weighted by
    ``sample_weight``), and for ``average="macro"`` then over classes.
    ``average="micro"`` is not available because a pooled maximum distance
    over different images has no meaning. If no class is left to score,
    ``"macro"`` returns 0.0.

    References
    ----------
    .. [1] D. P. Huttenlocher, G. A. Klanderman and W. J. Rucklidge,
       "Comparing images using the Hausdorff distance", IEEE Transactions on
       Pattern Analysis and Machine Intelligence 15(9), pp. 850-863, 1993.
    .. [2] A. A. Taha and A. Hanbury, "Metrics for evaluating 3D medical image
       segmentation: analysis, selection, and tool", BMC Medical Imaging 15,
       29, 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skweight.metrics import hausdorff_distance
    >>> y_true = np.zeros((8, 8), dtype=int)
    >>> y_pred = np.zeros((8, 8), dtype=int)
    >>> y_true[0, 0] = 1
    >>> y_pred[3, 4] = 1
    >>> hausdorff_distance(y_true, y_pred)
    5.0
    >>> hausdorff_distance(y_true, np.zeros_like(y_true))  # missed: undefined
    nan
    """
    percentile = _check_percentile(percentile)
    batch = _validate(
        y_true, y_pred, labels=labels, average=average,
        allowed_averages=_DISTANCE_AVERAGES, include_background=include_background,
        background=background, ignore_index=ignore_index,
        sample_weight=sample_weight, allow_pixel_weights=False,
    )
    spatial_shape = batch.y_true.shape[1:]
    empty_value = _check_empty_value(empty_value, spatial_shape)
    structure = ndimage.generate_binary_structure(len(spatial_shape), 1)

    n_images, n_labels = batch.y_true.shape[0], batch.labels.size
    distances = np.empty((n_images, n_labels))
    for i in range(n_images):
        valid = True if batch.valid is None else batch.valid[i]
        for j, label in enumerate(batch.labels):
            a = (batch.y_true[i] == label) & valid
            b = (batch.y_pred[i] == label) & valid
            has_a, has_b = a.any(), b.any()
            if not (has_a or has_b):
                distances[i, j] = 0.0
            elif has_a != has_b:
                distances[i, j] = empty_value
            else:
                distances[i, j] = _pair_hausdorff(a, b, percentile, structure)
    return _aggregate(distances, batch.image_weights, average, 0.0)


def _fill_docstring(func, average_options, notes=""):
    # The three metrics share most parameters and the aggregation notes;
    # writing them once keeps the docstrings from drifting apart. Docstrings
    # are absent under ``python -OO``.
    if func.__doc__:
        shared = _SHARED_PARAMETERS.replace("{average_options}", average_options)
        func.__doc__ = func.__doc__.format(shared=shared, notes=notes)


_fill_docstring(dice_score, '{"macro", "micro"} or None', _AGGREGATION_NOTES)
_fill_docstring(iou_score, '{"macro", "micro"} or None', _AGGREGATION_NOTES)
_fill_docstring(hausdorff_distance, '"macro" or None')


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------

_SCORE_FUNCS = {
    "dice": (dice_score, True),
    "iou": (iou_score, True),
    "hausdorff": (hausdorff_distance, False),
}


def make_segmentation_scorer(metric, **kwargs):
    """Build a scikit-learn scorer from one of the segmentation metrics.

    Parameters
    ----------
    metric : {"dice", "iou", "hausdorff"}
        Metric to wrap. ``"hausdorff"`` gives a negated distance
        (``greater_is_better=False``), so that larger is better, as model
        selection expects.

    **kwargs
        Keyword arguments of the metric, fixed for every call, e.g.
        ``labels=[1, 2]`` or ``percentile=95``. For ``"hausdorff"``,
        ``empty_value`` defaults to ``"diagonal"``: a structure missed in, or
        hallucinated into, an image is then charged the largest possible
        distance instead of being skipped, and the score is never NaN.

    Returns
    -------
    scorer : callable
        Object from :func:`sklearn.metrics.make_scorer` with signature
        ``scorer(estimator, X, y_true, sample_weight=None)``; it compares
        ``estimator.predict(X)`` with ``y_true``. ``sample_weight`` is passed
        to the metric. With metadata routing enabled, request it via
        ``scorer.set_score_request(sample_weight=True)``.

    Examples
    --------
    >>> from skweight.metrics import make_segmentation_scorer
    >>> hd95_scorer = make_segmentation_scorer("hausdorff", percentile=95)
    """
    try:
        func, greater_is_better = _SCORE_FUNCS[metric]
    except (KeyError, TypeError):
        raise ValueError(
            f"metric must be one of {sorted(_SCORE_FUNCS)}; got {metric!r}."
        ) from None
    if func is hausdorff_distance:
        kwargs.setdefault("empty_value", "diagonal")
    return make_scorer(func, greater_is_better=greater_is_better, **kwargs)


#: Scorer for :func:`dice_score` with default options (greater is better).
#: ``set_score_request`` changes a scorer in place; use
#: ``make_segmentation_scorer("dice")`` for a private copy first.
dice_scorer = make_segmentation_scorer("dice")

#: Scorer for :func:`iou_score` with default options (greater is better).
iou_scorer = make_segmentation_scorer("iou")

#: Scorer for the negated :func:`hausdorff_distance` with
#: ``empty_value="diagonal"``, so that a missed structure is penalised with
#: the image diagonal rather than turning the score into NaN.
hausdorff_scorer = make_segmentation_scorer("hausdorff")
