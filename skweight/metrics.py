"""Overlap and boundary-distance metrics for label images.

The functions in this module compare integer label masks such as those
returned by the ``predict`` method of a segmentation estimator:

- :func:`dice_score` -- Dice (F1) overlap, greater is better;
- :func:`iou_score` -- intersection over union (Jaccard index), greater is
  better;
- :func:`hausdorff_distance` -- symmetric Hausdorff distance between mask
  boundaries (optionally the percentile variant, e.g. HD95), lower is better;
- :func:`mean_surface_distance` -- average symmetric surface distance
  between mask boundaries, lower is better;
- :func:`normalized_surface_dice` -- fraction of both boundaries that lies
  within a tolerance of the other one, greater is better.

All of them share the same input conventions, class selection and
aggregation over images and classes, and each has a ready-made scikit-learn
scorer (:data:`dice_scorer`, :data:`iou_scorer`, :data:`hausdorff_scorer`,
:data:`mean_surface_distance_scorer`, :data:`normalized_surface_dice_scorer`)
for use as ``GridSearchCV(..., scoring=...)``. :func:`make_segmentation_scorer`
builds scorers with non-default options. The three boundary metrics measure
distances in pixels, or in physical units with ``spacing``.
"""

import numbers
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from sklearn.metrics import make_scorer

from ._docstrings import fill_doc
from ._validation import (
    check_bool,
    check_ignore_index,
    check_real,
    check_sample_weight,
    sample_weight_shape_message,
)

__all__ = [
    "dice_score",
    "dice_scorer",
    "hausdorff_distance",
    "hausdorff_scorer",
    "iou_score",
    "iou_scorer",
    "make_segmentation_scorer",
    "mean_surface_distance",
    "mean_surface_distance_scorer",
    "normalized_surface_dice",
    "normalized_surface_dice_scorer",
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


def _validate(y_true, y_pred, *, labels, average, allowed_averages,
              include_background, background, ignore_index, sample_weight,
              allow_pixel_weights):
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
# Shared documentation
# ---------------------------------------------------------------------------

# The metrics share most parameters and notes; writing them once keeps the
# docstrings from drifting apart. ``fill_doc`` puts each entry in place of a
# ``%(name)s`` line, indented like it.
_DOC_ENTRIES = {
    "mask_parameters": """\
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

    average : %(average_options)s, default="macro"
        How per-image, per-class values are reduced; see Notes.

    include_background : bool, default=False
        Whether the default ``labels`` include ``background``.

    background : int, default=0
        Label of the background class.

    ignore_index : int, default=None
        Pixels where ``y_true == ignore_index`` (e.g. unlabelled or "void"
        regions) are excluded from both masks and from every class.""",
    "overlap_weights": """\
    sample_weight : array-like of shape (N,) or of y_true's shape, default=None
        Non-negative weights, either one per image (weighted mean over
        images) or one per pixel (weighted sums inside each image).

    zero_division : float or np.nan, default=1.0
        Score of a class that is absent from both masks of an image.""",
    "spacing": """\
    spacing : float or sequence of float, default=None
        Pixel (voxel) size along each spatial axis, in the order of the array
        axes, e.g. ``(3.0, 0.8, 0.8)`` for ``(N, D, H, W)`` volumes of 3 mm
        slices with 0.8 mm pixels; a single number applies to every axis.
        Distances are measured in these units, exactly, however anisotropic
        the grid. ``None`` means 1 along every axis (pixel units).""",
    "overlap_aggregation": """\
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
    the averaged scores return ``zero_division``.""",
    "boundaries": """\
    **Boundaries and distances.** The boundary of a mask is the set of its
    pixels with at least one face-connected neighbour (4 in 2-D, 6 in 3-D)
    outside the mask; pixels on the image edge are boundary pixels, and a
    single pixel is its own boundary. Distances are Euclidean, between pixel
    centres scaled by ``spacing``, from a boundary pixel of one mask to the
    nearest boundary pixel of the other, not to the other mask: a boundary
    pixel of ``A`` lying inside ``B`` is still as far from ``B`` as the
    nearest boundary pixel of ``B``. Pixels excluded by ``ignore_index``
    count as outside both masks, so mask pixels next to them are boundary
    pixels.""",
    "distance_aggregation": """\
    **Aggregation** is the same as for :func:`dice_score`: values are
    computed per image and class, averaged over images (weighted by
    ``sample_weight``), and for ``average="macro"`` then over classes, each
    class counting the same. ``average="micro"`` is not available because
    boundary distances of different images are not measured against the
    same boundary and do not pool. If no class is left to score,
    ``"macro"`` returns the value of a class absent from both masks.""",
}

_fill_overlap_doc = fill_doc(_DOC_ENTRIES, average_options='{"macro", "micro"} or None')
_fill_distance_doc = fill_doc(_DOC_ENTRIES, average_options='"macro" or None')


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


@_fill_overlap_doc
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
    %(mask_parameters)s

    %(overlap_weights)s

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
        zero_division=zero_division,
    )


@_fill_overlap_doc
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
    %(mask_parameters)s

    %(overlap_weights)s

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
        zero_division=zero_division,
    )


# ---------------------------------------------------------------------------
# Boundary distances
# ---------------------------------------------------------------------------


def _boundary(mask, structure):
    # border_value=0 makes pixels on the image edge boundary pixels, so that
    # a mask filling the whole image still has a boundary.
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _surface_distances(a, b, structure, sampling):
    """Nearest-boundary distances between two non-empty masks.

    Returns
    -------
    a_to_b, b_to_a : ndarray of float64
        For every boundary pixel of ``a``, the distance to the nearest
        boundary pixel of ``b``; and the other way round.
    """
    # Cropping to the bounding box of both masks changes nothing: any mask
    # pixel on the crop edge is either on the image edge or next to a pixel
    # outside both masks, so boundaries are the same, and all boundary
    # pixels lie inside the crop. Every metric here only uses distances
    # between boundary pixels, which a crop does not change however the axes
    # are scaled (spacing) or the distances thresholded (tolerance). It keeps
    # the distance transforms small for small structures.
    (box,) = ndimage.find_objects((a | b).astype(np.int8))
    a, b = a[box], b[box]
    edge_a, edge_b = _boundary(a, structure), _boundary(b, structure)
    a_to_b = ndimage.distance_transform_edt(~edge_b, sampling=sampling)[edge_a]
    b_to_a = ndimage.distance_transform_edt(~edge_a, sampling=sampling)[edge_b]
    return a_to_b, b_to_a


def _distance_table(batch, pair_value, both_empty, one_empty, sampling):
    """Compute a boundary metric for every image and class, as an ``(N, K)`` array.

    ``pair_value(j, true_to_pred, pred_to_true)`` reduces the directed
    distances of class ``labels[j]`` to one number. ``both_empty`` and
    ``one_empty`` stand in where the class is absent from both masks of an
    image or from exactly one, and no boundary distance exists.
    """
    spatial_ndim = batch.y_true.ndim - 1
    structure = ndimage.generate_binary_structure(spatial_ndim, 1)
    n_images, n_labels = batch.y_true.shape[0], batch.labels.size
    values = np.empty((n_images, n_labels))
    for i in range(n_images):
        valid = True if batch.valid is None else batch.valid[i]
        for j, label in enumerate(batch.labels):
            a = (batch.y_true[i] == label) & valid
            b = (batch.y_pred[i] == label) & valid
            has_a, has_b = a.any(), b.any()
            if not (has_a or has_b):
                values[i, j] = both_empty
            elif has_a != has_b:
                values[i, j] = one_empty
            else:
                values[i, j] = pair_value(j, *_surface_distances(a, b, structure,
                                                                 sampling))
    return values


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


def _check_spacing(spacing, spatial_shape):
    """Pixel size per spatial axis as a tuple of floats; None stays None."""
    if spacing is None:
        return None
    if isinstance(spacing, np.ndarray):
        spacing = spacing.tolist()
    n_axes = len(spatial_shape)
    if not isinstance(spacing, (list, tuple)):
        return (check_real(spacing, "spacing", low=0, low_open=True),) * n_axes
    if len(spacing) != n_axes:
        raise ValueError(
            f"spacing must be a number or a sequence of {n_axes} numbers, one per "
            f"spatial axis of masks with spatial shape {tuple(spatial_shape)}; got "
            f"{len(spacing)} values: {spacing!r}."
        )
    return tuple(
        check_real(value, f"spacing[{axis}]", low=0, low_open=True)
        for axis, value in enumerate(spacing)
    )


def _check_empty_value(empty_value, spatial_shape, sampling=None):
    if isinstance(empty_value, str):
        if empty_value != "diagonal":
            raise ValueError(
                'empty_value must be a number or "diagonal"; got '
                f"{empty_value!r}."
            )
        # The length of the image diagonal exceeds every distance between
        # two pixels of the image, so a missed or hallucinated structure
        # always scores worse than any detected one.
        extent = np.multiply(spatial_shape, 1.0 if sampling is None else sampling)
        return float(np.sqrt(np.sum(np.square(extent))))
    if isinstance(empty_value, (bool, np.bool_)) or not isinstance(
        empty_value, numbers.Real
    ):
        raise TypeError(
            f'empty_value must be a number or "diagonal"; got {empty_value!r}.'
        )
    return float(empty_value)


def _check_tolerance(tolerance, labels_given, n_labels):
    """One non-negative tolerance per scored class, as a float64 array."""
    if isinstance(tolerance, np.ndarray):
        tolerance = tolerance.tolist()
    if not isinstance(tolerance, (list, tuple)):
        return np.full(n_labels, check_real(tolerance, "tolerance", low=0))
    # The default labels depend on which classes occur in the masks (they
    # change from one cross-validation fold to the next), so a per-class
    # tolerance is only unambiguous next to explicit labels.
    if not labels_given:
        raise ValueError(
            f"tolerance={tolerance!r} gives one value per class, which needs "
            "explicit labels in the same order; got labels=None."
        )
    if len(tolerance) != n_labels:
        raise ValueError(
            f"tolerance must be a number or have one value per label ({n_labels}); "
            f"got {len(tolerance)} values: {tolerance!r}."
        )
    return np.array([
        check_real(value, f"tolerance[{j}]", low=0) for j, value in enumerate(tolerance)
    ])


def _validate_distance_metric(y_true, y_pred, *, labels, average, include_background,
                              background, ignore_index, sample_weight, spacing):
    batch = _validate(
        y_true, y_pred, labels=labels, average=average,
        allowed_averages=_DISTANCE_AVERAGES, include_background=include_background,
        background=background, ignore_index=ignore_index,
        sample_weight=sample_weight, allow_pixel_weights=False,
    )
    return batch, _check_spacing(spacing, batch.y_true.shape[1:])


@_fill_distance_doc
def hausdorff_distance(y_true, y_pred, *, labels=None, average="macro",
                       include_background=False, background=0, ignore_index=None,
                       percentile=None, sample_weight=None, empty_value=np.nan,
                       spacing=None):
    """Symmetric Hausdorff distance between mask boundaries.

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
    %(mask_parameters)s

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
        length of the image diagonal, ``sqrt(sum((n * s) ** 2))`` over the
        spatial axes of size ``n`` and spacing ``s``, which is larger than
        any attainable distance.

    %(spacing)s

    Returns
    -------
    distance : float or ndarray of shape (n_labels,)
        Mean distance over classes, or one value per class if
        ``average=None``, in units of ``spacing`` (pixels by default).
        Lower is better.

    See Also
    --------
    mean_surface_distance : Mean instead of maximum of the same distances.
    normalized_surface_dice : Fraction of the distances within a tolerance.
    dice_score : Overlap-based score with the same conventions.

    Notes
    -----
    %(boundaries)s

    When a class is absent from both masks of an image the distance is 0.0.
    When it is absent from exactly one, ``empty_value`` is used. With the
    default NaN these entries are skipped: the mean over images and the mean
    over classes are NaN-ignoring (weighted) means, and the result is NaN
    only when every value it averages is NaN (e.g. the class is missed in
    every image). NaN breaks model selection, which is why
    :data:`hausdorff_scorer` uses ``empty_value="diagonal"``.

    With ``percentile=None`` the per-image, per-class values equal those of
    MONAI's ``compute_hausdorff_distance`` (same boundaries, same distances).
    With a percentile MONAI takes the percentile of each direction separately
    and reports the larger of the two, whereas here the distances of both
    directions are pooled first [2]_; the two can differ.

    %(distance_aggregation)s

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
    >>> hausdorff_distance(y_true, y_pred, spacing=(2.0, 1.0))  # 2 mm rows
    7.211102550927978
    >>> hausdorff_distance(y_true, np.zeros_like(y_true))  # missed: undefined
    nan
    """
    percentile = _check_percentile(percentile)
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    empty_value = _check_empty_value(empty_value, batch.y_true.shape[1:], sampling)

    def pair_value(j, true_to_pred, pred_to_true):
        if percentile is None:
            return max(true_to_pred.max(), pred_to_true.max())
        return np.percentile(np.concatenate([true_to_pred, pred_to_true]), percentile)

    distances = _distance_table(batch, pair_value, 0.0, empty_value, sampling)
    return _aggregate(distances, batch.image_weights, average, 0.0)


@_fill_distance_doc
def mean_surface_distance(y_true, y_pred, *, labels=None, average="macro",
                          include_background=False, background=0, ignore_index=None,
                          sample_weight=None, empty_value=np.nan, spacing=None,
                          symmetric=True):
    """Average symmetric surface distance between mask boundaries.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries ``S_A`` and
    ``S_B`` (see Notes). Every boundary pixel of either mask is matched with
    the nearest boundary pixel of the other mask, and the distances of both
    directions are averaged together [1]_::

        MSD = (sum(d(a, S_B) for a in S_A) + sum(d(b, S_A) for b in S_B))
              / (|S_A| + |S_B|)

    This is the "average symmetric surface distance" (ASSD). Where the
    Hausdorff distance reports the worst boundary error, this reports the
    typical one; see [2]_ on choosing between boundary metrics.

    Parameters
    ----------
    %(mask_parameters)s

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights are rejected.

    empty_value : float or "diagonal", default=np.nan
        Value used when a class is present in exactly one of the two masks of
        an image, where the distance is undefined. ``"diagonal"`` uses the
        length of the image diagonal, ``sqrt(sum((n * s) ** 2))`` over the
        spatial axes of size ``n`` and spacing ``s``, which is larger than
        any attainable distance.

    %(spacing)s

    symmetric : bool, default=True
        If False, only the distances from the boundary of ``y_pred`` to the
        boundary of ``y_true`` are averaged (the directed distance that
        MONAI's ``compute_average_surface_distance`` reports with its default
        ``symmetric=False``).

    Returns
    -------
    distance : float or ndarray of shape (n_labels,)
        Mean distance over classes, or one value per class if
        ``average=None``, in units of ``spacing`` (pixels by default).
        Lower is better.

    See Also
    --------
    hausdorff_distance : Largest instead of mean boundary distance.
    normalized_surface_dice : Fraction of the boundary within a tolerance.

    Notes
    -----
    **Pooled mean.** With ``symmetric=True`` the directed distances of both
    boundaries are pooled before averaging, so the longer boundary weighs
    more. This is the definition of Heimann et al. [1]_ and of MONAI's
    ``compute_average_surface_distance(symmetric=True)``. Some tools report
    the two directed means separately (e.g. DeepMind's surface-distance
    package, which also weights boundary elements by their area), and their
    average ``(mean(d(a, S_B)) + mean(d(b, S_A))) / 2`` is sometimes quoted
    instead; it agrees with the pooled mean when both boundaries have the
    same number of pixels and differs otherwise.

    %(boundaries)s

    When a class is absent from both masks of an image the distance is 0.0;
    when it is absent from exactly one, ``empty_value`` is used. With the
    default NaN such entries are skipped by the (weighted) means, and the
    result is NaN only when every value it averages is NaN. NaN breaks model
    selection, which is why :data:`mean_surface_distance_scorer` uses
    ``empty_value="diagonal"``.

    **Comparison with MONAI.** For two non-empty masks, the values per image
    and class equal those of MONAI's
    ``compute_average_surface_distance(..., symmetric=True)``, with the same
    ``spacing``: its boundaries are also ``mask XOR erosion(mask)`` with the
    face-connected structuring element and a zero border, and its distances
    also run from boundary pixel to nearest boundary pixel. The differences
    are conventions: MONAI takes one-hot masks and drops the first channel
    instead of a ``background`` label; it returns NaN for a class absent
    from both masks (here 0.0) and infinity for a class absent from one
    (here ``empty_value``); its ``ignore_index`` only silences warnings,
    whereas here ignored pixels are removed from both masks; and it computes
    in float32 (here float64).

    %(distance_aggregation)s

    References
    ----------
    .. [1] T. Heimann et al., "Comparison and evaluation of methods for liver
       segmentation from CT datasets", IEEE Transactions on Medical Imaging
       28(8), pp. 1251-1265, 2009.
    .. [2] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    A 7 x 7 square predicted 3 pixels too far to the right: the worst
    boundary error is 3 pixels, the average one 1.5 pixels.

    >>> import numpy as np
    >>> from skweight.metrics import hausdorff_distance, mean_surface_distance
    >>> y_true = np.zeros((16, 20), dtype=int)
    >>> y_true[5:12, 5:12] = 1
    >>> y_pred = np.roll(y_true, 3, axis=1)
    >>> hausdorff_distance(y_true, y_pred)
    3.0
    >>> mean_surface_distance(y_true, y_pred)
    1.5
    >>> mean_surface_distance(y_true, y_pred, spacing=(2.0, 0.5))
    0.875
    """
    symmetric = check_bool(symmetric, "symmetric")
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    empty_value = _check_empty_value(empty_value, batch.y_true.shape[1:], sampling)

    def pair_value(j, true_to_pred, pred_to_true):
        if not symmetric:
            return pred_to_true.mean()
        total = true_to_pred.sum() + pred_to_true.sum()
        return total / (true_to_pred.size + pred_to_true.size)

    distances = _distance_table(batch, pair_value, 0.0, empty_value, sampling)
    return _aggregate(distances, batch.image_weights, average, 0.0)


@_fill_distance_doc
def normalized_surface_dice(y_true, y_pred, *, labels=None, average="macro",
                            include_background=False, background=0,
                            ignore_index=None, sample_weight=None, tolerance=1.0,
                            spacing=None):
    """Compute the normalized surface Dice: the boundaries' share within a tolerance.

    For one class ``k`` the masks ``A = (y_true == k)`` and
    ``B = (y_pred == k)`` are reduced to their boundaries ``S_A`` and
    ``S_B`` (see Notes). A boundary pixel counts as correct when the nearest
    boundary pixel of the other mask is at most ``tolerance`` away [1]_::

        NSD = (|{a in S_A : d(a, S_B) <= tol}| + |{b in S_B : d(b, S_A) <= tol}|)
              / (|S_A| + |S_B|)

    It lies in [0, 1], greater is better, and unlike the Dice score it does
    not reward the interior of large structures: only their outline counts.
    The tolerance is the boundary error that is acceptable for the task
    (e.g. the inter-rater variation). NSD is one of the two metrics of the
    Medical Segmentation Decathlon [2]_ and recommended for boundary quality
    by Metrics Reloaded [3]_.

    Parameters
    ----------
    %(mask_parameters)s

    sample_weight : array-like of shape (N,), default=None
        Non-negative weight of each image in the mean over images. Per-pixel
        weights are rejected.

    tolerance : float or array-like of float, default=1.0
        Largest boundary distance still counted as correct, in units of
        ``spacing`` (pixels by default); inclusive. A sequence gives one
        tolerance per class, in the order of ``labels``, which must then be
        given.

    %(spacing)s

    Returns
    -------
    score : float or ndarray of shape (n_labels,)
        Mean NSD over classes, or one value per class if ``average=None``.

    See Also
    --------
    mean_surface_distance : Mean boundary distance.
    hausdorff_distance : Largest boundary distance.
    dice_score : Overlap of the masks rather than of their boundaries.

    Notes
    -----
    %(boundaries)s

    When a class is absent from both masks of an image its NSD is 1.0
    (nothing to find, nothing found); when it is absent from exactly one it
    is 0.0, since none of the existing boundary has a counterpart. NSD is
    therefore never NaN.

    **Boundary elements.** Nikolov et al. [1]_ count boundary elements by
    their area: their implementation places surface elements between pixel
    centres and weights each by its length (2-D) or area (3-D). Here, as in
    MONAI's ``compute_surface_dice`` with its default
    ``use_subvoxels=False``, every boundary pixel counts once. The two
    agree closely for smooth boundaries much longer than a pixel and can
    differ for small or jagged structures.

    **Comparison with MONAI.** For two non-empty masks, or a class absent
    from one mask, the values per image and class equal those of MONAI's
    ``compute_surface_dice(..., class_thresholds=[tolerance, ...])`` with
    the same ``spacing`` and ``use_subvoxels=False``: same boundaries
    (``mask XOR erosion(mask)``, face-connected, zero border), same
    boundary-to-boundary distances, same inclusive comparison. MONAI returns
    NaN for a class absent from both masks (here 1.0) and takes one-hot
    masks, dropping the first channel instead of a ``background`` label.
    Its ``ignore_index`` removes the ignored pixels from both masks, as
    here.

    **Ties.** A distance equal to the tolerance counts as within it, but
    with a non-integer ``spacing`` such ties are at the mercy of rounding:
    ``7 * 0.6 - 5 * 0.6`` is ``1.2000000000000002``, not ``1.2``, and MONAI
    compares in float32. Where it matters, choose a tolerance that is not
    an attainable distance on the grid (e.g. 1.3 rather than 1.2 for a
    spacing of 0.6).

    %(distance_aggregation)s

    References
    ----------
    .. [1] S. Nikolov et al., "Clinically applicable segmentation of head and
       neck anatomy for radiotherapy: deep learning algorithm development
       and validation study", Journal of Medical Internet Research 23(7),
       e26151, 2021.
    .. [2] M. Antonelli et al., "The Medical Segmentation Decathlon", Nature
       Communications 13, 4128, 2022.
    .. [3] L. Maier-Hein et al., "Metrics reloaded: recommendations for image
       analysis validation", Nature Methods 21, pp. 195-212, 2024.

    Examples
    --------
    The square of :func:`mean_surface_distance`'s example, 3 pixels off:
    half of each outline is within 1 pixel of the other, all of it within 3.

    >>> import numpy as np
    >>> from skweight.metrics import normalized_surface_dice
    >>> y_true = np.zeros((16, 20), dtype=int)
    >>> y_true[5:12, 5:12] = 1
    >>> y_pred = np.roll(y_true, 3, axis=1)
    >>> normalized_surface_dice(y_true, y_pred)
    0.5
    >>> normalized_surface_dice(y_true, y_pred, tolerance=3)
    1.0
    """
    batch, sampling = _validate_distance_metric(
        y_true, y_pred, labels=labels, average=average,
        include_background=include_background, background=background,
        ignore_index=ignore_index, sample_weight=sample_weight, spacing=spacing,
    )
    tolerance = _check_tolerance(tolerance, labels is not None, batch.labels.size)

    def pair_value(j, true_to_pred, pred_to_true):
        within = np.count_nonzero(true_to_pred <= tolerance[j])
        within += np.count_nonzero(pred_to_true <= tolerance[j])
        return within / (true_to_pred.size + pred_to_true.size)

    scores = _distance_table(batch, pair_value, 1.0, 0.0, sampling)
    return _aggregate(scores, batch.image_weights, average, 1.0)


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------

_SCORE_FUNCS = {
    "dice": (dice_score, True),
    "iou": (iou_score, True),
    "hausdorff": (hausdorff_distance, False),
    "mean_surface_distance": (mean_surface_distance, False),
    "normalized_surface_dice": (normalized_surface_dice, True),
}


def make_segmentation_scorer(metric, **kwargs):
    """Build a scikit-learn scorer from one of the segmentation metrics.

    Parameters
    ----------
    metric : {"dice", "iou", "hausdorff", "mean_surface_distance", \
"normalized_surface_dice"}
        Metric to wrap. The distances (``"hausdorff"`` and
        ``"mean_surface_distance"``) give negated values
        (``greater_is_better=False``), so that larger is better, as model
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
        ``scorer.set_score_request(sample_weight=True)``.

    Examples
    --------
    >>> from skweight.metrics import make_segmentation_scorer
    >>> hd95_scorer = make_segmentation_scorer("hausdorff", percentile=95)
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

#: Scorer for the negated :func:`mean_surface_distance` with
#: ``empty_value="diagonal"``, as :data:`hausdorff_scorer`.
mean_surface_distance_scorer = make_segmentation_scorer("mean_surface_distance")

#: Scorer for :func:`normalized_surface_dice` with the default tolerance of
#: one pixel (greater is better).
normalized_surface_dice_scorer = make_segmentation_scorer("normalized_surface_dice")
